"""Exceptions raised by the codec.

XDeltaError
├── CorruptDeltaError        the delta is not valid VCDIFF, or is damaged
│   └── TruncatedDeltaError  the delta ends in the middle of a window
├── SourceMismatchError      the delta does not belong to this source (window checksum)
├── SourceReadError          the source could not be read (I/O error, short block)
└── CodecStateError          misuse: feeding after finish(), concurrent use, bad options
"""

from __future__ import annotations


class XDeltaError(Exception):
    """Base class of every codec error; ``code`` is xdelta3's return code when there is one."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class CorruptDeltaError(XDeltaError):
    """The delta is not valid VCDIFF or was damaged."""


class TruncatedDeltaError(CorruptDeltaError):
    """The delta ended in the middle of a window."""


class SourceMismatchError(XDeltaError):
    """Decoding against a source the delta was not made from (adler32 window checksum)."""


class SourceReadError(XDeltaError):
    """The source (reference) could not be read completely."""


class CodecStateError(XDeltaError, ValueError):
    """The codec object was used in a way its state does not allow, or with invalid options."""

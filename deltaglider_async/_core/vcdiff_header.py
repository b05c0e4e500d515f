"""What a VCDIFF header says before any window is decoded (pure).

xdelta3's command line, which deltaglider 6.2 runs, writes an application header
``target/T/source/S/`` where ``T`` and ``S`` name an *external* compressor (``G`` for gzip) when
it recognised its inputs as compressed: it then encoded the decompressed bytes, and its own
decoder re-compresses with its own settings.  Such a delta never held the original compressed
bytes, so no decoder can rebuild them byte-exact.
"""

from __future__ import annotations

VCDIFF_MAGIC = b"\xd6\xc3\xc4"
_SECONDARY, _CODETABLE, _APPHEADER = 0x01, 0x02, 0x04
_COMPRESSORS = {"G": "gzip", "B": "bzip2", "Z": "compress", "Y": "lzma"}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    while True:
        if at >= len(data):
            raise IndexError
        byte = data[at]
        at += 1
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            return value, at


def app_header(head: bytes) -> bytes | None:
    """The application header of a VCDIFF stream whose first bytes are ``head`` (None when it
    has none, or ``head`` is too short to tell)."""
    if len(head) < 5 or head[:3] != VCDIFF_MAGIC:
        return None
    indicator, at = head[4], 5
    try:
        if indicator & _SECONDARY:
            at += 1
        if indicator & _CODETABLE:
            length, at = _varint(head, at)
            at += length
        if not indicator & _APPHEADER:
            return None
        length, at = _varint(head, at)
    except IndexError:
        return None
    return head[at : at + length] if at + length <= len(head) else None


def external_compression(head: bytes) -> str | None:
    """The external compressor xdelta3 applied to the target, as a name (``gzip``), if any."""
    header = app_header(head)
    if header is None:
        return None
    parts = header.split(b"/")
    if len(parts) < 2 or not parts[1]:
        return None
    ident = parts[1].decode("ascii", "replace")
    return _COMPRESSORS.get(ident, ident)

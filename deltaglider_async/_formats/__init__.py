"""Delta formats: how a file is encoded against its space's reference, and decoded back.

Each object says which format it is in (``dg-delta-format``; absent means ``vcdiff``, the format
every deltaglider writes and reads), so reads never need an option and every format ever written
stays readable.  A new format is one module implementing :class:`DeltaFormat` and one line in
``FORMATS``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Protocol

from .._core.metadata import ObjectMeta
from .._engine.cache import ReferenceSource
from .._engine.codec import CodecRunner, EncodeResult
from .._exceptions import IntegrityError, InvalidArgumentError
from .archive import ARCHIVE
from .archive import reference_reader as reference_reader
from .vcdiff import VCDIFF


class DeltaFormat(Protocol):
    #: what ``dg-delta-format`` says (the default format writes no such key)
    name: str
    #: whether a file that would be stored whole starts a new reference of its space instead
    #: (``reference-<n>.bin``): never in the default format, which deltaglider 6.2 reads
    takes_snapshots: bool

    def metadata(self, original_name: str) -> Mapping[str, str]:
        """The format's own ``dg-*`` metadata for a delta of ``original_name``."""
        ...

    async def reference_body(
        self, codec: CodecRunner, path: Path, sha256: str, out: Path
    ) -> Mapping[str, str] | None:
        """Write what a new space's ``reference.bin`` should hold for the file ``path`` (whose
        SHA-256 the caller has read: ``sha256``) to ``out`` and return the metadata that says
        so; None stores the file as it is.  Readers
        get the file's own bytes back from either (:func:`reference_reader`)."""
        ...

    async def encode(
        self,
        codec: CodecRunner,
        reference: ReferenceSource | Path,
        target: Path,
        delta_out: Path,
        budget: int | None,
    ) -> EncodeResult:
        """Hash ``target`` and encode it against ``reference`` into ``delta_out`` (stopping once
        the delta outgrows ``budget``).  The reference is the space's ``reference.bin`` as the
        cache holds it, or a local file with the same bytes.  A format that cannot represent
        ``target`` may encode it in another one: the result names the format used, and why."""
        ...

    def decode(
        self,
        codec: CodecRunner,
        reference: ReferenceSource,
        delta: AsyncIterator[bytes],
        target_size: int | None,
        what: str,
    ) -> AsyncIterator[bytes]:
        """The original bytes, streamed; codec failures are :class:`IntegrityError`."""
        ...


FORMATS: dict[str, DeltaFormat] = {VCDIFF.name: VCDIFF, ARCHIVE.name: ARCHIVE}
DEFAULT_FORMAT = VCDIFF.name


def format_named(name: str) -> DeltaFormat:
    """The format to write (``create_client(delta_format=...)``, ``DG_DELTA_FORMAT``)."""
    try:
        return FORMATS[name.strip().lower()]
    except KeyError:
        known = ", ".join(sorted(FORMATS))
        raise InvalidArgumentError(f"unknown delta format {name!r} (known: {known})") from None


def format_of(meta: ObjectMeta, what: str) -> DeltaFormat:
    """The format a stored delta says it is in."""
    name = meta.delta_format or DEFAULT_FORMAT
    found = FORMATS.get(name)
    if found is None:
        raise IntegrityError(
            f"{what} is stored in delta format {name!r}, which this version of "
            "deltaglider-async cannot read: upgrade it"
        )
    return found

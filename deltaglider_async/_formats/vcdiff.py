"""``vcdiff``: the whole file xdelta3-encoded against the reference, as every deltaglider does.

Byte-for-byte what deltaglider 6.2 reads: no ``dg-delta-format`` key, ``dg-delta-cmd`` as it writes
it (informational: readers take the format from the VCDIFF header itself).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from .._core.metadata import encode_name
from .._core.spaces import REFERENCE_NAME
from .._core.vcdiff_header import app_header, external_compression
from .._engine.cache import ReferenceSource
from .._engine.codec import CodecRunner, EncodeResult
from .._exceptions import IntegrityError

#: Bytes enough for any application header xdelta3 writes (two names and two idents).
HEADER_PEEK = 8192


class Vcdiff:
    name = "vcdiff"
    takes_snapshots = False

    def metadata(self, original_name: str) -> Mapping[str, str]:
        return {
            "dg-delta-cmd": encode_name(
                f"xdelta3 -e -9 -s {REFERENCE_NAME} {original_name} {original_name}.delta"
            )
        }

    async def reference_body(
        self, codec: CodecRunner, path: Path, sha256: str, out: Path
    ) -> Mapping[str, str] | None:
        return None  # reference.bin holds the file as it is, as every deltaglider expects

    async def encode(
        self,
        codec: CodecRunner,
        reference: ReferenceSource | Path,
        target: Path,
        delta_out: Path,
        budget: int | None,
    ) -> EncodeResult:
        return await codec.encode_file(reference, target, delta_out, budget)

    def decode(
        self,
        codec: CodecRunner,
        reference: ReferenceSource,
        delta: AsyncIterator[bytes],
        target_size: int | None,
        what: str,
    ) -> AsyncIterator[bytes]:
        return codec.decode(
            reference, _refusing_external_compression(delta, what), target_size, what
        )


async def _refusing_external_compression(
    delta: AsyncIterator[bytes], what: str
) -> AsyncIterator[bytes]:
    """``delta``, unless its header says xdelta3 encoded the decompressed contents (see
    :mod:`.._core.vcdiff_header`): the original bytes are not in it, which deserves a reason
    rather than a checksum failure deep in the decoder."""
    head = b""
    checked = False
    async for chunk in delta:
        if checked:
            yield chunk
            continue
        head += chunk
        if len(head) < HEADER_PEEK and app_header(head) is None:
            continue
        _check(head, what)
        checked = True
        yield head
    if not checked and head:
        _check(head, what)
        yield head


def _check(head: bytes, what: str) -> None:
    compressor = external_compression(head)
    if compressor is not None:
        raise IntegrityError(
            f"{what}: cannot be rebuilt byte-exact: deltaglider 6.2 (xdelta3 with external "
            f"{compressor}) stored the delta of its decompressed contents, not of its bytes; "
            f"the original {compressor} stream (header, compression settings) was never stored, "
            "and 6.2 itself returns re-compressed bytes whose SHA-256 differs",
            code="UnrebuildableDelta",
        )


VCDIFF = Vcdiff()

"""``vcdiff``: the whole file xdelta3-encoded against the reference, as every deltaglider does.

Byte-for-byte what deltaglider 6.2 reads: no ``dg-delta-format`` key, ``dg-delta-cmd`` as it writes
it (informational: readers take the format from the VCDIFF header itself).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path

from .._core.metadata import encode_name
from .._core.spaces import REFERENCE_NAME
from .._engine.cache import ReferenceSource
from .._engine.codec import CodecRunner, EncodeResult


class Vcdiff:
    name = "vcdiff"

    def metadata(self, original_name: str) -> Mapping[str, str]:
        return {
            "dg-delta-cmd": encode_name(
                f"xdelta3 -e -9 -s {REFERENCE_NAME} {original_name} {original_name}.delta"
            )
        }

    async def reference_body(
        self, codec: CodecRunner, path: Path, out: Path
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
        return codec.decode(reference, delta, target_size, what)


VCDIFF = Vcdiff()

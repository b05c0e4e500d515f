"""The codec at the async edge: encodes and decodes in worker threads under one limiter."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio

from xdelta_ffi import Decoder, Encoder, SourceReadError, XDeltaError

from .._core.policy import MAGIC_BYTES, compress_added_bytes
from .._exceptions import DeltaGliderError, IntegrityError
from .._localfs import FileDigest, digest_file
from .cache import CacheCorruptError, ReferenceSource

READ_CHUNK = 4 << 20
#: The codec's default (256 MiB) put a 1 GiB delta put at 511 MiB peak RSS with the SDK around
#: it (benchmarks/results/sdk.md); 128 MiB keeps it well under the 512 MiB budget.  Only
#: references over 128 MiB index their source more sparsely because of it.
TABLE_MEMORY = 128 << 20
#: Block cache in front of the encrypted reference: a miss costs a 256 KiB AES-GCM decrypt, so
#: the SDK affords more than the codec's 128 MiB default: the whole reference up to 256 MiB, and
#: 192 MiB beyond (a 1 GiB put stays under its 512 MiB budget).
FULL_COVER = 256 << 20
CACHE_MEMORY = 192 << 20


def cache_memory_for(source_size: int) -> int:
    return FULL_COVER if source_size <= FULL_COVER else CACHE_MEMORY


@dataclass(frozen=True)
class EncodeResult:
    sha256: str
    size: int
    delta_size: int
    #: The delta outgrew its budget and encoding stopped; the file was still hashed.
    over_budget: bool
    #: the delta format the delta is in (a format may hand a file to another one)
    format_name: str = "vcdiff"
    #: why it is not in the format asked for, if it is not
    note: str = ""

    def with_note(self, note: str) -> EncodeResult:
        return dataclasses.replace(self, note=note)


def _is_cache_corruption(exc: BaseException) -> bool:
    return isinstance(exc, CacheCorruptError) or isinstance(exc.__cause__, CacheCorruptError)


def encode_file_sync(
    reference: ReferenceSource | Path, target: Path, delta_out: Path, budget: int | None
) -> EncodeResult:
    """Hash and encode ``target`` in one pass, writing the delta to ``delta_out``."""
    if isinstance(reference, Path):
        source: object = reference
        source_size = reference.stat().st_size
    else:
        source = reference.codec_source()
        source_size = reference.size
    digest = hashlib.sha256()
    size = 0
    written = 0
    over = False
    target_size = target.stat().st_size
    with target.open("rb", buffering=0) as src, delta_out.open("wb") as out:
        chunk = src.read(READ_CHUNK)
        encoder = Encoder(
            source,  # type: ignore[arg-type]
            source_size=source_size,
            target_size=target_size,
            secondary_data=compress_added_bytes(chunk[:MAGIC_BYTES]),
            table_memory=TABLE_MEMORY,
            cache_size=cache_memory_for(source_size),
        )
        try:
            while chunk:
                digest.update(chunk)
                size += len(chunk)
                if not over:
                    for produced in encoder.stream(chunk):
                        out.write(produced)
                        written += len(produced)
                    over = budget is not None and written > budget
                chunk = src.read(READ_CHUNK)
            if not over:
                for produced in encoder.finish_stream():
                    out.write(produced)
                    written += len(produced)
                over = budget is not None and written > budget
        finally:
            encoder.close()
    return EncodeResult(digest.hexdigest(), size, written, over)


class CodecRunner:
    """Runs codec work on worker threads, at most ``threads`` at a time."""

    def __init__(self, threads: int) -> None:
        self.limiter = anyio.CapacityLimiter(threads)

    async def hash_file(self, path: Path, part_size: int) -> FileDigest:
        return await anyio.to_thread.run_sync(digest_file, path, part_size, limiter=self.limiter)

    async def encode_file(
        self, reference: ReferenceSource | Path, target: Path, delta_out: Path, budget: int | None
    ) -> EncodeResult:
        """Encode on a worker thread; codec failures become SDK errors (cache corruption stays
        :class:`CacheCorruptError`, so that the caller can drop the entry and retry)."""
        try:
            return await anyio.to_thread.run_sync(
                encode_file_sync, reference, target, delta_out, budget, limiter=self.limiter
            )
        except SourceReadError as exc:
            if _is_cache_corruption(exc):
                raise exc.__cause__ from exc  # type: ignore[misc]
            raise DeltaGliderError(f"{target}: cannot read the reference: {exc}") from exc
        except XDeltaError as exc:
            raise DeltaGliderError(f"{target}: encoding failed: {exc}", code="EncodeError") from exc

    async def decode(
        self,
        reference: ReferenceSource,
        delta: AsyncIterator[bytes],
        target_size: int | None,
        what: str,
    ) -> AsyncIterator[bytes]:
        """Decode a streamed delta; codec failures become :class:`IntegrityError`."""
        decoder = Decoder(
            reference.codec_source(), source_size=reference.size, target_size=target_size
        )
        try:
            async for chunk in delta:
                async for out in self._pull(decoder.stream(chunk)):
                    yield out
            async for out in self._pull(decoder.finish_stream()):
                yield out
        except SourceReadError as exc:
            if _is_cache_corruption(exc):
                raise exc.__cause__ from exc  # type: ignore[misc]
            raise IntegrityError(f"{what}: cannot read the reference: {exc}") from exc
        except XDeltaError as exc:
            raise IntegrityError(f"{what}: delta cannot be decoded: {exc}") from exc
        finally:
            decoder.close()

    async def _pull(self, pieces: Iterator[bytes]) -> AsyncIterator[bytes]:
        """Advance a codec iterator on worker threads, one output piece per hop."""
        while (
            piece := await anyio.to_thread.run_sync(next, pieces, None, limiter=self.limiter)
        ) is not None:
            yield piece


def unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)

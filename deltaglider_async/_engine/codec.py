"""The codec at the async edge: encodes and decodes in worker threads under one limiter."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import anyio

from xdelta_ffi import (
    CodecStateError,
    Decoder,
    Encoder,
    SourceReadError,
    XDeltaError,
    encoder_memory_estimate,
)

from .._core.policy import MAGIC_BYTES, compress_added_bytes
from .._exceptions import DeltaGliderError, IntegrityError
from .._localfs import FileDigest, digest_file
from .cache import CacheCorruptError, ReferenceSource
from .memory import process_budget

_MiB = 1 << 20

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


#: The smallest table and block cache an encoder is given to fit a small budget.
_MIN_TABLE = 16 << 20
_MIN_CACHE = 16 << 20
#: The smallest default table of an encoder whose source is in memory.
_IN_MEMORY_TABLE = 32 << 20
#: A decoder's block cache, its windows and its input chunk.
DECODER_MEMORY = 16 * _MiB + 2 * 8 * _MiB + 2 * READ_CHUNK  # xdelta_ffi's decoder defaults


@dataclass(frozen=True)
class EncoderPlan:
    table_memory: int
    cache_size: int
    #: what the encoder allocates with them, plus the input chunk in flight
    need: int


def encoder_plan(source_size: int, limit: int, *, in_memory: bool = False) -> EncoderPlan:
    """The encoder's table and cache: the defaults when they fit ``limit``; else the larger of
    the two is halved until they fit (down to 16 MiB each), and the cache then takes what is
    left.  A source in memory needs no block cache (``in_memory``), and its table is kept to
    half its size (at least 32 MiB): botocore's 79 MiB expansion encoded with a 32 MiB table
    makes deltas 0.4-2.2 % larger than with 64 MiB, and 32 MiB less beside the 150 MiB its
    put holds anyway (64 MiB against 128: 0.15-0.6 %).  Under a 256 MiB budget a
    1 GiB put took 41 s with a 64 MiB table and 82 MiB of cache, 61 s with 32 and 114; for
    256 MiB files tables of 32-128 MiB and caches of 16-114 MiB were within 5 % of each other,
    so neither is favoured beyond its size."""

    def need(table: int, cache: int) -> int:
        estimate = encoder_memory_estimate(source_size, table_memory=table, cache_size=cache)
        return estimate + READ_CHUNK

    wanted = 0 if in_memory else min(cache_memory_for(source_size), max(source_size, _MIN_CACHE))
    table = TABLE_MEMORY
    if in_memory:
        table = min(table, max(_IN_MEMORY_TABLE, 1 << (max(source_size, 1).bit_length() - 2)))
    cache = wanted
    while need(table, cache) > limit and (table > _MIN_TABLE or cache > _MIN_CACHE):
        if (cache >= table and cache > _MIN_CACHE) or table <= _MIN_TABLE:
            cache = max(_MIN_CACHE, cache // 2)
        else:
            table = max(_MIN_TABLE, table // 2)
    spare = (limit - need(table, cache)) // _MiB * _MiB
    if spare > 0:
        cache = min(wanted, cache + spare)
    return EncoderPlan(table, cache, need(table, cache))


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


class FileEncode:
    """Hash and encode ``target`` in one pass, writing the delta to ``delta_out``, one
    ``READ_CHUNK`` per :meth:`step`.

    A step can take seconds (new, incompressible data checked against a large reference), so a
    cancelled caller does not wait for it: :meth:`abandon` closes the job at once when no step
    runs, or has the running step close it when it ends; its memory is freed then."""

    def __init__(
        self,
        reference: ReferenceSource | Path,
        target: Path,
        delta_out: Path,
        budget: int | None,
        plan: EncoderPlan,
    ) -> None:
        self._plan = plan
        if isinstance(reference, Path):
            self._source: object = reference
            self._source_size = reference.stat().st_size
        else:
            self._source = reference.codec_source()
            self._source_size = reference.size
        self._target = target
        self._budget = budget
        self._digest = hashlib.sha256()
        self._size = 0
        self._written = 0
        self._over = False
        self._encoder: Encoder | None = None
        self._state = threading.Lock()
        self._running = False
        self._abandoned = False
        self._src = target.open("rb", buffering=0)
        try:
            self._out = delta_out.open("wb")
        except BaseException:
            self._src.close()
            raise

    def step(self) -> bool:
        """Encode the next chunk (on a worker thread); True once the whole file is done."""
        with self._state:
            if self._abandoned:
                raise CodecStateError("encode abandoned")
            self._running = True
        try:
            return self._step()
        finally:
            with self._state:
                self._running = False
                closing = self._abandoned
            if closing:
                self.close()

    def abandon(self) -> None:
        """Stop for good, from the caller's thread, without waiting for a running step."""
        with self._state:
            self._abandoned = True
            if self._running:
                return
        self.close()

    def _step(self) -> bool:
        chunk = self._src.read(READ_CHUNK)
        if self._encoder is None:
            self._encoder = Encoder(
                self._source,  # type: ignore[arg-type]
                source_size=self._source_size,
                target_size=os.fstat(self._src.fileno()).st_size,
                secondary_data=compress_added_bytes(chunk[:MAGIC_BYTES]),
                table_memory=self._plan.table_memory,
                cache_size=self._plan.cache_size,
            )
        self._digest.update(chunk)
        self._size += len(chunk)
        if not self._over:
            pieces = self._encoder.stream(chunk) if chunk else self._encoder.finish_stream()
            for produced in pieces:
                self._out.write(produced)
                self._written += len(produced)
            self._over = self._budget is not None and self._written > self._budget
        return not chunk

    def result(self) -> EncodeResult:
        return EncodeResult(self._digest.hexdigest(), self._size, self._written, self._over)

    def close(self) -> None:
        """Free the codec's memory and close both files (also after a failure or a cancel)."""
        if self._encoder is not None:
            self._encoder.close()
        self._src.close()
        self._out.close()


class DerivedStore(Protocol):
    """Where what was derived from a reference at some cost outlives the process (the reference
    cache: :meth:`~.cache.ReferenceCache.keep_derived`)."""

    def load_derived(self, name: str) -> bytes | None: ...

    async def keep_derived(self, name: str, pieces: Sequence[bytes | memoryview]) -> None: ...


class CodecRunner:
    """Runs codec work on worker threads, at most ``threads`` at a time; ``derived`` keeps what
    formats derive from references."""

    def __init__(self, threads: int, derived: DerivedStore | None = None) -> None:
        self.limiter = anyio.CapacityLimiter(threads)
        self.memory = process_budget()
        self.derived = derived

    def plan_encoder(
        self, source_size: int, *, in_memory: bool = False, beside: int = 0
    ) -> EncoderPlan:
        """The encoder plan that fits the budget's room with ``beside`` bytes held as well."""
        return encoder_plan(source_size, self.memory.room - beside, in_memory=in_memory)

    async def hash_file(self, path: Path, part_size: int) -> FileDigest:
        return await anyio.to_thread.run_sync(digest_file, path, part_size, limiter=self.limiter)

    async def encode_file(
        self, reference: ReferenceSource | Path, target: Path, delta_out: Path, budget: int | None
    ) -> EncodeResult:
        """Encode on worker threads, one chunk per hop, holding one codec slot throughout (a slot
        per hop would let every waiting put keep an encoder's tables alive at once); codec
        failures become SDK errors (cache corruption stays :class:`CacheCorruptError`, so that
        the caller can drop the entry and retry)."""
        source_size = reference.stat().st_size if isinstance(reference, Path) else reference.size
        plan = self.plan_encoder(source_size)
        try:
            async with self.memory.reserve(plan.need, f"encoding {target.name}"), self.limiter:
                job = await anyio.to_thread.run_sync(
                    FileEncode, reference, target, delta_out, budget, plan
                )
                try:
                    while not await anyio.to_thread.run_sync(job.step, abandon_on_cancel=True):
                        pass
                finally:
                    job.abandon()
                return job.result()
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
        async with self.memory.reserve(DECODER_MEMORY, f"decoding {what}"):
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

"""What every pipeline shares: the storage port, the cache, the codec, settings, scratch space."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio

from .._boto import DEFAULT_CONTENT_TYPE, response_metadata
from .._core.metadata import MetaKind, ObjectMeta, logical_etag, parse_metadata, user_metadata
from .._core.twins import newer_copy
from .._engine.cache import CacheCorruptError, ReferenceCache, ReferenceSource
from .._engine.codec import CodecRunner, EncodeResult
from .._engine.stats import StatsEngine
from .._exceptions import ConflictError, DeltaGliderError, IntegrityError, NoSuchBucket
from .._formats import DEFAULT_FORMAT, DeltaFormat, reference_reader
from .._models import DeltaGliderInfo
from .._storage.port import ObjectHead, Storage
from .._transfer import TransferConfig

T = TypeVar("T")
log = logging.getLogger("deltaglider_async")


@dataclass
class Context:
    storage: Storage
    cache: ReferenceCache
    codec: CodecRunner
    transfer: TransferConfig
    stats: StatsEngine
    extensions: frozenset[str]
    max_ratio: float
    tool: str
    #: the format new deltas are written in (reads follow each object's own)
    delta_format: DeltaFormat
    tmp: Path | None = None
    known_buckets: set[str] = field(default_factory=set)

    def temp_path(self, suffix: str) -> Path:
        """A new empty file in the client's private scratch directory."""
        if self.tmp is None:
            raise DeltaGliderError("the client is not open: use `async with create_client(...)`")
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=suffix)
        os.close(fd)
        return Path(name)


class Stage:
    """Base of the pipelines: the shared context under short names, and the steps they share."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx

    @property
    def transfer(self) -> TransferConfig:
        return self._ctx.transfer

    @property
    def extensions(self) -> frozenset[str]:
        return self._ctx.extensions

    @property
    def _storage(self) -> Storage:
        return self._ctx.storage

    @property
    def _cache(self) -> ReferenceCache:
        return self._ctx.cache

    @property
    def _codec(self) -> CodecRunner:
        return self._ctx.codec

    @property
    def _transfer(self) -> TransferConfig:
        return self._ctx.transfer

    @property
    def _extensions(self) -> frozenset[str]:
        return self._ctx.extensions

    def _temp_path(self, suffix: str) -> Path:
        return self._ctx.temp_path(suffix)

    async def _require_bucket(self, bucket: str) -> None:
        """Some servers create missing buckets on PUT; a write to a typo must fail instead."""
        if bucket in self._ctx.known_buckets:
            return
        if not await self._storage.bucket_exists(bucket):
            raise NoSuchBucket(f"s3://{bucket}: bucket does not exist")
        self._ctx.known_buckets.add(bucket)

    async def _reference_is(self, bucket: str, ref_key: str, sha256: str) -> bool:
        head = await self._storage.head(bucket, ref_key)
        return head is not None and reference_sha(head, ref_key) == sha256

    async def _encode_against(
        self,
        bucket: str,
        ref_key: str,
        etag: str | None,
        ref_sha: str | None,
        path: Path,
        delta_path: Path,
        budget: int | None,
        delta_format: DeltaFormat | None = None,
    ) -> EncodeResult:
        """Encode ``path`` against the space's reference in ``delta_format`` (the client's)."""
        writer = delta_format or self._ctx.delta_format

        async def run(reference: ReferenceSource) -> EncodeResult:
            return await writer.encode(self._codec, reference, path, delta_path, budget)

        return await self._with_reference(bucket, ref_key, etag, ref_sha, run)

    async def _reference_file(self, bucket: str, reference: ObjectHead, local: Path) -> None:
        """Write the file a space's reference stands for (whatever its stored form) to
        ``local``, through the cache."""

        async def keep(source: ReferenceSource) -> None:
            data = source.codec_source()
            whole = data if isinstance(data, bytes) else data(0, source.size)
            await anyio.Path(local).write_bytes(whole)

        sha256 = reference_sha(reference, reference.key)
        await self._with_reference(bucket, reference.key, reference.etag, sha256, keep)

    async def _reference_as(
        self, bucket: str, reference: ObjectHead, delta_format: DeltaFormat, local: Path, body: Path
    ) -> Mapping[str, str] | None:
        """The file the reference stands for to ``local``, and what ``delta_format`` stores for
        a new space's reference to ``body``: the metadata that says so, or None when the
        format stores the file as it is."""
        await self._reference_file(bucket, reference, local)
        sha256 = reference_sha(reference, reference.key)
        assert sha256 is not None  # the file was read, checked against it
        return await delta_format.reference_body(self._codec, local, sha256, body)

    async def _with_reference(
        self,
        bucket: str,
        ref_key: str,
        etag: str | None,
        sha256: str | None,
        work: Callable[[ReferenceSource], Awaitable[T]],
    ) -> T:
        """Run ``work`` on the cached reference; a corrupt cache entry is dropped and refetched."""
        if sha256 is None:
            raise IntegrityError(f"s3://{bucket}/{ref_key} has no SHA-256 in its metadata")

        async def fetch() -> AsyncIterator[bytes]:
            pinned = etag or None
            for attempt in range(2):
                started = False
                try:
                    async for chunk in self._storage.iter_object(bucket, ref_key, etag=pinned):
                        started = True
                        yield chunk
                    return
                except ConflictError:
                    # migrate may store the same reference again in another form (compact or
                    # plain): same SHA-256, new ETag; anything else is a real change
                    if started or attempt:
                        raise
                    head = await self._storage.head(bucket, ref_key)
                    if head is None or reference_sha(head, ref_key) != sha256:
                        raise
                    pinned = head.etag

        for attempt in range(2):
            reference = await self._cache.get(
                sha256, reference_reader(fetch, sha256, f"s3://{bucket}/{ref_key}")
            )
            try:
                return await work(reference)
            except CacheCorruptError:
                if attempt:
                    raise
                log.warning("cached reference %s… is corrupt: dropped, fetching again", sha256[:12])
                self._cache.evict(sha256)
            finally:
                close_reference(reference)
        raise AssertionError("unreachable")


@dataclass(frozen=True)
class Resolved:
    """A logical object as found in the bucket."""

    bucket: str
    key: str
    stored_key: str
    head: ObjectHead
    meta: ObjectMeta

    @property
    def stored_as(self) -> Literal["delta", "direct", "plain"]:
        if self.meta.kind is MetaKind.DELTA:
            return "delta"
        return "direct" if self.meta.kind is MetaKind.DIRECT else "plain"

    @property
    def logical_size(self) -> int:
        if self.meta.kind is MetaKind.DELTA:
            return self.meta.file_size if self.meta.file_size is not None else -1
        return self.head.size

    def response_head(self) -> dict[str, Any]:
        """What get_object and head_object both return about the object."""
        return {
            "AcceptRanges": "bytes",
            "ETag": self.etag,
            "LastModified": self.head.last_modified,
            "ContentType": self.head.content_type or DEFAULT_CONTENT_TYPE,
            **self.head.attributes,
            "Metadata": user_metadata(self.head.metadata),
            "DeltaGliderInfo": self.info().as_dict(),
            "ResponseMetadata": response_metadata(),
        }

    @property
    def etag(self) -> str:
        """S3's ETag of a direct object; a delta's stands for its logical bytes."""
        if self.meta.kind is MetaKind.DELTA and self.meta.file_sha256:
            return logical_etag(self.meta.file_sha256)
        return self.head.etag

    def info(self) -> DeltaGliderInfo:
        original = self.logical_size if self.logical_size >= 0 else None
        return DeltaGliderInfo(
            stored_as=self.stored_as,
            stored_key=self.stored_key,
            stored_size=self.head.size,
            original_size=original,
            ratio=self.head.size / original if original else None,
            reference_key=self.meta.ref_key,
            sha256=self.meta.file_sha256,
            delta_format=(self.meta.delta_format or DEFAULT_FORMAT)
            if self.meta.kind is MetaKind.DELTA
            else None,
            format_note=self.meta.format_note,
        )


def copy_rank(head: ObjectHead) -> tuple[datetime | None, str | None]:
    return head.last_modified, parse_metadata(head.metadata, head.key).created_at


def served(delta: Resolved, direct: ObjectHead) -> str:
    """Which copy of a key stored both ways a reader serves (see ``_core/twins.py``)."""
    return newer_copy(copy_rank(delta.head), copy_rank(direct))


def reference_sha(head: ObjectHead, ref_key: str) -> str | None:
    """The SHA-256 of a reference we can use; None for a ``reference.bin`` that is not one
    (another tool's object, an error page saved under that name)."""
    meta = parse_metadata(head.metadata, ref_key)
    return meta.file_sha256 if meta.kind is MetaKind.REFERENCE else None


def close_reference(reference: ReferenceSource) -> None:
    closer = getattr(reference, "close", None)
    if closer is not None:
        closer()


async def iter_file(path: Path, chunk_size: int = 4 << 20) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as src:
        while chunk := await src.read(chunk_size):
            yield chunk

"""AsyncDeltaGliderClient: boto3-shaped coroutines on logical keys, plus upload/download/verify."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio

from . import __about__
from ._body import StreamingBody
from ._bulk import (
    ProgressCallback,
    SpaceStart,
    TransferResult,
    download_many,
    local_to_key,
    upload_many,
)
from ._core.metadata import (
    MetaKind,
    ObjectMeta,
    delta_metadata,
    direct_metadata,
    parse_metadata,
    reference_metadata,
    timestamp,
)
from ._core.policy import delta_budget, delta_ratio, keep_delta, parse_max_ratio
from ._core.spaces import (
    DEFAULT_DELTA_EXTENSIONS,
    DELTA_SUFFIX,
    INTERNAL_PREFIX,
    REFERENCE_NAME,
    StoredKind,
    check_bucket,
    check_logical_key,
    check_writable_key,
    classify,
    delta_key,
    fits_delta_layout,
    is_eligible,
    name_of,
    parse_s3_url,
    reference_key,
    space_of,
)
from ._core.stats import BucketStats, Mode
from ._core.twins import newer_copy
from ._engine.cache import CacheCorruptError, ReferenceCache, ReferenceSource, parse_key
from ._engine.codec import CodecRunner, EncodeResult, unlink_quietly
from ._engine.stats import StatsEngine
from ._exceptions import (
    BucketNotFoundError,
    ConflictError,
    DeltaGliderError,
    IntegrityError,
    InvalidArgumentError,
    NotFoundError,
    ReferenceInUseError,
)
from ._localfs import Destination, FileChangedError, FileDigest, read_snapshot, write_all
from ._models import (
    CompressionEstimate,
    DeltaGliderInfo,
    DownloadSummary,
    UploadSummary,
    VerifyResult,
)
from ._storage.s3 import ObjectHead, Progress, S3Storage
from ._tasks import task_group
from ._transfer import TransferConfig

T = TypeVar("T")
log = logging.getLogger("deltaglider_async")
Body = bytes | bytearray | memoryview | os.PathLike[str] | AsyncIterator[bytes] | Any


@dataclass(frozen=True)
class _Resolved:
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
            "ETag": self.head.etag,
            "LastModified": self.head.last_modified,
            "ContentType": self.head.content_type,
            "Metadata": _user_metadata(self.head.metadata),
            "DeltaGliderInfo": self.info().as_dict(),
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

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
        )


@dataclass(frozen=True)
class _Put:
    """What one put stores, wherever it ends up (delta or direct)."""

    bucket: str
    key: str
    extra: Mapping[str, str]
    content_type: str | None
    ratio_limit: float
    progress: Progress | None


#: Attempts at a delta put whose reference a concurrent delete keeps collecting.
_GC_RACE_ROUNDS = 3


class AsyncDeltaGliderClient:
    """Async S3 client that stores eligible objects as xdelta3 deltas against one reference.

    Use it as ``async with create_client(...) as dg``.  Methods named like boto3's take the same
    keyword arguments and return dicts of the same shape, on *logical* keys (``reference.bin`` is
    hidden, ``.delta`` stripped), with a ``DeltaGliderInfo`` entry saying how each is stored.
    """

    def __init__(
        self,
        storage: S3Storage,
        cache: ReferenceCache,
        *,
        max_ratio: float,
        transfer: TransferConfig,
        delta_extensions: Iterable[str] = DEFAULT_DELTA_EXTENSIONS,
    ) -> None:
        self._storage = storage
        self._cache = cache
        self._max_ratio = max_ratio
        self._transfer = transfer
        self._extensions = frozenset(e.lower() for e in delta_extensions)
        self._codec = CodecRunner(transfer.codec_threads)
        self._stats = StatsEngine(storage, concurrency=transfer.max_heads)
        self._tmp: Path | None = None
        self._tool = f"deltaglider-async/{__about__.__version__}"
        self._opened = False
        self._known_buckets: set[str] = set()

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> AsyncDeltaGliderClient:
        await self._storage.open()
        self._tmp = Path(tempfile.mkdtemp(prefix="dg-async-"))
        self._opened = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._opened:
            self._opened = False
            with anyio.CancelScope(shield=True):
                await self._storage.close()
            self._codec.release_memory()
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)

    @property
    def max_ratio(self) -> float:
        return self._max_ratio

    @property
    def transfer(self) -> TransferConfig:
        return self._transfer

    @property
    def cache(self) -> ReferenceCache:
        return self._cache

    def _temp_path(self, suffix: str) -> Path:
        if self._tmp is None:
            raise DeltaGliderError("the client is not open: use `async with create_client(...)`")
        fd, name = tempfile.mkstemp(dir=self._tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    # ---------------------------------------------------------------- write path
    async def put_object(
        self,
        *,
        Bucket: str,
        Key: str,
        Body: Body,
        Metadata: Mapping[str, str] | None = None,
        ContentType: str | None = None,
        MaxRatio: float | None = None,
        NoDelta: bool = False,
    ) -> dict[str, Any]:
        """Store ``Body`` (bytes, a path, a binary file or an async iterator of bytes)."""
        check_bucket(Bucket)
        check_writable_key(Key)
        async with self._local_body(Body) as path:
            summary = await self._store(
                Bucket,
                Key,
                path,
                user_metadata=Metadata,
                content_type=ContentType,
                max_ratio=MaxRatio,
                no_delta=NoDelta,
            )
        return {
            "ETag": "",
            "ChecksumSHA256Hex": summary.sha256,
            "DeltaGliderInfo": DeltaGliderInfo(
                stored_as=summary.stored_as,
                stored_key=delta_key(Key) if summary.stored_as == "delta" else Key,
                stored_size=summary.stored_size,
                original_size=summary.original_size,
                ratio=delta_ratio(summary.stored_size, summary.original_size),
                reference_key=reference_key(space_of(Key))
                if summary.stored_as == "delta"
                else None,
                reason=summary.reason,
                reference_created=summary.reference_created,
            ).as_dict(),
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    async def upload(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        max_ratio: float | None = None,
        no_delta: bool = False,
        metadata: Mapping[str, str] | None = None,
        progress: Progress | None = None,
    ) -> UploadSummary:
        """Upload a local file to ``s3://bucket/key`` or into ``s3://bucket/prefix/``."""
        local, target, key = local_to_key(path, url)
        return await self._store(
            target.bucket,
            key,
            local,
            user_metadata=metadata,
            content_type=None,
            max_ratio=max_ratio,
            no_delta=no_delta,
            progress=progress,
        )

    @contextlib.asynccontextmanager
    async def _local_body(self, body: Body) -> AsyncIterator[Path]:
        if isinstance(body, os.PathLike):
            path = Path(body)
            if not path.is_file():
                raise InvalidArgumentError(f"Body path {path} is not a readable file")
            yield path
            return
        if isinstance(body, str):
            raise InvalidArgumentError(
                "Body is a str: pass bytes for content or pathlib.Path for a file"
            )
        spool = self._temp_path(".body")
        try:
            if isinstance(body, bytes | bytearray | memoryview):
                await anyio.Path(spool).write_bytes(bytes(body))
            elif hasattr(body, "__aiter__"):
                with spool.open("wb") as out:
                    async for chunk in body:
                        if not isinstance(chunk, bytes | bytearray | memoryview):
                            raise InvalidArgumentError("async Body must yield bytes")
                        await anyio.to_thread.run_sync(out.write, chunk)
            elif hasattr(body, "read"):
                with spool.open("wb") as out:
                    while True:
                        chunk = await anyio.to_thread.run_sync(body.read, 4 << 20)
                        if not chunk:
                            break
                        if not isinstance(chunk, bytes | bytearray | memoryview):
                            raise InvalidArgumentError("Body file must be opened in binary mode")
                        out.write(chunk)
            else:
                raise InvalidArgumentError(
                    f"unsupported Body type {type(body).__name__}: use bytes, a path, "
                    "a binary file or an async iterator of bytes"
                )
            yield spool
        finally:
            unlink_quietly(spool)

    async def _store(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        user_metadata: Mapping[str, str] | None,
        content_type: str | None,
        max_ratio: float | None,
        no_delta: bool,
        progress: Progress | None = None,
        space_start: SpaceStart | None = None,
        leads: bool = False,
    ) -> UploadSummary:
        """Store ``path`` as a delta against its space's reference where that is eligible and
        worth it, else directly.  ``space_start`` coordinates a bulk upload: the leader announces
        the reference it creates, the others encode against it early."""
        check_writable_key(key)
        ratio_limit = self._max_ratio if max_ratio is None else parse_max_ratio(max_ratio)
        await self._require_bucket(bucket)
        self._stats.invalidate(bucket)
        extra = {k.lower(): v for k, v in (user_metadata or {}).items()}
        if any(k.startswith(("dg-", "dg_")) for k in extra):
            raise InvalidArgumentError("user metadata keys may not start with dg-")
        put = _Put(bucket, key, extra, content_type, ratio_limit, progress)
        if no_delta:
            return await self._put_direct(put, path, "delta disabled")
        if not is_eligible(key, self._extensions):
            return await self._put_direct(put, path, "")
        if not fits_delta_layout(key):
            return await self._put_direct(put, path, "key too long for its .delta name")
        async with self._stable_copy(path) as stable:
            if stable.stat().st_size == 0:
                return await self._put_direct(put, stable, "empty file")
            for attempt in range(_GC_RACE_ROUNDS):
                first = attempt == 0
                stored = await self._put_delta(
                    put, stable, space_start if first else None, leads and first
                )
                if stored is not None and (first or stored.stored_as == "delta"):
                    return stored
                if stored is not None:
                    break
            else:  # raced by reference GC every time: a direct copy needs no reference
                stored = await self._put_direct(put, stable, "its reference kept changing")
            # An earlier round left a delta whose reference is gone: it must not stay.
            await self._storage.delete(bucket, delta_key(key))
            return stored

    @contextlib.asynccontextmanager
    async def _stable_copy(self, path: Path) -> AsyncIterator[Path]:
        """A file that holds still for the several reads a delta put makes (hash, reference,
        encode): small files are copied aside in one read; large ones are read in place and
        every part sent is checked against the read that hashed it."""
        limit = self._transfer.multipart_threshold
        if path.stat().st_size >= limit:
            yield path
            return
        data = await anyio.to_thread.run_sync(read_snapshot, path, limit)
        copy = self._temp_path(Path(path.name).suffix)
        try:
            await anyio.Path(copy).write_bytes(data)
            yield copy
        finally:
            unlink_quietly(copy)

    async def _put_delta(
        self, put: _Put, path: Path, space_start: SpaceStart | None, leads: bool
    ) -> UploadSummary | None:
        """One attempt at storing ``path`` as a delta; None when the reference it was encoded
        against is gone once the delta landed (a concurrent GC): the caller tries again."""
        bucket, key = put.bucket, put.key
        ref_key = reference_key(space_of(key))
        budget = delta_budget(path.stat().st_size, put.ratio_limit)
        delta_path = self._temp_path(DELTA_SUFFIX)
        reference_created = False
        ref_sha: str | None
        try:
            early = None
            if space_start is not None and not leads:
                early = await self._encode_early(
                    bucket, ref_key, space_start, path, delta_path, budget
                )
            if early is not None:
                ref_sha, result = early
            else:
                ref_head = await self._storage.head(bucket, ref_key)
                if ref_head is None:
                    ref_head, reference_created = await self._create_reference(
                        bucket, ref_key, key, path, space_start if leads else None
                    )
                ref_sha = _reference_sha(ref_head, ref_key)
                if leads and space_start is not None:
                    space_start.settle(ref_sha)
                if ref_sha is None:
                    return await self._put_direct(
                        put, path, f"{ref_key} is not a deltaglider reference"
                    )
                if reference_created:
                    result = await self._codec.encode_file(path, path, delta_path, None)
                    if result.sha256 != ref_sha:
                        raise FileChangedError(path)
                else:
                    result = await self._encode_against(
                        bucket, ref_key, ref_head.etag, ref_sha, path, delta_path, budget
                    )
            worth_it = not result.over_budget and keep_delta(
                result.delta_size, result.size, put.ratio_limit
            )
            if not reference_created and not worth_it:
                ratio = delta_ratio(result.delta_size, result.size)
                reason = f"delta ratio {ratio:.2f} > max {put.ratio_limit:.2f}"
                if result.over_budget:
                    reason = f"delta exceeds max ratio {put.ratio_limit:.2f}"
                return await self._put_direct(put, path, reason)
            meta = delta_metadata(
                tool=self._tool,
                original_name=name_of(key),
                sha256=result.sha256,
                size=result.size,
                created_at=timestamp(datetime.now(UTC)),
                ref_key=ref_key,
                ref_sha256=ref_sha,
                delta_size=result.delta_size,
                zero_diff=reference_created,
            )

            async def send() -> None:
                await self._storage.put_file(
                    bucket,
                    delta_key(key),
                    delta_path,
                    metadata={**put.extra, **meta},
                    content_type=put.content_type,
                )

            await send()
            kept = False

            async def confirm() -> None:
                nonlocal kept
                kept = await self._reference_is(bucket, ref_key, ref_sha)

            async with task_group() as tg:
                tg.start_soon(confirm)
                tg.start_soon(self._drop_twin, bucket, key, True, send)
        finally:
            unlink_quietly(delta_path)
        if not kept:
            log.warning(
                "s3://%s/%s: its reference was collected while the delta was stored; again",
                bucket,
                key,
            )
            return None
        log.info(
            "s3://%s/%s: stored as delta, %d of %d bytes",
            bucket,
            key,
            result.delta_size,
            result.size,
        )
        if put.progress:
            put.progress(result.size)
        return UploadSummary(
            bucket=bucket,
            key=key,
            original_size=result.size,
            # The first file of a space also pays for its reference: no saving on it.
            stored_size=result.delta_size + (result.size if reference_created else 0),
            stored_as="delta",
            sha256=result.sha256,
            reference_created=reference_created,
        )

    async def _reference_is(self, bucket: str, ref_key: str, sha256: str) -> bool:
        head = await self._storage.head(bucket, ref_key)
        return head is not None and _reference_sha(head, ref_key) == sha256

    async def _drop_twin(
        self, bucket: str, key: str, ours_is_delta: bool, send: Callable[[], Awaitable[None]]
    ) -> None:
        """After storing our copy of ``key``, delete the other kind's copy if it is older.

        A writer of the other kind may be doing the same to ours at this moment, and a delete
        may hit a copy stored after our HEAD; so once we deleted, we look at our own copy again
        and store it once more if it went (``_core/twins.py`` has the argument).
        """
        ours, other = (delta_key(key), key) if ours_is_delta else (key, delta_key(key))
        theirs = await self._storage.head(bucket, other)
        if theirs is None:
            return
        mine = await self._storage.head(bucket, ours)
        if mine is None:
            return  # ours was replaced or deleted meanwhile: not ours to clean up
        copies = {ours: _copy_rank(mine), other: _copy_rank(theirs)}
        if newer_copy(copies[delta_key(key)], copies[key]) != (
            "delta" if ours_is_delta else "direct"
        ):
            return  # theirs is newer: a reader serves it, and its writer removes ours
        await self._storage.delete(bucket, other)
        if await self._storage.head(bucket, ours) is None:
            log.info(
                "s3://%s/%s: a concurrent writer removed our copy; storing it again", bucket, key
            )
            await send()

    async def _require_bucket(self, bucket: str) -> None:
        """Some servers create missing buckets on PUT; a write to a typo must fail instead."""
        if bucket in self._known_buckets:
            return
        if not await self._storage.bucket_exists(bucket):
            raise BucketNotFoundError(f"s3://{bucket}: bucket does not exist", code="NoSuchBucket")
        self._known_buckets.add(bucket)

    async def _create_reference(
        self, bucket: str, ref_key: str, key: str, path: Path, announce: SpaceStart | None
    ) -> tuple[ObjectHead, bool]:
        """Create the space's reference from ``path``; exactly one concurrent writer wins."""
        digest = await self._codec.hash_file(
            path, self._transfer.part_size_for(path.stat().st_size)
        )
        sha256 = digest.sha256
        # The local file goes into the cache first (checked against ``sha256`` as it is
        # stored): no GET of what we send, and a bulk upload's other files can encode against
        # this copy while the reference uploads.
        try:
            await self._cache.warm(sha256, lambda: _iter_file(path))
        except IntegrityError as exc:  # the second read of the file found other bytes
            raise FileChangedError(path) from exc
        if announce is not None:
            announce.offer(sha256)
        meta = reference_metadata(
            tool=self._tool,
            source_name=name_of(key),
            sha256=sha256,
            created_at=timestamp(datetime.now(UTC)),
        )
        with contextlib.suppress(ConflictError):  # another writer won: use its reference
            await self._storage.put_file(
                bucket, ref_key, path, metadata=meta, if_none_match=True, verify=digest
            )
        head = await self._storage.head(bucket, ref_key)
        if head is None:
            raise ConflictError(f"s3://{bucket}/{ref_key}: reference vanished while creating it")
        winner = _reference_sha(head, ref_key)
        if announce is not None:
            announce.settle(winner)
        if winner != sha256:
            log.info("s3://%s/%s: another writer created the reference first", bucket, ref_key)
            return head, False
        # Ours, a twin with the same bytes, or the lost response of our own create-only PUT
        # (412 on its retry).
        log.info("s3://%s/%s: reference created from %s", bucket, ref_key, name_of(key))
        return head, True

    async def _encode_against(
        self,
        bucket: str,
        ref_key: str,
        etag: str | None,
        ref_sha: str | None,
        path: Path,
        delta_path: Path,
        budget: int | None,
    ) -> EncodeResult:
        async def run(reference: ReferenceSource) -> EncodeResult:
            return await self._codec.encode_file(reference, path, delta_path, budget)

        return await self._with_reference(bucket, ref_key, etag, ref_sha, run)

    async def _encode_early(
        self,
        bucket: str,
        ref_key: str,
        start: SpaceStart,
        path: Path,
        delta_path: Path,
        budget: int | None,
    ) -> tuple[str, EncodeResult] | None:
        """Encode against the reference the space's leader is still uploading.

        The result counts only if the reference that ends up in S3 has the same SHA-256;
        otherwise (another writer won, the leader failed, the cached copy was gone) the caller
        takes the ordinary path and encodes again.
        """
        await start.ready.wait()
        candidate = start.candidate
        if candidate is None:
            return None
        try:
            result: EncodeResult | None = await self._encode_against(
                bucket, ref_key, None, candidate, path, delta_path, budget
            )
        except DeltaGliderError as exc:
            log.info("s3://%s/%s: early encode failed (%s); encoding again", bucket, ref_key, exc)
            result = None
        await start.settled.wait()
        if result is None or start.winner != candidate:
            return None
        return candidate, result

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

        def fetch() -> AsyncIterator[bytes]:
            return self._storage.iter_object(bucket, ref_key, etag=etag or None)

        for attempt in range(2):
            reference = await self._cache.get(sha256, fetch)
            try:
                return await work(reference)
            except Exception as exc:
                if attempt == 0 and (
                    isinstance(exc, CacheCorruptError)
                    or isinstance(exc.__cause__, CacheCorruptError)
                ):
                    log.warning(
                        "cached reference %s… is corrupt: dropped, fetching again", sha256[:12]
                    )
                    self._cache.evict(sha256)
                    continue
                raise
            finally:
                _close(reference)
        raise AssertionError("unreachable")

    async def _put_direct(self, put: _Put, path: Path, reason: str) -> UploadSummary:
        """Store ``path`` as it is, hashing exactly the bytes sent: a small file is read once;
        a large one is hashed, then every part sent is checked against that read."""
        threshold = self._transfer.multipart_threshold
        size = path.stat().st_size
        created_at = timestamp(datetime.now(UTC))
        data: bytes | None = None
        digest: FileDigest | None = None
        if size < threshold:
            data = await anyio.to_thread.run_sync(read_snapshot, path, threshold)
            sha256, size = hashlib.sha256(data).hexdigest(), len(data)
        else:
            digest = await self._codec.hash_file(path, self._transfer.part_size_for(size))
            sha256, size = digest.sha256, digest.size
        meta = {
            **put.extra,
            **direct_metadata(
                tool=self._tool,
                original_name=name_of(put.key),
                sha256=sha256,
                size=size,
                created_at=created_at,
            ),
        }

        async def send(progress: Progress | None = None) -> None:
            if data is not None:
                await self._storage.put_bytes(
                    put.bucket, put.key, data, metadata=meta, content_type=put.content_type
                )
                if progress:
                    progress(len(data))
            else:
                await self._storage.put_file(
                    put.bucket,
                    put.key,
                    path,
                    metadata=meta,
                    content_type=put.content_type,
                    progress=progress,
                    verify=digest,
                )

        await send(put.progress)
        if is_eligible(put.key, self._extensions) and fits_delta_layout(put.key):
            await self._drop_twin(put.bucket, put.key, False, send)
        log.info(
            "s3://%s/%s: stored directly, %d bytes%s",
            put.bucket,
            put.key,
            size,
            f" ({reason})" if reason else "",
        )
        return UploadSummary(
            bucket=put.bucket,
            key=put.key,
            original_size=size,
            stored_size=size,
            stored_as="direct",
            sha256=sha256,
            reason=reason,
        )

    # ---------------------------------------------------------------- read path
    async def _resolve(self, bucket: str, key: str) -> _Resolved:
        check_bucket(bucket)
        kind, logical = classify(key)
        if kind is StoredKind.DELTA:
            key = logical  # a stored name was given: serve the logical object
        check_logical_key(key)
        heads: dict[str, ObjectHead | None] = {}

        async def head(stored: str) -> None:
            heads[stored] = await self._storage.head(bucket, stored)

        async with task_group() as tg:
            tg.start_soon(head, delta_key(key))
            tg.start_soon(head, key)
        delta_head, direct = heads[delta_key(key)], heads[key]
        if delta_head is not None:
            meta = parse_metadata(delta_head.metadata, delta_key(key))
            delta = _Resolved(bucket, key, delta_key(key), delta_head, meta)
            if meta.kind is MetaKind.DELTA and (
                direct is None or _served(delta, direct) == "delta"
            ):
                return delta
        if direct is None:
            raise NotFoundError(f"s3://{bucket}/{key}: no such object")
        return _Resolved(bucket, key, key, direct, parse_metadata(direct.metadata, key))

    def _open_stream(self, obj: _Resolved) -> AsyncIterator[bytes]:
        """The logical bytes of ``obj`` (decoded if it is a delta)."""
        if obj.meta.kind is not MetaKind.DELTA:
            return self._storage.iter_object(obj.bucket, obj.stored_key, etag=obj.head.etag or None)
        return self._decode_stream(obj)

    async def _decode_stream(self, obj: _Resolved) -> AsyncIterator[bytes]:
        meta = obj.meta
        ref_key = meta.ref_key or reference_key(space_of(obj.key))
        what = f"s3://{obj.bucket}/{obj.key}"
        emitted = 0
        for attempt in range(2):
            reference = await self._cache.get(
                meta.ref_sha256 or await self._fetch_reference_sha(obj.bucket, ref_key),
                lambda: self._storage.iter_object(obj.bucket, ref_key),
            )
            delta = self._storage.iter_object(
                obj.bucket, obj.stored_key, etag=obj.head.etag or None
            )
            position = 0
            try:
                async for chunk in self._codec.decode(reference, delta, meta.file_size, what):
                    # After a retry, skip what the consumer already has.
                    skip = max(0, min(len(chunk), emitted - position))
                    position += len(chunk)
                    if skip < len(chunk):
                        emitted += len(chunk) - skip
                        yield chunk[skip:]
                return
            except CacheCorruptError:
                self._cache.evict(reference.sha256)
                if attempt:
                    raise
            finally:
                _close(reference)

    async def _fetch_reference_sha(self, bucket: str, ref_key: str) -> str:
        head = await self._storage.head(bucket, ref_key)
        sha = parse_metadata(head.metadata, ref_key).file_sha256 if head else None
        if sha is None:
            raise IntegrityError(f"s3://{bucket}/{ref_key}: reference missing or without SHA-256")
        return sha

    async def get_object(
        self, *, Bucket: str, Key: str, Range: str | None = None
    ) -> dict[str, Any]:
        """Logical object; ``Body`` streams it and checks its SHA-256 when read to the end."""
        obj = await self._resolve(Bucket, Key)
        size = obj.logical_size
        what = f"s3://{Bucket}/{obj.key}"
        response = obj.response_head()
        if Range is None:
            body = StreamingBody(
                self._open_stream(obj),
                what=what,
                expected_sha256=obj.meta.file_sha256,
                expected_size=size if size >= 0 else None,
                content_length=size,
            )
            response.update(Body=body, ContentLength=size)
            return response
        start, end = _parse_range(Range, size)
        if obj.meta.kind is MetaKind.DELTA:
            stream = _slice(self._verified(obj, what), start, end)
        else:
            stream = self._storage.iter_object(
                Bucket, obj.stored_key, start=start, end=end, etag=obj.head.etag or None
            )
        body = StreamingBody(
            stream,
            what=what,
            expected_sha256=None,
            expected_size=end - start,
            content_length=end - start,
        )
        response.update(
            Body=body,
            ContentLength=end - start,
            ContentRange=f"bytes {start}-{end - 1}/{size}",
            ResponseMetadata={"HTTPStatusCode": 206},
        )
        return response

    async def _verified(self, obj: _Resolved, what: str) -> AsyncIterator[bytes]:
        body = StreamingBody(
            self._open_stream(obj),
            what=what,
            expected_sha256=obj.meta.file_sha256,
            expected_size=obj.meta.file_size,
            content_length=None,
        )
        async for chunk in body.iter_chunks():
            yield chunk

    async def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        obj = await self._resolve(Bucket, Key)
        return {"ContentLength": obj.logical_size, **obj.response_head()}

    async def download(
        self,
        url: str,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> DownloadSummary:
        """Download a logical object to ``path`` (or into it, if it is a directory).

        The bytes go to a temporary file beside the destination, renamed over it only once the
        SHA-256 matched: a failed or corrupt download never creates or replaces the file.  A
        FIFO or a device is written into (as ``cp`` does) and never replaced; a symlink is
        followed.
        """
        source = parse_s3_url(url)
        if source.is_prefix:
            raise InvalidArgumentError(f"{url} names a prefix; download needs an object key")
        obj = await self._resolve(source.bucket, source.key)
        destination = Path(path)
        if destination.is_dir():
            destination = destination / name_of(obj.key)
        # Opening a FIFO waits for its reader: not on the event loop's thread.
        target = await anyio.to_thread.run_sync(Destination, destination)
        try:
            verified = await self._write_object(
                obj, target.fd, progress, seekable=not target.special
            )
            modified = obj.head.last_modified
            target.commit(modified.timestamp() if modified is not None else None)
        except BaseException:
            target.abort()
            raise
        return DownloadSummary(
            bucket=obj.bucket,
            key=obj.key,
            path=str(destination),
            size=obj.logical_size if target.special else target.path.stat().st_size,
            sha256=obj.meta.file_sha256,
            stored_as=obj.stored_as,
            verified=verified,
        )

    async def _write_object(
        self, obj: _Resolved, fd: int, progress: Progress | None, *, seekable: bool = True
    ) -> bool:
        what = f"s3://{obj.bucket}/{obj.key}"
        if (
            seekable
            and obj.meta.kind is not MetaKind.DELTA
            and obj.head.size >= self._transfer.multipart_threshold
        ):
            sha = await self._storage.download_to_fd(
                obj.bucket, obj.stored_key, fd, obj.head.size, obj.head.etag, progress=progress
            )
            if obj.meta.file_sha256 is None:
                return False
            if sha != obj.meta.file_sha256:
                raise IntegrityError(f"{what}: SHA-256 mismatch after download")
            return True
        body = StreamingBody(
            self._open_stream(obj),
            what=what,
            expected_sha256=obj.meta.file_sha256,
            expected_size=obj.logical_size if obj.logical_size >= 0 else None,
            content_length=None,
        )
        async for chunk in body.iter_chunks(4 << 20):
            await anyio.to_thread.run_sync(write_all, fd, chunk)
            if progress:
                progress(len(chunk))
        return body.verified

    async def verify(self, url: str) -> VerifyResult:
        """Reconstruct the object in memory-bounded streaming and compare its SHA-256."""
        source = parse_s3_url(url)
        obj = await self._resolve(source.bucket, source.key)
        body = StreamingBody(
            self._open_stream(obj),
            what=url,
            expected_sha256=None,
            expected_size=None,
            content_length=None,
        )
        digest = hashlib.sha256()
        size = 0
        message = ""
        try:
            async for chunk in body.iter_chunks(4 << 20):
                digest.update(chunk)
                size += len(chunk)
        except IntegrityError as exc:
            message = str(exc)
        actual = digest.hexdigest() if not message else None
        expected = obj.meta.file_sha256
        valid = not message and (expected is None or actual == expected)
        if not message and expected is not None and actual != expected:
            message = "SHA-256 mismatch"
        if not message and obj.meta.file_size is not None and size != obj.meta.file_size:
            valid, message = False, f"size {size} != recorded {obj.meta.file_size}"
        if expected is None and not message:
            valid, message = False, "no recorded SHA-256 (not stored by deltaglider): not verified"
        return VerifyResult(
            bucket=obj.bucket,
            key=obj.key,
            valid=valid,
            expected_sha256=expected,
            actual_sha256=actual,
            size=size,
            stored_as=obj.stored_as,
            message=message,
        )

    async def estimate_compression(
        self, path: str | os.PathLike[str], url: str
    ) -> CompressionEstimate:
        """Trial-encode a local file against the reference of the delta space ``url`` names."""
        local, target, key = local_to_key(path, url)
        size = local.stat().st_size
        if not is_eligible(key, self._extensions):
            return CompressionEstimate(size, size, 1.0, "direct", None, "not delta-eligible")
        ref_key = reference_key(space_of(key))
        head = await self._storage.head(target.bucket, ref_key)
        if head is None:
            return CompressionEstimate(
                size,
                size,
                1.0,
                "delta",
                None,
                "first file of its delta space: becomes the reference",
            )
        delta_path = self._temp_path(DELTA_SUFFIX)
        try:
            result = await self._encode_against(
                target.bucket,
                ref_key,
                head.etag,
                parse_metadata(head.metadata, ref_key).file_sha256,
                local,
                delta_path,
                None,
            )
        finally:
            unlink_quietly(delta_path)
        ratio = delta_ratio(result.delta_size, size)
        keep = keep_delta(result.delta_size, size, self._max_ratio)
        return CompressionEstimate(
            original_size=size,
            estimated_size=result.delta_size if keep else size,
            ratio=ratio,
            would_store_as="delta" if keep else "direct",
            reference_key=ref_key,
            reason="" if keep else f"delta ratio {ratio:.2f} > max {self._max_ratio:.2f}",
        )

    # ---------------------------------------------------------------- listing
    async def list_objects_v2(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        Delimiter: str | None = None,
        MaxKeys: int = 1000,
        ContinuationToken: str | None = None,
        StartAfter: str | None = None,
        FetchMetadata: bool = False,
    ) -> dict[str, Any]:
        """One page of logical objects.  ``FetchMetadata`` HEADs deltas for their logical size."""
        check_bucket(Bucket)
        page = await self._storage.list_page(
            Bucket,
            prefix=Prefix,
            delimiter=Delimiter,
            token=ContinuationToken,
            start_after=StartAfter,
            max_keys=MaxKeys,
        )
        contents: list[dict[str, Any]] = []
        seen: set[str] = set()
        for obj in page.objects:
            kind, logical = classify(obj["Key"])
            if kind in (StoredKind.REFERENCE, StoredKind.INTERNAL) or logical in seen:
                continue
            seen.add(logical)
            contents.append(
                {
                    "Key": logical,
                    "Size": obj.get("Size", 0),
                    "LastModified": obj.get("LastModified"),
                    "ETag": obj.get("ETag", ""),
                    "StorageClass": obj.get("StorageClass", "STANDARD"),
                    "DeltaGliderInfo": {
                        "StoredAs": "delta" if kind is StoredKind.DELTA else "direct",
                        "StoredKey": obj["Key"],
                        "StoredSize": obj.get("Size", 0),
                        "OriginalSize": None if kind is StoredKind.DELTA else obj.get("Size", 0),
                    },
                }
            )
        if FetchMetadata:
            await self._fill_logical_sizes(Bucket, contents)
        prefixes = [{"Prefix": p} for p in page.prefixes if not p.startswith(".deltaglider/")]
        response: dict[str, Any] = {
            "Name": Bucket,
            "Prefix": Prefix,
            "MaxKeys": MaxKeys,
            "KeyCount": len(contents) + len(prefixes),
            "IsTruncated": page.truncated,
            "Contents": contents,
            "CommonPrefixes": prefixes,
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }
        if Delimiter:
            response["Delimiter"] = Delimiter
        if page.next_token:
            response["NextContinuationToken"] = page.next_token
        return response

    async def _fill_logical_sizes(self, bucket: str, contents: list[dict[str, Any]]) -> None:
        limiter = anyio.CapacityLimiter(32)

        async def fill(entry: dict[str, Any]) -> None:
            async with limiter:
                stored = entry["DeltaGliderInfo"]["StoredKey"]
                head = await self._storage.head_fast(bucket, stored)
            if head is None:
                return
            meta = parse_metadata(head.metadata, stored)
            size = meta.file_size
            entry["DeltaGliderInfo"]["OriginalSize"] = size
            entry["DeltaGliderInfo"]["Sha256"] = meta.file_sha256
            if size is not None:
                entry["Size"] = size

        async with task_group() as tg:
            for entry in contents:
                if entry["DeltaGliderInfo"]["StoredAs"] == "delta":
                    tg.start_soon(fill, entry)

    def get_paginator(self, operation: str) -> ListObjectsPaginator:
        if operation != "list_objects_v2":
            raise InvalidArgumentError(f"no paginator for {operation!r}")
        return ListObjectsPaginator(self)

    # ---------------------------------------------------------------- deletion
    async def delete_object(self, *, Bucket: str, Key: str, Force: bool = False) -> dict[str, Any]:
        """Delete a logical object; the last delta of a space takes its reference with it.

        ``Key`` naming a ``reference.bin`` deletes that reference only when no delta uses it
        (or with ``Force=True``).
        """
        check_bucket(Bucket)
        if name_of(Key) == REFERENCE_NAME:
            check_writable_key(space_of(Key) + "x")
            self._stats.invalidate(Bucket)
            await self._delete_reference(Bucket, space_of(Key), force=Force)
            return {"DeleteMarker": False, "ResponseMetadata": {"HTTPStatusCode": 204}}
        check_writable_key(classify(Key)[1] or Key)
        obj = await self._resolve(Bucket, Key)
        self._stats.invalidate(Bucket)
        await self._delete_logical(obj)
        if obj.meta.kind is MetaKind.DELTA:
            await self._collect_reference(Bucket, space_of(obj.key))
        return {
            "DeleteMarker": False,
            "DeltaGliderInfo": obj.info().as_dict(),
            "ResponseMetadata": {"HTTPStatusCode": 204},
        }

    async def _delete_logical(self, obj: _Resolved) -> None:
        """Both stored forms of the key go: the one served and a twin of the other kind."""
        await self._storage.delete(obj.bucket, obj.stored_key)
        if is_eligible(obj.key, self._extensions) or obj.meta.kind is MetaKind.DELTA:
            twin = obj.key if obj.stored_key != obj.key else delta_key(obj.key)
            await self._storage.delete(obj.bucket, twin)

    async def _list_space(self, bucket: str, space: str) -> tuple[list[str], bool]:
        """The deltas directly in ``space``, and whether the listing showed its reference."""
        deltas: list[str] = []
        reference_listed = False
        token: str | None = None
        while True:
            page = await self._storage.list_page(bucket, prefix=space, delimiter="/", token=token)
            for entry in page.objects:
                kind, _ = classify(entry["Key"])
                if kind is StoredKind.DELTA and space_of(entry["Key"]) == space:
                    deltas.append(entry["Key"])
                elif entry["Key"] == reference_key(space):
                    reference_listed = True
            if not page.truncated or not page.next_token:
                return deltas, reference_listed
            token = page.next_token

    async def _collect_reference(self, bucket: str, space: str) -> None:
        """Delete the space's reference once no delta uses it, without stranding a delta that
        a concurrent writer stores meanwhile (docs/reliability.md):

        1. one listing of the space shows its reference and no delta (the reference must be in
           that very listing: a server that aliases key spellings cannot make us collect the
           reference of another space);
        2. the reference is copied aside, server-side, to a hidden key;
        3. the reference is deleted;
        4. a second listing: deltas that landed meanwhile get the reference back (or, if a new
           first writer already made another one, are stored again against it);
        5. the copy aside is deleted.
        Writers check the reference after storing their delta and store again if it is gone.
        """
        ref_key = reference_key(space)
        deltas, listed = await self._list_space(bucket, space)
        if deltas or not listed:
            return
        head = await self._storage.head(bucket, ref_key)
        sha = _reference_sha(head, ref_key) if head is not None else None
        if sha is None:
            return  # gone already, or not ours to delete
        aside = f"{INTERNAL_PREFIX}gc/{sha}-{uuid.uuid4().hex[:12]}"
        try:
            await self._storage.copy(bucket, ref_key, bucket, aside)
        except DeltaGliderError as exc:
            log.warning("s3://%s/%s: kept (cannot copy it aside: %s)", bucket, ref_key, exc)
            return
        try:
            await self._storage.delete(bucket, ref_key)
            deltas, _ = await self._list_space(bucket, space)
            if deltas:
                await self._reinstate_reference(bucket, ref_key, aside, sha, deltas)
        finally:
            with anyio.CancelScope(shield=True):
                await self._storage.delete(bucket, aside)

    async def _reinstate_reference(
        self, bucket: str, ref_key: str, aside: str, sha: str, deltas: list[str]
    ) -> None:
        """Deltas appeared while their reference was being collected: put it back."""
        stranded = []
        for stored in deltas:
            head = await self._storage.head(bucket, stored)
            if head is not None and parse_metadata(head.metadata, stored).ref_sha256 in (sha, None):
                stranded.append(classify(stored)[1])
        if not stranded:
            return
        copy = self._temp_path(".ref")
        try:
            fd = os.open(copy, os.O_WRONLY | os.O_TRUNC)
            try:
                async for chunk in self._storage.iter_object(bucket, aside):
                    await anyio.to_thread.run_sync(write_all, fd, chunk)
            finally:
                os.close(fd)
            head = await self._storage.head(bucket, aside)
            metadata = head.metadata if head is not None else {}
            try:
                await self._storage.put_file(
                    bucket, ref_key, copy, metadata=metadata, if_none_match=True
                )
                log.info(
                    "s3://%s/%s: reinstated for %d new delta(s)", bucket, ref_key, len(stranded)
                )
                return
            except ConflictError:
                pass
            if await self._reference_is(bucket, ref_key, sha):
                return
            # A new first writer made another reference: store the stranded objects against it.
            await self._cache.warm(sha, lambda: _iter_file(copy))
        finally:
            unlink_quietly(copy)
        for key in stranded:
            await self._store_again(bucket, key)

    async def _store_again(self, bucket: str, key: str) -> None:
        """Rebuild an object and store it anew (against its space's current reference)."""
        obj = await self._resolve(bucket, key)
        spool = self._temp_path(".again")
        try:
            fd = os.open(spool, os.O_WRONLY | os.O_TRUNC)
            try:
                await self._write_object(obj, fd, None)
            finally:
                os.close(fd)
            await self._store(
                bucket,
                key,
                spool,
                user_metadata=_user_metadata(obj.head.metadata),
                content_type=obj.head.content_type,
                max_ratio=None,
                no_delta=False,
            )
        finally:
            unlink_quietly(spool)

    async def _delete_reference(self, bucket: str, space: str, *, force: bool) -> None:
        deltas, _ = await self._list_space(bucket, space)
        if deltas and not force:
            raise ReferenceInUseError(
                f"s3://{bucket}/{reference_key(space)} is used by deltas in {space or 'the root'}; "
                "delete them first or force"
            )
        await self._storage.delete(bucket, reference_key(space))

    async def delete_objects(self, *, Bucket: str, Delete: Mapping[str, Any]) -> dict[str, Any]:
        """Batch delete of logical keys; per-key failures are reported, not raised."""
        check_bucket(Bucket)
        keys = [item["Key"] for item in Delete.get("Objects", [])]
        self._stats.invalidate(Bucket)
        deleted: list[dict[str, str]] = []
        errors: list[dict[str, str]] = []
        limiter = anyio.CapacityLimiter(self._transfer.max_files * 4)
        spaces: set[str] = set()

        async def one(key: str) -> None:
            async with limiter:
                try:
                    check_writable_key(classify(key)[1] or key)
                    obj = await self._resolve(Bucket, key)
                    await self._delete_logical(obj)
                    if obj.meta.kind is MetaKind.DELTA:
                        spaces.add(space_of(obj.key))
                    deleted.append({"Key": key})
                except DeltaGliderError as exc:
                    errors.append({"Key": key, "Code": exc.code, "Message": str(exc)})

        async with task_group() as tg:
            for key in keys:
                tg.start_soon(one, key)
        for space in sorted(spaces):
            await self._collect_reference(Bucket, space)
        response: dict[str, Any] = {"Deleted": deleted, "ResponseMetadata": {"HTTPStatusCode": 200}}
        if errors:
            response["Errors"] = errors
        return response

    # ---------------------------------------------------------------- copy
    async def copy_object(
        self, *, Bucket: str, Key: str, CopySource: Mapping[str, str] | str
    ) -> dict[str, Any]:
        """Copy a logical object; re-encoded against the destination space's reference."""
        if isinstance(CopySource, str):
            src_bucket, _, src_key = CopySource.lstrip("/").partition("/")
        else:
            src_bucket, src_key = CopySource["Bucket"], CopySource["Key"]
        check_bucket(Bucket)
        check_writable_key(Key)
        obj = await self._resolve(src_bucket, src_key)
        spool = self._temp_path(".copy")
        try:
            fd = os.open(spool, os.O_WRONLY | os.O_TRUNC)
            try:
                await self._write_object(obj, fd, None)
            finally:
                os.close(fd)
            summary = await self._store(
                Bucket,
                Key,
                spool,
                user_metadata=_user_metadata(obj.head.metadata),
                content_type=obj.head.content_type,
                max_ratio=None,
                no_delta=False,
            )
        finally:
            unlink_quietly(spool)
        return {
            "CopyObjectResult": {"ETag": "", "LastModified": datetime.now(UTC)},
            "DeltaGliderInfo": {"StoredAs": summary.stored_as, "StoredSize": summary.stored_size},
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }

    # ---------------------------------------------------------------- buckets and misc
    async def create_bucket(self, *, Bucket: str, **kwargs: Any) -> dict[str, Any]:
        check_bucket(Bucket)
        region = kwargs.get("CreateBucketConfiguration", {}).get("LocationConstraint")
        return await self._storage.create_bucket(Bucket, region)

    async def delete_bucket(self, *, Bucket: str) -> dict[str, Any]:
        check_bucket(Bucket)
        await self._storage.delete_bucket(Bucket)
        self._known_buckets.discard(Bucket)
        return {"ResponseMetadata": {"HTTPStatusCode": 204}}

    async def list_buckets(self) -> dict[str, Any]:
        """Buckets; those with statistics computed by this client carry ``DeltaGliderStats``."""
        buckets = await self._storage.list_buckets()
        for entry in buckets:
            cached = self._stats.cached(entry["Name"])
            if cached is not None:
                entry["DeltaGliderStats"] = cached.as_dict()
        return {"Buckets": buckets, "ResponseMetadata": {"HTTPStatusCode": 200}}

    async def generate_presigned_url(
        self, ClientMethod: str, Params: Mapping[str, Any], ExpiresIn: int = 3600
    ) -> str:
        """Presigned URL of a direct object (a delta cannot be served by S3 alone)."""
        if ClientMethod == "get_object":
            obj = await self._resolve(Params["Bucket"], Params["Key"])
            if obj.meta.kind is MetaKind.DELTA:
                raise InvalidArgumentError(
                    f"s3://{obj.bucket}/{obj.key} is stored as a delta; a presigned URL needs a "
                    "direct object (upload it with NoDelta=True)"
                )
        return await self._storage.presign(ClientMethod, dict(Params), ExpiresIn)

    def clear_cache(self) -> int:
        """Drop every cached reference this client can read, and all cached statistics."""
        self._stats.clear()
        return self._cache.clear()

    # ---------------------------------------------------------------- statistics
    async def bucket_stats(
        self,
        bucket: str,
        mode: Mode = "quick",
        *,
        prefix: str | None = None,
        refresh: bool = False,
    ) -> BucketStats:
        """How much delta compression saves in a bucket (or under a prefix).

        ``quick`` lists only (original sizes estimated from each space's reference);
        ``sampled`` HEADs a few deltas per space and projects; ``detailed`` HEADs every delta,
        concurrently, while the listing streams.  Results are cached (see docs/stats.md).
        """
        check_bucket(bucket)
        return await self._stats.bucket_stats(bucket, mode, prefix=prefix, refresh=refresh)

    async def get_bucket_stats(self, bucket: str, detailed_stats: bool = False) -> BucketStats:
        """The older SDK's signature: ``detailed_stats=True`` is the detailed mode."""
        return await self.bucket_stats(bucket, "detailed" if detailed_stats else "quick")

    # ---------------------------------------------------------------- bulk
    async def upload_many(
        self,
        items: Iterable[tuple[str | os.PathLike[str], str]],
        *,
        max_ratio: float | None = None,
        no_delta: bool = False,
        progress: ProgressCallback | None = None,
    ) -> list[TransferResult]:
        """Upload many ``(path, s3 url)`` pairs concurrently; see :mod:`deltaglider_async`."""
        return await upload_many(
            self, items, max_ratio=max_ratio, no_delta=no_delta, progress=progress
        )

    async def download_many(
        self,
        items: Iterable[tuple[str, str | os.PathLike[str]]],
        *,
        progress: ProgressCallback | None = None,
    ) -> list[TransferResult]:
        """Download many ``(s3 url, path)`` pairs concurrently."""
        return await download_many(self, items, progress=progress)

    async def iter_objects(
        self, bucket: str, prefix: str = "", *, fetch_metadata: bool = False
    ) -> AsyncIterator[dict[str, Any]]:
        """Every logical object under ``prefix`` (all pages)."""
        async for page in self.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, FetchMetadata=fetch_metadata
        ):
            for entry in page["Contents"]:
                yield entry

    async def evict_cache(self, url: str) -> bool:
        """Drop the cached reference of the delta space that ``url`` is in."""
        target = parse_s3_url(url)
        ref_key = reference_key(space_of(target.key))
        head = await self._storage.head(target.bucket, ref_key)
        sha = parse_metadata(head.metadata, ref_key).file_sha256 if head else None
        return self._cache.evict(sha) if sha else False

    async def list_multipart_uploads(self, *, Bucket: str) -> dict[str, Any]:
        return {"Uploads": await self._storage.list_multipart_uploads(Bucket)}


class ListObjectsPaginator:
    """``async for page in dg.get_paginator("list_objects_v2").paginate(Bucket=...)``."""

    def __init__(self, client: AsyncDeltaGliderClient) -> None:
        self._client = client

    async def paginate(self, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        token = kwargs.pop("ContinuationToken", None)
        while True:
            page = await self._client.list_objects_v2(ContinuationToken=token, **kwargs)
            yield page
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return


def _copy_rank(head: ObjectHead) -> tuple[datetime | None, str | None]:
    return head.last_modified, parse_metadata(head.metadata, head.key).created_at


def _served(delta: _Resolved, direct: ObjectHead) -> str:
    """Which copy of a key stored both ways a reader serves (see ``_core/twins.py``)."""
    return newer_copy(_copy_rank(delta.head), _copy_rank(direct))


def _reference_sha(head: ObjectHead, ref_key: str) -> str | None:
    """The SHA-256 of a reference we can use; None for a ``reference.bin`` that is not one
    (another tool's object, an error page saved under that name)."""
    meta = parse_metadata(head.metadata, ref_key)
    return meta.file_sha256 if meta.kind is MetaKind.REFERENCE else None


def _close(reference: ReferenceSource) -> None:
    closer = getattr(reference, "close", None)
    if closer is not None:
        closer()


def _user_metadata(meta: Mapping[str, str]) -> dict[str, str]:
    internal = ("dg-", "dg_")
    bare = {
        "file_sha256",
        "ref_key",
        "original_name",
        "file_size",
        "ref_sha256",
        "delta_size",
        "delta_cmd",
        "created_at",
        "source_name",
        "compression",
        "note",
        "tool",
    }
    return {k: v for k, v in meta.items() if not k.startswith(internal) and k not in bare}


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → half-open ``[start, end)``."""
    if size < 0:
        raise InvalidArgumentError("the object's size is unknown; ranges are not available")
    spec = header.strip()
    if not spec.startswith("bytes=") or "," in spec:
        raise InvalidArgumentError(f"unsupported Range {header!r}")
    first, _, last = spec[6:].partition("-")
    try:
        if first == "":
            start, end = max(0, size - int(last)), size
        else:
            start = int(first)
            end = size if last == "" else min(size, int(last) + 1)
    except ValueError:
        raise InvalidArgumentError(f"invalid Range {header!r}") from None
    if start >= size or start >= end:
        raise InvalidArgumentError(f"Range {header!r} is not satisfiable for {size} bytes")
    return start, end


async def _slice(chunks: AsyncIterator[bytes], start: int, end: int) -> AsyncIterator[bytes]:
    position = 0
    async for chunk in chunks:
        lo, hi = max(start - position, 0), min(end - position, len(chunk))
        if lo < hi:
            yield chunk[lo:hi]
        position += len(chunk)


async def _iter_file(path: Path, chunk_size: int = 4 << 20) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as src:
        while chunk := await src.read(chunk_size):
            yield chunk


def create_client(
    endpoint_url: str | None = None,
    *,
    region_name: str | None = None,
    aws_access_key_id: str | None = None,
    aws_secret_access_key: str | None = None,
    aws_session_token: str | None = None,
    profile_name: str | None = None,
    max_ratio: float | None = None,
    cache: ReferenceCache | None = None,
    cache_backend: str | None = None,
    transfer: TransferConfig | None = None,
    delta_extensions: Iterable[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncDeltaGliderClient:
    """Build a client; use it as ``async with create_client(...) as dg``.

    Unset arguments come from the environment as the older tool reads it: ``AWS_*`` (through
    botocore, ``AWS_ENDPOINT_URL`` included), ``DG_MAX_RATIO``, ``DG_CACHE_BACKEND``
    (``filesystem``/``memory``), ``DG_CACHE_MEMORY_SIZE_MB``, ``DG_CACHE_ENCRYPTION_KEY``,
    ``DG_CACHE_DIR`` and ``DG_LOG_LEVEL``.
    """
    environ = os.environ if env is None else env
    transfer = transfer or TransferConfig()
    if cache is None:
        key_text = environ.get("DG_CACHE_ENCRYPTION_KEY")
        try:
            memory_mb = int(environ.get("DG_CACHE_MEMORY_SIZE_MB", "100"))
        except ValueError:
            raise InvalidArgumentError("DG_CACHE_MEMORY_SIZE_MB must be an integer") from None
        cache = ReferenceCache(
            backend=cache_backend or environ.get("DG_CACHE_BACKEND", "filesystem"),
            key=parse_key(key_text) if key_text else None,
            directory=Path(environ["DG_CACHE_DIR"]) if environ.get("DG_CACHE_DIR") else None,
            memory_bytes=memory_mb << 20,
        )
    if level := environ.get("DG_LOG_LEVEL"):
        try:
            log.setLevel(level.upper())
        except ValueError:
            raise InvalidArgumentError(
                f"DG_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            ) from None
        if not logging.getLogger().handlers and not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            log.addHandler(handler)
    storage = S3Storage(
        endpoint_url=endpoint_url or environ.get("AWS_ENDPOINT_URL") or None,
        region_name=region_name or environ.get("AWS_DEFAULT_REGION") or environ.get("AWS_REGION"),
        aws_access_key_id=aws_access_key_id,
        aws_secret_access_key=aws_secret_access_key,
        aws_session_token=aws_session_token,
        profile_name=profile_name,
        transfer=transfer,
    )
    return AsyncDeltaGliderClient(
        storage,
        cache,
        max_ratio=parse_max_ratio(max_ratio, environ),
        transfer=transfer,
        delta_extensions=delta_extensions or DEFAULT_DELTA_EXTENSIONS,
    )

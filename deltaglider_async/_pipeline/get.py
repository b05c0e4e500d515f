"""The get pipeline: a logical key back to its bytes, checked against the recorded SHA-256.

:meth:`GetPipeline.resolve` HEADs both stored forms and picks the one that counts;
:meth:`open_stream` streams a direct object or decodes a delta against the cached reference;
:meth:`download` writes through a :class:`~.._localfs.Destination` (temporary file renamed only
once the SHA-256 matched, or in place for FIFOs and devices).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import anyio

from .._body import StreamingBody
from .._core.metadata import MetaKind, parse_metadata
from .._core.spaces import (
    StoredKind,
    check_bucket,
    check_logical_key,
    classify,
    delta_key,
    name_of,
    parse_s3_url,
    reference_key,
    space_of,
)
from .._engine.cache import CacheCorruptError
from .._exceptions import DeltaGliderError, IntegrityError, InvalidArgumentError, NoSuchKey
from .._formats import format_of, reference_reader
from .._localfs import Destination, write_all
from .._models import DownloadSummary, VerifyResult
from .._storage.port import ObjectHead, OpenedObject, Progress
from .._tasks import task_group
from .context import Resolved, Stage, close_reference, served


class GetPipeline(Stage):
    async def resolve(self, bucket: str, key: str) -> Resolved:
        obj, _ = await self._resolve(bucket, key, opening=False)
        return obj

    async def resolve_open(self, bucket: str, key: str) -> tuple[Resolved, OpenedObject | None]:
        """``resolve``, with the delta copy fetched by a GET instead of a HEAD: reading a delta
        then takes one round trip less.  The opened delta (None unless it is what is served) is
        the caller's, to read through :meth:`open_stream` or to close."""
        return await self._resolve(bucket, key, opening=True)

    async def _resolve(
        self, bucket: str, key: str, *, opening: bool
    ) -> tuple[Resolved, OpenedObject | None]:
        check_bucket(bucket)
        kind, logical = classify(key)
        if kind is StoredKind.DELTA:
            key = logical  # a stored name was given: serve the logical object
        check_logical_key(key)
        heads: dict[str, ObjectHead | None] = {}
        opened: OpenedObject | None = None

        async def head(stored: str) -> None:
            heads[stored] = await self._storage.head(bucket, stored)

        async def open_delta(stored: str) -> None:
            nonlocal opened
            opened = await self._storage.open_object(bucket, stored)
            heads[stored] = opened.head if opened is not None else None

        try:
            async with task_group() as tg:
                tg.start_soon(open_delta if opening else head, delta_key(key))
                tg.start_soon(head, key)
            delta_head, direct = heads[delta_key(key)], heads[key]
            if delta_head is not None:
                meta = parse_metadata(delta_head.metadata, delta_key(key))
                delta = Resolved(bucket, key, delta_key(key), delta_head, meta)
                if meta.kind is MetaKind.DELTA and (
                    direct is None or served(delta, direct) == "delta"
                ):
                    served_delta, opened = opened, None
                    return delta, served_delta
            if direct is None:
                await self._require_bucket(bucket)  # a typo in the bucket is NoSuchBucket
                raise NoSuchKey(f"s3://{bucket}/{key}: no such object")
            return Resolved(bucket, key, key, direct, parse_metadata(direct.metadata, key)), None
        finally:
            if opened is not None:  # fetched, but not what is served
                opened.close()

    def open_stream(
        self, obj: Resolved, opened: OpenedObject | None = None
    ) -> AsyncIterator[bytes]:
        """The logical bytes of ``obj`` (decoded if it is a delta; from ``opened``, the delta's
        GET that :meth:`resolve_open` made, when given)."""
        if obj.meta.kind is not MetaKind.DELTA:
            return self._storage.iter_object(obj.bucket, obj.stored_key, etag=obj.head.etag or None)
        return self._decode_stream(obj, opened)

    def open_range(self, obj: Resolved, start: int, end: int) -> AsyncIterator[bytes]:
        """Logical bytes ``[start, end)`` of ``obj``: a ranged GET of a direct object; a delta
        is decoded whole (its SHA-256 checked) and the span cut out of that."""
        if obj.meta.kind is not MetaKind.DELTA:
            return self._storage.iter_object(
                obj.bucket, obj.stored_key, start=start, end=end, etag=obj.head.etag or None
            )
        return _slice(self.verified(obj, f"s3://{obj.bucket}/{obj.key}"), start, end)

    async def _decode_stream(
        self, obj: Resolved, opened: OpenedObject | None = None
    ) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._decoded(obj, opened):
                yield chunk
        finally:
            if opened is not None:  # read to its end or not, the GET is done with
                opened.close()

    async def _decoded(self, obj: Resolved, opened: OpenedObject | None) -> AsyncIterator[bytes]:
        meta = obj.meta
        ref_key = meta.ref_key or reference_key(space_of(obj.key))
        what = f"s3://{obj.bucket}/{obj.key}"
        delta_format = format_of(meta, what)
        emitted = 0
        for attempt in range(2):
            ref_sha = meta.ref_sha256 or await self._fetch_reference_sha(obj.bucket, ref_key)
            reference = await self._cache.get(
                ref_sha,
                reference_reader(
                    lambda: self._storage.iter_object(obj.bucket, ref_key),
                    ref_sha,
                    f"s3://{obj.bucket}/{ref_key}",
                ),
            )
            delta = (
                opened.body
                if opened is not None and attempt == 0
                else self._storage.iter_object(
                    obj.bucket, obj.stored_key, etag=obj.head.etag or None
                )
            )
            position = 0
            try:
                decoded = delta_format.decode(self._codec, reference, delta, meta.file_size, what)
                async for chunk in decoded:
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
                close_reference(reference)

    async def _fetch_reference_sha(self, bucket: str, ref_key: str) -> str:
        head = await self._storage.head(bucket, ref_key)
        sha = parse_metadata(head.metadata, ref_key).file_sha256 if head else None
        if sha is None:
            raise IntegrityError(f"s3://{bucket}/{ref_key}: reference missing or without SHA-256")
        return sha

    async def verified(self, obj: Resolved, what: str) -> AsyncIterator[bytes]:
        body = StreamingBody(
            self.open_stream(obj),
            what=what,
            expected_sha256=obj.meta.file_sha256,
            expected_size=obj.meta.file_size,
            content_length=None,
        )
        async for chunk in body.pieces():
            yield chunk

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
        obj, opened = await self.resolve_open(source.bucket, source.key)
        try:
            destination = Path(path)
            if destination.is_dir():
                destination = destination / name_of(obj.key)
            # Opening a FIFO waits for its reader: not on the event loop's thread.
            target = await anyio.to_thread.run_sync(Destination, destination)
        except BaseException:
            if opened is not None:
                opened.close()
            raise
        try:
            verified = await self.write_object(
                obj, target.fd, progress, seekable=not target.special, opened=opened
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

    async def write_object(
        self,
        obj: Resolved,
        fd: int,
        progress: Progress | None,
        *,
        seekable: bool = True,
        opened: OpenedObject | None = None,
    ) -> bool:
        """Write the logical bytes of ``obj`` to ``fd``, checked (``opened``: the delta's GET
        from :meth:`resolve_open`, read or closed here)."""
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
            self.open_stream(obj, opened),
            what=what,
            expected_sha256=obj.meta.file_sha256,
            expected_size=obj.logical_size if obj.logical_size >= 0 else None,
            content_length=None,
        )
        async for chunk in body.pieces(4 << 20):
            await anyio.to_thread.run_sync(write_all, fd, chunk)
            if progress:
                progress(len(chunk))
        return body.verified

    async def verify(self, url: str) -> VerifyResult:
        """Reconstruct the object in memory-bounded streaming and compare its SHA-256."""
        source = parse_s3_url(url)
        obj = await self.resolve(source.bucket, source.key)
        body = StreamingBody(
            self.open_stream(obj),
            what=url,
            expected_sha256=None,
            expected_size=None,
            content_length=None,
        )
        digest = hashlib.sha256()
        size = 0
        message = ""
        try:
            async for chunk in body.pieces():
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

    async def verify_many(
        self, urls: Sequence[str], on_result: Callable[[VerifyResult], None] | None = None
    ) -> list[VerifyResult]:
        """:meth:`verify` of each URL, ``max_files`` at a time; an object that cannot be read
        is a failed verification carrying the reason, not an exception."""
        results: list[VerifyResult | None] = [None] * len(urls)
        limiter = anyio.CapacityLimiter(self.transfer.max_files)

        async def one(index: int) -> None:
            url = urls[index]
            async with limiter:
                try:
                    result = await self.verify(url)
                except DeltaGliderError as exc:
                    target = parse_s3_url(url)
                    result = VerifyResult(
                        target.bucket, target.key, False, None, None, 0, "plain", str(exc)
                    )
            results[index] = result
            if on_result is not None:
                on_result(result)

        async with task_group() as tg:
            for index in range(len(urls)):
                tg.start_soon(one, index)
        return [r for r in results if r is not None]


async def _slice(chunks: AsyncIterator[bytes], start: int, end: int) -> AsyncIterator[bytes]:
    position = 0
    async for chunk in chunks:
        lo, hi = max(start - position, 0), min(end - position, len(chunk))
        if lo < hi:
            yield chunk[lo:hi]
        position += len(chunk)

"""AsyncDeltaGliderClient: boto3-shaped coroutines on logical keys, plus upload/download/verify."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio

from . import __about__
from ._body import StreamingBody
from ._boto import (
    ARCHIVE_CLASSES,
    ListObjectsPaginator,
    accept,
    check_conditions,
    check_digests,
    check_write_conditions,
    copy_directives,
    operation,
    parse_range,
    response_metadata,
    stored_attributes,
)
from ._core.filters import PathFilter
from ._core.metadata import MetaKind, parse_metadata
from ._core.policy import delta_ratio, parse_max_ratio
from ._core.spaces import (
    DEFAULT_DELTA_EXTENSIONS,
    StoredKind,
    check_bucket,
    check_writable_key,
    classify,
    delta_key,
    parse_s3_url,
    reference_key,
    reference_number,
    space_of,
)
from ._core.stats import BucketStats, FormatEstimate, Mode, SpaceEstimate
from ._engine.cache import DEFAULT_MAX_BYTES, ReferenceCache, parse_key
from ._engine.codec import CodecRunner, unlink_quietly
from ._engine.memory import DEFAULT_LIMIT, ask_limit, drop_limit, parse_limit
from ._engine.stats import StatsEngine
from ._exceptions import (
    BucketNotFoundError,
    ClientExceptions,
    InvalidArgumentError,
    NoSuchKey,
    NotFoundError,
)
from ._formats import DEFAULT_FORMAT, format_named
from ._localfs import private_temp_dir
from ._migration import MigrationStep, plan_migration, still_to_do
from ._models import (
    CompressionEstimate,
    DeltaGliderInfo,
    DownloadSummary,
    UploadSummary,
    VerifyResult,
)
from ._pipeline.bulk import (
    ProgressCallback,
    TransferResult,
    copy_many,
    download_many,
    upload_many,
)
from ._pipeline.context import Context, Resolved
from ._pipeline.delete import DeletePipeline
from ._pipeline.estimate import DEFAULT_SAMPLE, FormatEstimator
from ._pipeline.get import GetPipeline
from ._pipeline.listing import ListPipeline
from ._pipeline.put import PutPipeline, local_to_key
from ._storage.port import Progress, Storage
from ._storage.s3 import S3Storage
from ._transfer import TransferConfig

log = logging.getLogger("deltaglider_async")
Body = bytes | bytearray | memoryview | os.PathLike[str] | AsyncIterator[bytes] | Any


class AsyncDeltaGliderClient:
    """Async S3 client that stores eligible objects as xdelta3 deltas against one reference.

    Use it as ``async with create_client(...) as dg``.  Methods named like boto3's take the same
    keyword arguments and return dicts of the same shape, on *logical* keys (``reference.bin`` is
    hidden, ``.delta`` stripped), with a ``DeltaGliderInfo`` entry saying how each is stored.
    """

    def __init__(
        self,
        storage: Storage,
        cache: ReferenceCache,
        *,
        max_ratio: float,
        transfer: TransferConfig,
        delta_extensions: Iterable[str] = DEFAULT_DELTA_EXTENSIONS,
        delta_format: str = DEFAULT_FORMAT,
    ) -> None:
        self._storage = storage
        self._memory_limit = transfer.memory_limit or DEFAULT_LIMIT
        self._stats = StatsEngine(storage, concurrency=transfer.max_heads)
        self._ctx = Context(
            storage=storage,
            cache=cache,
            codec=CodecRunner(transfer.codec_threads, derived=cache),
            transfer=transfer,
            stats=self._stats,
            extensions=frozenset(e.lower() for e in delta_extensions),
            max_ratio=max_ratio,
            tool=f"deltaglider-async/{__about__.__version__}",
            delta_format=format_named(delta_format),
        )
        self._get = GetPipeline(self._ctx)
        self._put = PutPipeline(self._ctx, self._get)
        self._delete = DeletePipeline(self._ctx, self._get, self._put)
        self._list = ListPipeline(self._ctx)
        self._estimator = FormatEstimator(self._ctx, self._get, self._put)
        self._opened = False

    # ---------------------------------------------------------------- lifecycle
    async def __aenter__(self) -> AsyncDeltaGliderClient:
        await self._storage.open()
        self._stats.heads.persist(self._ctx.cache, self._storage.endpoint)
        self._ctx.tmp = private_temp_dir()
        ask_limit(self._memory_limit)
        self._opened = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._opened:
            self._opened = False
            with anyio.CancelScope(shield=True):
                await self._stats.heads.save()
                await self._storage.close()
            drop_limit(self._memory_limit)
            if self._ctx.tmp is not None:
                shutil.rmtree(self._ctx.tmp, ignore_errors=True)

    #: ``client.exceptions.NoSuchKey`` and the other classes a boto3 S3 client has there
    exceptions = ClientExceptions()

    @property
    def max_ratio(self) -> float:
        return self._ctx.max_ratio

    @property
    def transfer(self) -> TransferConfig:
        return self._ctx.transfer

    @property
    def cache(self) -> ReferenceCache:
        return self._ctx.cache

    # ---------------------------------------------------------------- write path
    @operation("PutObject")
    async def put_object(
        self,
        *,
        Bucket: str,
        Key: str,
        Body: Body,
        Metadata: Mapping[str, str] | None = None,
        MaxRatio: float | None = None,
        NoDelta: bool = False,
        **params: Any,
    ) -> dict[str, Any]:
        """Store ``Body`` (bytes, str, a path, a binary file or an async iterator of bytes).

        Every boto3 PutObject parameter is accepted: content headers, ``StorageClass``, SSE,
        ``Tagging``, ACLs and object lock apply to the stored object (SSE also to a reference
        it creates); ``IfNoneMatch="*"``/``IfMatch`` and the checksums are checked on the
        logical object; the few that cannot apply to a delta are errors naming them."""
        check_bucket(Bucket)
        check_writable_key(Key)
        extra = accept("PutObject", params)
        attributes = stored_attributes(extra)
        if "IfMatch" in extra or "IfNoneMatch" in extra:
            check_write_conditions(extra, await self._current_etag(Bucket, Key))
        async with self._local_body(Body) as path:
            await anyio.to_thread.run_sync(check_digests, extra, path, path.stat().st_size)
            _refuse_rest(extra)
            summary = await self._put.store(
                Bucket,
                Key,
                path,
                user_metadata=Metadata,
                attributes=attributes,
                max_ratio=MaxRatio,
                no_delta=NoDelta or attributes.get("StorageClass") in ARCHIVE_CLASSES,
            )
        return {
            "ETag": summary.etag,
            "ChecksumSHA256Hex": summary.sha256,
            "DeltaGliderInfo": DeltaGliderInfo(
                stored_as=summary.stored_as,
                stored_key=delta_key(Key) if summary.stored_as == "delta" else Key,
                stored_size=summary.stored_size,
                original_size=summary.original_size,
                ratio=delta_ratio(summary.stored_size, summary.original_size),
                reference_key=summary.reference_key or None,
                reason=summary.reason,
                reference_created=summary.reference_created,
                reference_size=summary.reference_size if summary.reference_created else None,
                delta_format=summary.delta_format or None,
            ).as_dict(),
            "ResponseMetadata": response_metadata(),
        }

    async def _current_etag(self, bucket: str, key: str) -> str | None:
        try:
            return (await self._get.resolve(bucket, key)).etag
        except NoSuchKey:
            return None

    async def upload(
        self,
        path: str | os.PathLike[str],
        url: str,
        *,
        max_ratio: float | None = None,
        no_delta: bool = False,
        metadata: Mapping[str, str] | None = None,
        extra_args: Mapping[str, Any] | None = None,
        progress: Progress | None = None,
    ) -> UploadSummary:
        """Upload a local file to ``s3://bucket/key`` or into ``s3://bucket/prefix/``.
        ``extra_args`` are PutObject parameters for the stored object, as boto3's
        ``upload_file(ExtraArgs=...)`` takes them (``ContentType``, ``StorageClass``, SSE…)."""
        local, target, key = local_to_key(path, url)
        extra_metadata, attributes = _extra_args(extra_args)
        return await self._put.store(
            target.bucket,
            key,
            local,
            user_metadata={**extra_metadata, **(metadata or {})},
            attributes=attributes,
            max_ratio=max_ratio,
            no_delta=no_delta or attributes.get("StorageClass") in ARCHIVE_CLASSES,
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
        if isinstance(body, str):  # as boto3: a str is the content, UTF-8 encoded
            body = body.encode()
        spool = self._ctx.temp_path(".body")
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

    # ---------------------------------------------------------------- read path

    @operation("GetObject")
    async def get_object(
        self, *, Bucket: str, Key: str, Range: str | None = None, **params: Any
    ) -> dict[str, Any]:
        """Logical object; ``Body`` streams it and checks its SHA-256 when read to the end.
        ``If*`` conditions and ``Response*`` overrides work as in S3, on the logical object."""
        extra = accept("GetObject", params)
        obj = await self._get.resolve(Bucket, Key)
        response = _answer(obj, extra)
        size = obj.logical_size
        what = f"s3://{Bucket}/{obj.key}"
        span = _span(Range, size, what)
        if span is None:
            body = StreamingBody(
                self._get.open_stream(obj),
                what=what,
                expected_sha256=obj.meta.file_sha256,
                expected_size=size if size >= 0 else None,
                content_length=size,
            )
            response.update(Body=body, ContentLength=size)
            return response
        start, end = span
        body = StreamingBody(
            self._get.open_range(obj, start, end),
            what=what,
            expected_sha256=None,
            expected_size=end - start,
            content_length=end - start,
        )
        response.update(
            Body=body,
            ContentLength=end - start,
            ContentRange=f"bytes {start}-{end - 1}/{size}",
            ResponseMetadata=response_metadata(206),
        )
        return response

    @operation("HeadObject")
    async def head_object(
        self, *, Bucket: str, Key: str, Range: str | None = None, **params: Any
    ) -> dict[str, Any]:
        extra = accept("HeadObject", params)
        try:
            obj = await self._get.resolve(Bucket, Key)
        except NotFoundError as exc:
            # A HEAD answer has no body: boto3 can only report the status, as code "404".
            missing = BucketNotFoundError if isinstance(exc, BucketNotFoundError) else NotFoundError
            raise missing(exc.message, code="404") from None
        response = _answer(obj, extra)
        span = _span(Range, obj.logical_size, f"s3://{Bucket}/{obj.key}")
        if span is None:
            return {"ContentLength": obj.logical_size, **response}
        start, end = span
        response.update(
            ContentLength=end - start,
            ContentRange=f"bytes {start}-{end - 1}/{obj.logical_size}",
            ResponseMetadata=response_metadata(206),
        )
        return response

    async def download(
        self,
        url: str,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> DownloadSummary:
        """Download a logical object to ``path`` (or into it, if it is a directory); only a
        verified object creates or replaces a file (see ``_pipeline/get.py``)."""
        return await self._get.download(url, path, progress=progress)

    async def verify(self, url: str) -> VerifyResult:
        """Reconstruct the object in memory-bounded streaming and compare its SHA-256."""
        return await self._get.verify(url)

    async def verify_many(
        self, urls: Iterable[str], *, on_result: Callable[[VerifyResult], None] | None = None
    ) -> list[VerifyResult]:
        """:meth:`verify` of many objects concurrently (results in the order given,
        ``on_result`` called as each finishes); an object that cannot be read at all is a
        result with ``valid=False`` and the reason, not an exception."""
        return await self._get.verify_many(list(urls), on_result)

    async def estimate_compression(
        self, path: str | os.PathLike[str], url: str, *, delta_format: str | None = None
    ) -> CompressionEstimate:
        """Trial-encode a local file against the reference of the delta space ``url`` names,
        in ``delta_format`` (default: the client's)."""
        writer = format_named(delta_format) if delta_format is not None else None
        return await self._put.estimate(path, url, writer)

    async def estimate_format(
        self,
        bucket: str,
        delta_format: str = "archive",
        *,
        prefix: str | None = None,
        sample: int | None = None,
        on_space: Callable[[SpaceEstimate], None] | None = None,
    ) -> FormatEstimate:
        """What each delta space under ``prefix`` would store in ``delta_format``, so that a
        bucket's owner can decide before ``migrate --delta-format``: per space, the reference
        as that format writes it and ``sample`` objects spread over the versions are
        trial-encoded (read back, encoded, measured, nothing written; ``sample`` defaults to
        8); the others are projected by the sample's ratio.  ``on_space`` is called as each
        space is done."""
        check_bucket(bucket)
        sample = DEFAULT_SAMPLE if sample is None else sample
        if sample < 1:
            raise InvalidArgumentError(f"sample must be at least 1, not {sample}")
        return await self._estimator.estimate(
            bucket,
            format_named(delta_format),
            prefix=prefix or "",
            sample=sample,
            on_space=on_space,
        )

    # ---------------------------------------------------------------- listing
    @operation("ListObjectsV2")
    async def list_objects_v2(
        self,
        *,
        Bucket: str,
        Prefix: str = "",
        Delimiter: str | None = None,
        MaxKeys: int = 1000,
        ContinuationToken: str | None = None,
        StartAfter: str | None = None,
        EncodingType: str | None = None,
        FetchOwner: bool = False,
        FetchMetadata: bool = True,
        **params: Any,
    ) -> dict[str, Any]:
        """One page of logical objects, with their logical ``Size`` and ``ETag``: deltas are
        HEADed for them once per client, listings and stats alike (``FetchMetadata=False``:
        stored sizes, no HEAD).
        Pages hold ``MaxKeys`` entries like S3's although references are hidden: the page is
        topped up from further listing requests."""
        _refuse_rest(accept("ListObjectsV2", params))
        if EncodingType not in (None, "url"):
            raise InvalidArgumentError(f"EncodingType must be 'url', not {EncodingType!r}")
        page = await self._list.page(
            Bucket,
            prefix=Prefix,
            delimiter=Delimiter,
            max_keys=MaxKeys,
            token=ContinuationToken,
            start_after=StartAfter,
            logical_sizes=FetchMetadata,
        )
        contents, token = page.contents, page.next_token
        prefixes = [{"Prefix": p} for p in page.prefixes]
        response: dict[str, Any] = {"IsTruncated": token is not None}
        if contents:
            response["Contents"] = contents
        response.update(Name=Bucket, Prefix=Prefix, MaxKeys=MaxKeys)
        if Delimiter:
            response["Delimiter"] = Delimiter
        if prefixes:
            response["CommonPrefixes"] = prefixes
        # botocore always asks for url-encoded keys and decodes them unless the caller asked.
        response["EncodingType"] = "url"
        if EncodingType:
            for entry in contents:
                entry["Key"] = quote(entry["Key"], safe="/")
            for common in prefixes:
                common["Prefix"] = quote(common["Prefix"], safe="/")
        response["KeyCount"] = len(contents) + len(prefixes)
        if ContinuationToken:
            response["ContinuationToken"] = ContinuationToken
        if token:
            response["NextContinuationToken"] = token
        if StartAfter:
            response["StartAfter"] = StartAfter
        response["ResponseMetadata"] = response_metadata()
        return response

    def get_paginator(self, operation: str) -> ListObjectsPaginator:
        if operation != "list_objects_v2":
            raise InvalidArgumentError(f"no paginator for {operation!r}")
        return ListObjectsPaginator(self)

    # ---------------------------------------------------------------- deletion
    @operation("DeleteObject")
    async def delete_object(
        self, *, Bucket: str, Key: str, Force: bool = False, **params: Any
    ) -> dict[str, Any]:
        """Delete a logical object; the last delta of a space takes its reference with it.

        ``Key`` naming a ``reference.bin`` deletes that reference only when no delta uses it
        (or with ``Force=True``); a key ending in ``/`` (a folder marker) is deleted as it is.
        """
        _refuse_rest(accept("DeleteObject", params))
        obj = await self._delete.delete_one(Bucket, Key, force=Force)
        response: dict[str, Any] = {"ResponseMetadata": response_metadata(204)}
        if obj is not None:
            response["DeltaGliderInfo"] = obj.info().as_dict()
        return response

    @operation("DeleteObjects")
    async def delete_objects(
        self, *, Bucket: str, Delete: Mapping[str, Any], **params: Any
    ) -> dict[str, Any]:
        """Batch delete of logical keys; per-key failures are reported, not raised, and
        ``Delete={"Quiet": True}`` leaves the successes out, as S3 does."""
        _refuse_rest(accept("DeleteObjects", params))
        keys = [item["Key"] for item in Delete.get("Objects", [])]
        deleted, errors = await self._delete.delete_many(Bucket, keys)
        response: dict[str, Any] = {"ResponseMetadata": response_metadata()}
        if deleted and not Delete.get("Quiet"):
            response["Deleted"] = [{"Key": key} for key in deleted]
        if errors:
            response["Errors"] = [
                {"Key": key, "Code": exc.code, "Message": str(exc)} for key, exc in errors
            ]
        return response

    # ---------------------------------------------------------------- copy
    @operation("CopyObject")
    async def copy_object(
        self,
        *,
        Bucket: str,
        Key: str,
        CopySource: Mapping[str, str] | str,
        **params: Any,
    ) -> dict[str, Any]:
        """Copy a logical object; re-encoded against the destination space's reference.

        ``MetadataDirective="REPLACE"`` takes ``Metadata`` and the content headers from the
        call; storage class, SSE, tags and ACLs given apply either way, as in S3;
        ``CopySourceIf*`` are checked on the source, ``IfMatch``/``IfNoneMatch`` on the
        destination."""
        if isinstance(CopySource, str):
            src_bucket, _, src_key = CopySource.lstrip("/").partition("/")
        else:
            src_bucket, src_key = CopySource["Bucket"], CopySource["Key"]
        check_bucket(Bucket)
        check_writable_key(Key)
        extra = accept("CopyObject", params)
        metadata, attributes = copy_directives(extra)
        obj = await self._get.resolve(src_bucket, src_key)
        check_conditions(extra, obj.etag, obj.head.last_modified, prefix="CopySource")
        if "IfMatch" in extra or "IfNoneMatch" in extra:
            check_write_conditions(extra, await self._current_etag(Bucket, Key))
        _refuse_rest(extra)
        summary = await self._put.copy(obj, Bucket, Key, metadata=metadata, attributes=attributes)
        return {
            "CopyObjectResult": {"ETag": summary.etag, "LastModified": datetime.now(UTC)},
            "DeltaGliderInfo": {"StoredAs": summary.stored_as, "StoredSize": summary.stored_size},
            "ResponseMetadata": response_metadata(),
        }

    # ---------------------------------------------------------------- buckets and misc
    @operation("CreateBucket")
    async def create_bucket(self, *, Bucket: str, **kwargs: Any) -> dict[str, Any]:
        check_bucket(Bucket)
        region = kwargs.get("CreateBucketConfiguration", {}).get("LocationConstraint")
        return await self._storage.create_bucket(Bucket, region)

    @operation("DeleteBucket")
    async def delete_bucket(self, *, Bucket: str) -> dict[str, Any]:
        check_bucket(Bucket)
        await self._storage.delete_bucket(Bucket)
        self._ctx.known_buckets.discard(Bucket)
        return {"ResponseMetadata": response_metadata(204)}

    @operation("ListBuckets")
    async def list_buckets(self) -> dict[str, Any]:
        """Buckets; those with statistics computed by this client carry ``DeltaGliderStats``."""
        response = await self._storage.list_buckets()
        for entry in response.get("Buckets", []):
            cached = self._stats.cached(entry["Name"])
            if cached is not None:
                entry["DeltaGliderStats"] = cached.as_dict()
        return {**response, "ResponseMetadata": response_metadata()}

    async def generate_presigned_url(
        self, ClientMethod: str, Params: Mapping[str, Any], ExpiresIn: int = 3600
    ) -> str:
        """Presigned URL of a direct object (a delta cannot be served by S3 alone)."""
        if ClientMethod == "get_object":
            obj = await self._get.resolve(Params["Bucket"], Params["Key"])
            if obj.meta.kind is MetaKind.DELTA:
                raise InvalidArgumentError(
                    f"s3://{obj.bucket}/{obj.key} is stored as a delta; a presigned URL needs a "
                    "direct object (upload it with NoDelta=True)"
                )
        return await self._storage.presign(ClientMethod, dict(Params), ExpiresIn)

    def clear_cache(self) -> int:
        """Drop every cached reference this client can read, and all cached statistics."""
        self._stats.clear()
        return self._ctx.cache.clear()

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

        ``quick`` lists and HEADs one delta per space (the others estimated from it);
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
        extra_args: Mapping[str, Any] | None = None,
        guess_content_type: bool = False,
        progress: ProgressCallback | None = None,
    ) -> list[TransferResult]:
        """Upload many ``(path, s3 url)`` pairs concurrently; see :mod:`deltaglider_async`.
        ``extra_args`` (PutObject parameters, ``Metadata`` included) apply to every file;
        ``guess_content_type`` sets each one's ``ContentType`` from its name, as aws-cli does."""
        metadata, attributes = _extra_args(extra_args)
        return await upload_many(
            self._put,
            items,
            max_ratio=max_ratio,
            no_delta=no_delta or attributes.get("StorageClass") in ARCHIVE_CLASSES,
            metadata=metadata,
            attributes=attributes,
            guess_content_type=guess_content_type,
            progress=progress,
        )

    async def download_many(
        self,
        items: Iterable[tuple[str, str | os.PathLike[str]]],
        *,
        progress: ProgressCallback | None = None,
    ) -> list[TransferResult]:
        """Download many ``(s3 url, path)`` pairs concurrently."""
        return await download_many(self._get, items, progress=progress)

    async def copy_many(
        self,
        items: Iterable[tuple[str, str]],
        *,
        progress: ProgressCallback | None = None,
        extra_args: Mapping[str, Any] | None = None,
    ) -> list[TransferResult]:
        """Copy many ``(s3 url, s3 url)`` pairs (``migrate``, ``cp -r`` within S3); each is
        stored in delta form against its destination space's reference. ``extra_args`` are
        CopyObject's parameters for every copy, as boto3's ``ExtraArgs`` (``MetadataDirective``,
        ``Metadata``, content headers, ``StorageClass``, SSE, ``Tagging``, ACLs)."""
        extra = accept("CopyObject", extra_args or {})
        metadata, attributes = copy_directives(extra)
        _refuse_rest(extra)
        return await copy_many(
            self._put, self._get, items, progress=progress, metadata=metadata, attributes=attributes
        )

    async def plan_migration(
        self,
        source: str,
        destination: str,
        *,
        filters: Sequence[PathFilter] = (),
        delta_format: str | None = None,
    ) -> list[MigrationStep]:
        """What ``migrate`` still has to copy from prefix ``source`` to ``destination`` (both
        ``s3://`` URLs), decided from what the destination holds: a re-run does only what is
        left.  With ``delta_format``, objects not yet written by a put in that format count as
        left (in-place conversion).  Copy the steps with :meth:`migrate`."""
        return await plan_migration(
            self, source, destination, filters=filters, delta_format=delta_format
        )

    async def migrate(
        self,
        steps: Iterable[MigrationStep],
        *,
        recheck: bool = False,
        progress: ProgressCallback | None = None,
    ) -> list[TransferResult]:
        """Copy planned steps into delta form, in this client's delta format (create the client
        with the format the plan asked for).  ``recheck`` first drops the steps that their
        destination already holds (a plan made a while ago, work rescheduled after a crash)."""
        steps = list(steps)
        if recheck:
            steps = await still_to_do(self, steps)
        pairs = [(step.source, step.destination) for step in steps]
        return await copy_many(self._put, self._get, pairs, progress=progress, reencode=True)

    async def reform_references(self, url: str) -> list[str]:
        """Store every ``reference.bin`` under ``url`` in the form this client's delta format
        writes a new space's: what ``migrate`` in place does once the objects are converted
        (the archive format's compact reference; for ``vcdiff``, the file itself, so that
        deltaglider 6.2 reads the space again), and delete the snapshots no delta names any
        more (a space converted to ``vcdiff`` names only ``reference.bin``).  Returns the keys
        stored again; re-running finds nothing to do."""
        target = parse_s3_url(url)
        spaces = {
            space_of(entry["Key"]): None
            async for entry in self._storage.iter_all(target.bucket, target.key)
            if classify(entry["Key"])[0] is StoredKind.REFERENCE
        }
        reformed: list[str] = []
        for space in spaces:  # each one is a whole-file encode on every core
            if await self._put.reform_reference(target.bucket, space):
                reformed.append(reference_key(space))
            await self._delete.collect_unused_snapshots(target.bucket, space)
        return reformed

    async def iter_objects(
        self,
        bucket: str,
        prefix: str = "",
        *,
        fetch_metadata: bool = False,
        page_size: int | None = None,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every logical object under ``prefix`` (all pages, of ``page_size`` keys)."""
        async for page in self.get_paginator("list_objects_v2").paginate(
            Bucket=bucket,
            Prefix=prefix,
            FetchMetadata=fetch_metadata,
            MaxKeys=page_size or 1000,
        ):
            for entry in page.get("Contents", []):
                yield entry

    async def evict_cache(self, url: str) -> bool:
        """Drop the cached references (``reference.bin`` and any snapshots) of the delta space
        that ``url`` is in."""
        target = parse_s3_url(url)
        space = space_of(target.key)
        evicted = False
        async for entry in self._storage.iter_all(target.bucket, space + "reference"):
            ref_key = entry["Key"]
            if space_of(ref_key) != space or reference_number(ref_key) is None:
                continue
            head = await self._storage.head(target.bucket, ref_key)
            sha = parse_metadata(head.metadata, ref_key).file_sha256 if head else None
            evicted = bool(sha and self._ctx.cache.evict(sha)) or evicted
        return evicted

    async def list_multipart_uploads(self, *, Bucket: str) -> dict[str, Any]:
        return {"Uploads": await self._storage.list_multipart_uploads(Bucket)}


#: GetObject/HeadObject parameters that override a header of the answer
_RESPONSE_OVERRIDES = {
    "ResponseCacheControl": "CacheControl",
    "ResponseContentDisposition": "ContentDisposition",
    "ResponseContentEncoding": "ContentEncoding",
    "ResponseContentLanguage": "ContentLanguage",
    "ResponseContentType": "ContentType",
    "ResponseExpires": "Expires",
}


def _answer(obj: Resolved, extra: dict[str, Any]) -> dict[str, Any]:
    """A get/head answer about ``obj``, once its ``If*`` conditions hold, with the
    ``Response*`` overrides applied."""
    check_conditions(extra, obj.etag, obj.head.last_modified)
    response = obj.response_head()
    for name, header in _RESPONSE_OVERRIDES.items():
        if name in extra:
            response[header] = extra.pop(name)
    _refuse_rest(extra)
    return response


def _extra_args(extra_args: Mapping[str, Any] | None) -> tuple[dict[str, str], dict[str, Any]]:
    """boto3's ``ExtraArgs``: the ``Metadata``, and the attributes of the stored object."""
    extra = accept("PutObject", extra_args or {})
    metadata = dict(extra.pop("Metadata", None) or {})
    attributes = stored_attributes(extra)
    _refuse_rest(extra)
    return metadata, attributes


def _refuse_rest(extra: Mapping[str, Any]) -> None:
    """boto3 parameters left once a method applied those it can: none may be dropped silently."""
    if extra:
        raise InvalidArgumentError(
            f"not supported for a logical object: {', '.join(sorted(extra))}"
        )


def _span(header: str | None, size: int, what: str) -> tuple[int, int] | None:
    if header is None:
        return None
    if size < 0:
        raise InvalidArgumentError(f"{what}: its size is unknown; ranges are not available")
    return parse_range(header, size)


def _megabytes(environ: Mapping[str, str], name: str, default: int) -> int:
    text = environ.get(name, "").strip()
    try:
        value = int(text) if text else default
    except ValueError:
        value = -1
    if value < 0:
        raise InvalidArgumentError(f"{name} must be a whole number of megabytes: {text!r}")
    return value << 20


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
    delta_format: str | None = None,
    memory_limit: int | None = None,
    env: Mapping[str, str] | None = None,
) -> AsyncDeltaGliderClient:
    """Build a client; use it as ``async with create_client(...) as dg``.

    Unset arguments come from the environment as the older tool reads it: ``AWS_*`` (through
    botocore, ``AWS_ENDPOINT_URL`` included), ``DG_MAX_RATIO``, ``DG_CACHE_BACKEND``
    (``filesystem``/``memory``), ``DG_CACHE_MEMORY_SIZE_MB``, ``DG_CACHE_ENCRYPTION_KEY``,
    ``DG_CACHE_DIR``, ``DG_CACHE_MAX_SIZE_MB``, ``DG_LOG_LEVEL``, ``DG_FAST_PATH`` (``0``: every
    request through botocore), ``DG_DELTA_FORMAT`` (the format new deltas are written in; reads
    follow each object's own) and ``DG_MEMORY_LIMIT`` (the process's memory budget, e.g. ``1G``;
    ``memory_limit`` in bytes, or ``transfer.memory_limit``).
    """
    environ = os.environ if env is None else env
    transfer = transfer or TransferConfig()
    limit = memory_limit or transfer.memory_limit
    if limit is None and (text := environ.get("DG_MEMORY_LIMIT", "").strip()):
        limit = parse_limit(text)
    transfer = dataclasses.replace(transfer, memory_limit=limit or DEFAULT_LIMIT)
    if environ.get("DG_FAST_PATH", "1").strip().lower() in ("0", "false", "no", "off"):
        transfer = dataclasses.replace(transfer, fast_path=False)
    if cache is None:
        key_text = environ.get("DG_CACHE_ENCRYPTION_KEY")
        cache = ReferenceCache(
            backend=cache_backend or environ.get("DG_CACHE_BACKEND", "filesystem"),
            key=parse_key(key_text) if key_text else None,
            directory=Path(environ["DG_CACHE_DIR"]) if environ.get("DG_CACHE_DIR") else None,
            memory_bytes=_megabytes(environ, "DG_CACHE_MEMORY_SIZE_MB", 100),
            max_bytes=_megabytes(environ, "DG_CACHE_MAX_SIZE_MB", DEFAULT_MAX_BYTES >> 20),
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
        delta_format=delta_format or environ.get("DG_DELTA_FORMAT") or DEFAULT_FORMAT,
    )

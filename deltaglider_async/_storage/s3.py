"""The S3 adapter: the only module that talks to aioboto3/botocore, and where S3 errors are mapped.

Requests stay plain (no CRC32 trailers, ``when_required`` checksums): our SHA-256 is the integrity
check.  Big uploads are multipart with parts in parallel; a failed multipart upload is aborted in a
shielded scope so that no partial object ever becomes visible.  GET bodies that break mid-stream are
resumed with a Range request pinned to the ETag.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aioboto3
import aiohttp
import anyio
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from .._engine.memory import process_budget
from .._exceptions import (
    MODELED,
    BucketNotFoundError,
    ConflictError,
    CredentialsError,
    DeltaGliderError,
    EndpointError,
    NoSuchBucket,
    NoSuchKey,
    NotFoundError,
    StorageError,
)
from .._localfs import FileChangedError, FileDigest, pwrite_all
from .._tasks import task_group
from .._transfer import TransferConfig
from .journal import INTENT_WINDOW_SECONDS, OpenUpload, UploadJournal
from .lean import LeanS3
from .port import ListPage, ObjectHead, OpenedObject, Progress
from .retry import (
    Attempts,
    Fallback,
    UploadStalled,
    WatchedBody,
    backoff,
    limit_stall_retries,
    watch_upload,
    with_retries,
)

_CREDENTIAL_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "403",
}
_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
#: HeadObject answers a get/head of the logical object passes on from its stored form
_HEAD_ATTRIBUTES = frozenset(
    {
        "BucketKeyEnabled",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "Expires",
        "ExpiresString",
        "ObjectLockLegalHoldStatus",
        "ObjectLockMode",
        "ObjectLockRetainUntilDate",
        "SSEKMSKeyId",
        "ServerSideEncryption",
        "StorageClass",
        "WebsiteRedirectLocation",
    }
)

log = logging.getLogger("deltaglider_async")


def map_error(exc: BaseException, what: str) -> DeltaGliderError:
    """Translate a botocore/aiohttp failure into the SDK's tree (``what`` names the target)."""
    if isinstance(exc, DeltaGliderError):
        return exc
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = err.get("Message") or code
        if code == "NoSuchBucket":
            return NoSuchBucket(f"{what}: bucket does not exist")
        if code in _NOT_FOUND_CODES:
            return NoSuchKey(f"{what}: not found")
        if code in _CREDENTIAL_CODES:
            return CredentialsError(f"{what}: {message} ({code})", code=code, status=status)
        if code in ("PreconditionFailed", "412"):
            return ConflictError(f"{what}: precondition failed", code=code, status=status)
        modeled = MODELED.get(code, StorageError)
        return modeled(f"{what}: {message} ({code})", code=code, status=status)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(f"{what}: no AWS credentials found ({exc})")
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError) or _lean_unreachable(exc):
        return EndpointError(f"{what}: cannot reach the S3 endpoint ({exc})")
    if isinstance(exc, TimeoutError | ReadTimeoutError):  # botocore's, aiohttp's, an upload's
        return StorageError(
            f"{what}: the S3 endpoint stopped answering ({exc or type(exc).__name__})",
            code="RequestTimeout",
        )
    if isinstance(exc, BotoCoreError | OSError):
        return StorageError(f"{what}: {exc}", code=type(exc).__name__)
    return StorageError(f"{what}: {exc!r}", code=type(exc).__name__)


def _addressing(client: Any) -> str:
    return str((client.meta.config.s3 or {}).get("addressing_style") or "auto")


def _wants_path_style(client: Any) -> bool:
    """Not AWS, and no addressing style chosen (by us or the profile's ``s3`` settings)."""
    host = urlsplit(str(client.meta.endpoint_url)).hostname or ""
    on_aws = host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
    return not on_aws and _addressing(client) == "auto"


def _plain_http(endpoint_url: str | None) -> bool:
    """An ``http://`` endpoint reached without a proxy: nothing to verify, so no TLS context
    to build (loading the CA bundle costs 40 ms of each process's first request)."""
    proxies = ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    proxied = any(os.environ.get(name) for name in proxies)
    return bool(endpoint_url) and str(endpoint_url).lower().startswith("http://") and not proxied


def not_s3(what: str, missing: str) -> StorageError:
    """An answer without what every S3 answer carries: a web page, a proxy, a wrong port."""
    return StorageError(
        f"{what}: the endpoint did not answer like S3 ({missing}); check the endpoint URL",
        code="NotS3",
    )


def _lean_unreachable(exc: BaseException) -> bool:
    """The lean path's aiohttp could not connect (botocore says EndpointConnectionError)."""
    return isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)


def _hash_range(digest: Any, fd: int, offset: int, length: int) -> None:
    end = offset + length
    while offset < end:
        chunk = os.pread(fd, min(4 << 20, end - offset), offset)
        if not chunk:
            raise OSError("file shrank while hashing")
        digest.update(chunk)
        offset += len(chunk)


class _LocalWriteError(Exception):
    """Writing the destination failed: not a network error, never retried."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def _retryable_stream_error(exc: BaseException) -> bool:
    return isinstance(
        exc, aiohttp.ClientPayloadError | aiohttp.ClientConnectionError | ReadTimeoutError | OSError
    )


class S3Storage:
    """The :class:`~.port.Storage` port on aiobotocore, with the fast path for hot requests."""

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        region_name: str | None,
        aws_access_key_id: str | None,
        aws_secret_access_key: str | None,
        aws_session_token: str | None,
        profile_name: str | None,
        transfer: TransferConfig,
    ) -> None:
        self._session = aioboto3.Session(
            aws_access_key_id=aws_access_key_id,
            aws_secret_access_key=aws_secret_access_key,
            aws_session_token=aws_session_token,
            region_name=region_name,
            profile_name=profile_name,
        )
        self._endpoint_url = endpoint_url
        self.transfer = transfer
        s3_options: dict[str, Any] = {"addressing_style": "path"} if endpoint_url else {}
        self._config = AioConfig(
            signature_version="s3v4",
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            retries={"mode": "standard", "total_max_attempts": transfer.max_attempts},
            connect_timeout=transfer.connect_timeout,
            read_timeout=transfer.read_timeout,
            max_pool_connections=max(
                transfer.max_heads, transfer.max_concurrency * transfer.max_files
            ),
            s3=s3_options,
        )
        self._memory = process_budget()
        self._client: Any = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._lean_client: LeanS3 | None = None
        self._lean_ready = False
        self._lean_lock = anyio.Lock()
        self._lean_parts = True
        self._journal = UploadJournal()

    async def open(self) -> None:
        stack = contextlib.AsyncExitStack()
        try:
            plain = _plain_http(self._endpoint_url)
            self._client = await stack.enter_async_context(
                self._session.client(
                    "s3",
                    endpoint_url=self._endpoint_url,
                    config=self._config,
                    **({"verify": False} if plain else {}),
                )
            )
            path_style = _wants_path_style(self._client)
            resolved = not plain and _plain_http(str(self._client.meta.endpoint_url))
            if path_style or resolved:
                # An endpoint botocore resolved itself (AWS_ENDPOINT_URL*, a profile's
                # endpoint_url) is as custom as one we were given: no bucket.host names, and
                # no TLS context for plain HTTP.
                await stack.aclose()
                stack = contextlib.AsyncExitStack()
                config = self._config
                if path_style:
                    config = config.merge(AioConfig(s3={"addressing_style": "path"}))
                self._client = await stack.enter_async_context(
                    self._session.client(
                        "s3",
                        endpoint_url=self._endpoint_url,
                        config=config,
                        **({"verify": False} if plain or resolved else {}),
                    )
                )
            self._client.meta.events.register_first("needs-retry.s3", limit_stall_retries)
        except Exception as exc:
            await stack.aclose()
            raise map_error(exc, "S3 client") from exc
        self._stack = stack
        await self._abort_abandoned_uploads()

    async def _abort_abandoned_uploads(self) -> None:
        """Abort the multipart uploads that dead processes of this user left open here; within
        ``abort_timeout`` altogether, one attempt each (unlike :meth:`abort_multipart`, which
        insists: an upload these credentials may not abort must not hold every client's start);
        what is left is tried again by the next client."""
        stale = await anyio.to_thread.run_sync(self._journal.stale, self.endpoint)
        with anyio.move_on_after(self.transfer.abort_timeout):
            for upload in stale:
                try:
                    for upload_id in await self._abandoned_ids(upload):
                        await self._abort_abandoned(upload, upload_id)
                except DeltaGliderError as exc:
                    log.debug(
                        "abandoned upload of s3://%s/%s not aborted yet: %s",
                        upload.bucket,
                        upload.key,
                        exc,
                    )
                    continue
                self._journal.closed(upload.path)

    async def _abandoned_ids(self, upload: OpenUpload) -> list[str]:
        """The ids of an abandoned entry's upload: its own, or, for a process killed before the
        server answered, the uploads of that very key created around the entry's time that no
        other entry names."""
        if upload.upload_id is not None:
            return [upload.upload_id]
        listed = await self._call(
            f"s3://{upload.bucket}/{upload.key}",
            "list_multipart_uploads",
            Bucket=upload.bucket,
            Prefix=upload.key,
        )
        named = await anyio.to_thread.run_sync(self._journal.journaled_ids, self.endpoint)
        found = []
        for open_upload in listed.get("Uploads", []):
            initiated = open_upload.get("Initiated")
            if (
                open_upload.get("Key") == upload.key
                and open_upload.get("UploadId") not in named
                and isinstance(initiated, datetime)
                and abs(initiated.timestamp() - upload.opened) <= INTENT_WINDOW_SECONDS
            ):
                found.append(str(open_upload["UploadId"]))
        return found

    async def _abort_abandoned(self, upload: OpenUpload, upload_id: str) -> None:
        try:
            await self._call(
                f"s3://{upload.bucket}/{upload.key}",
                "abort_multipart_upload",
                Bucket=upload.bucket,
                Key=upload.key,
                UploadId=upload_id,
            )
        except NotFoundError:
            return  # completed after all, or aborted by someone else
        log.info(
            "aborted multipart upload %s of s3://%s/%s, left open by a process that is gone",
            upload_id,
            upload.bucket,
            upload.key,
        )

    async def close(self) -> None:
        if self._lean_client is not None:
            await self._lean_client.close()
            self._lean_client = None
        self._lean_ready = False
        if self._stack is not None:
            stack, self._stack = self._stack, None
            await stack.aclose()
            self._client = None

    @property
    def client(self) -> Any:
        if self._client is None:
            raise StorageError("the client is not open: use `async with create_client(...)`")
        return self._client

    async def _call(self, what: str, operation: str, **params: Any) -> Any:
        """One botocore operation (its own retries included), bounded by ``request_timeout``;
        an upload body the server stops taking fails after ``read_timeout`` and is retried once."""
        body = params.get("Body")
        attempts = Attempts(self.transfer.max_attempts)
        while True:
            try:
                with anyio.fail_after(self.transfer.request_timeout):
                    if not isinstance(body, WatchedBody):
                        return await getattr(self.client, operation)(**params)
                    body.seek(0)
                    return await watch_upload(
                        lambda: getattr(self.client, operation)(**params),
                        body,
                        self.transfer.read_timeout,
                    )
            except TimeoutError as exc:
                if isinstance(exc, UploadStalled) and attempts.retry(exc):
                    await anyio.sleep(backoff(attempts.failures))
                    continue
                raise self._timed_out(what, exc) from exc
            except Exception as exc:
                raise map_error(exc, what) from exc

    def _timed_out(self, what: str, exc: TimeoutError) -> StorageError:
        return StorageError(
            f"{what}: {str(exc) or 'no answer in time'} (endpoint {self.endpoint}; "
            f"read_timeout {self.transfer.read_timeout:g}s)",
            code="RequestTimeout",
        )

    def _kept_breaking(self, what: str, exc: BaseException) -> StorageError:
        """A resumed download that ran out of attempts (or of its one retry of a stall)."""
        return StorageError(
            f"{what}: the download kept breaking or stalling ({exc!r}; endpoint {self.endpoint})",
            code="RequestTimeout" if isinstance(exc, TimeoutError) else None,
        )

    @property
    def endpoint(self) -> str:
        return str(self.client.meta.endpoint_url) if self._client is not None else "not open"

    # ---------------------------------------------------------------- objects
    async def head(self, bucket: str, key: str) -> ObjectHead | None:
        try:
            resp = await self._call(f"s3://{bucket}/{key}", "head_object", Bucket=bucket, Key=key)
        except BucketNotFoundError:
            raise
        except NotFoundError:
            return None
        return _head_of(resp, bucket, key)

    async def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        what = f"s3://{bucket}/{key}"
        try:
            resp = await self._call(what, "get_object", Bucket=bucket, Key=key)
        except BucketNotFoundError:
            raise
        except NotFoundError:
            return None
        body = resp["Body"]
        try:
            head = _head_of(resp, bucket, key)
        except BaseException:
            body.close()
            raise
        return OpenedObject(
            head, self.iter_object(bucket, key, etag=head.etag, answered=resp), body.close
        )

    async def head_fast(self, bucket: str, key: str) -> ObjectHead | None:
        """HEAD for bulk metadata reads: the lean SigV4 path, botocore when it cannot apply."""
        lean = await self._lean()
        if lean is None:
            return await self.head(bucket, key)
        try:
            found = await with_retries(lambda: lean.head(bucket, key), self.transfer.max_attempts)
        except Fallback:
            return await self.head(bucket, key)
        except Exception as exc:
            raise map_error(exc, f"s3://{bucket}/{key}") from exc
        if found is None:
            return None
        return ObjectHead(
            key=key,
            size=found.size,
            etag=found.etag,
            metadata=found.metadata,
            last_modified=found.last_modified,
            content_type=found.content_type,
        )

    async def _lean(self) -> LeanS3 | None:
        async with self._lean_lock:
            if self._lean_ready:
                return self._lean_client
            self._lean_ready = True
            if not self.transfer.fast_path:
                return None
            credentials = await self._session.get_credentials()
            if credentials is None:
                return None  # anonymous: botocore handles it

            async def current() -> Any:
                # Per request: refreshable credentials (STS, SSO, IRSA…) renew themselves here.
                return await credentials.get_frozen_credentials()

            self._lean_client = LeanS3(
                endpoint_url=self.client.meta.endpoint_url,
                region=self.client.meta.region_name or "us-east-1",
                credentials=current,
                path_style=_addressing(self.client) == "path",
                concurrency=self.transfer.max_heads,
                timeout=self.transfer.read_timeout,
            )
            return self._lean_client

    async def get_bytes(self, bucket: str, key: str) -> bytes:
        chunks = [c async for c in self.iter_object(bucket, key)]
        return b"".join(chunks)

    async def iter_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        etag: str | None = None,
        chunk_size: int = 1 << 20,
        answered: dict[str, Any] | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream bytes ``[start, end)`` of an object, resuming by Range after broken reads
        (``answered``: the response of a whole-object GET already made, read first)."""
        what = f"s3://{bucket}/{key}"
        position = start
        attempts = Attempts(self.transfer.max_attempts)
        while True:
            params: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if position > 0 or end is not None:
                params["Range"] = f"bytes={position}-{'' if end is None else end - 1}"
            if etag:
                params["IfMatch"] = etag
            if end is not None and position >= end:
                return
            resp, answered = answered or await self._call(what, "get_object", **params), None
            if not resp.get("ETag"):
                raise not_s3(what, "no ETag")
            if "Range" in params and not resp.get("ContentRange") and position > 0:
                # A 200 to a ranged GET is the whole object from its first byte: taking it for
                # the bytes at ``position`` would hand out wrong data (and resume forever).
                raise StorageError(f"{what}: the server ignored a Range request", code="NotS3")
            etag = etag or resp.get("ETag")
            expected = int(resp.get("ContentLength", -1))
            if end is not None:
                expected = min(expected, end - position) if expected >= 0 else end - position
            received = 0
            body = resp["Body"]
            try:
                while received < expected or expected < 0:
                    want = chunk_size if expected < 0 else min(chunk_size, expected - received)
                    with anyio.fail_after(self.transfer.read_timeout + 5):
                        chunk = await body.read(want)
                    if not chunk:
                        break
                    position += len(chunk)
                    received += len(chunk)
                    attempts.progressed()
                    yield chunk
                if 0 <= received < expected:
                    raise OSError(f"short read: {received} of {expected} bytes")
                return
            except Exception as exc:
                if not (isinstance(exc, TimeoutError) or _retryable_stream_error(exc)):
                    raise map_error(exc, what) from exc
                if not attempts.retry(exc):
                    raise self._kept_breaking(what, exc) from exc
                await anyio.sleep(backoff(attempts.failures))
            finally:
                with contextlib.suppress(Exception):
                    body.close()

    async def put_bytes(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        metadata: Mapping[str, str],
        attributes: Mapping[str, Any] | None = None,
        if_none_match: bool = False,
    ) -> str:
        params: dict[str, Any] = {
            **(attributes or {}),
            "Bucket": bucket,
            "Key": key,
            "Body": WatchedBody(data),  # written in 64 KiB pieces (see _multipart_upload)
            "Metadata": dict(metadata),
        }
        if if_none_match:
            params["IfNoneMatch"] = "*"
        resp = await self._call(f"s3://{bucket}/{key}", "put_object", **params)
        if not resp.get("ETag"):
            raise not_s3(f"s3://{bucket}/{key}", "no ETag for a PUT")
        return str(resp["ETag"])

    async def put_file(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        metadata: Mapping[str, str],
        attributes: Mapping[str, Any] | None = None,
        if_none_match: bool = False,
        progress: Progress | None = None,
        verify: FileDigest | None = None,
    ) -> str:
        """Upload a file we own (a temporary file), or a user's file with the ``verify`` digest
        of the read that hashed it: each part sent is checked against it, and an upload whose
        file changed meanwhile is aborted (nothing becomes visible)."""
        size = path.stat().st_size if verify is None else verify.size
        if size < self.transfer.multipart_threshold:
            async with self._memory.reserve(size, f"s3://{bucket}/{key}"):
                data = await anyio.Path(path).read_bytes()
                if verify is not None:
                    verify.check_all(data)
                etag = await self.put_bytes(
                    bucket,
                    key,
                    data,
                    metadata=metadata,
                    attributes=attributes,
                    if_none_match=if_none_match,
                )
            if progress:
                progress(size)
            return etag
        if verify is not None and verify.size == 0:
            raise FileChangedError(path)
        return await self._multipart_upload(
            bucket, key, path, size, metadata, attributes, if_none_match, progress, verify
        )

    async def _multipart_upload(
        self,
        bucket: str,
        key: str,
        path: Path,
        size: int,
        metadata: Mapping[str, str],
        attributes: Mapping[str, Any] | None,
        if_none_match: bool,
        progress: Progress | None,
        verify: FileDigest | None,
    ) -> str:
        what = f"s3://{bucket}/{key}"
        part_size = self.transfer.part_size_for(size) if verify is None else verify.part_size
        params: dict[str, Any] = {
            **(attributes or {}),
            "Bucket": bucket,
            "Key": key,
            "Metadata": dict(metadata),
        }
        # Journaled before it exists: a process killed right after the server created it still
        # leaves enough behind for a later client to find and abort it.
        entry = await anyio.to_thread.run_sync(
            self._journal.opened, self.endpoint, bucket, key, None
        )
        # A create that fails leaves the entry: whether the server made the upload is unknown,
        # and a later client looks (once this process is gone).
        created = await self._call(what, "create_multipart_upload", **params)
        upload_id = created["UploadId"]
        count = (size + part_size - 1) // part_size
        etags: dict[int, str] = {}
        limiter = anyio.CapacityLimiter(self.transfer.max_concurrency)
        completed = False
        try:
            await anyio.to_thread.run_sync(self._journal.identified, entry, upload_id)
            fd = os.open(path, os.O_RDONLY)
            try:

                def read_part(number: int) -> bytes:
                    offset = (number - 1) * part_size
                    data = os.pread(fd, min(part_size, size - offset), offset)
                    if verify is not None:
                        verify.check_part(number, data)
                    elif len(data) != min(part_size, size - offset):
                        raise FileChangedError(path)
                    return data

                async def send(number: int) -> None:
                    length = min(part_size, size - (number - 1) * part_size)
                    async with limiter, self._memory.reserve(length, f"{what} part {number}"):
                        data = await anyio.to_thread.run_sync(read_part, number)
                        etags[number] = await self._upload_part(
                            bucket, key, upload_id, number, data
                        )
                        if progress:
                            progress(length)

                async with task_group() as tg:
                    for number in range(1, count + 1):
                        tg.start_soon(send, number)
                if verify is not None:
                    verify.check_unchanged(fd)
            finally:
                os.close(fd)
            complete: dict[str, Any] = {
                "Bucket": bucket,
                "Key": key,
                "UploadId": upload_id,
                "MultipartUpload": {
                    "Parts": [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]
                },
            }
            if if_none_match:
                complete["IfNoneMatch"] = "*"
            resp = await self._call(what, "complete_multipart_upload", **complete)
            if not resp.get("ETag"):
                raise not_s3(what, "no ETag for a completed upload")
            completed = True
            return str(resp["ETag"])
        finally:
            if completed:
                self._journal.closed(entry)
            else:
                with anyio.CancelScope(shield=True):
                    if await self.abort_multipart(bucket, key, upload_id):
                        self._journal.closed(entry)

    async def _upload_part(
        self, bucket: str, key: str, upload_id: str, number: int, data: bytes
    ) -> str:
        what = f"s3://{bucket}/{key} part {number}"
        lean = await self._lean()
        if lean is not None and self._lean_parts:
            try:
                with anyio.fail_after(self.transfer.request_timeout):
                    etag: str = await with_retries(
                        lambda: lean.upload_part(
                            bucket, key, upload_id, number, data, self.transfer.read_timeout
                        ),
                        self.transfer.max_attempts,
                    )
                return etag
            except Fallback as answer:
                self._lean_parts = False  # this server wants botocore's way: use it from now on
                log.info("lean UploadPart answered %s: using botocore for parts", answer)
            except TimeoutError as exc:
                raise self._timed_out(what, exc) from exc
            except Exception as exc:
                raise map_error(exc, what) from exc
        resp = await self._call(
            what,
            "upload_part",
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            # A file object makes aiohttp write 64 KiB at a time: one multi-MiB write makes
            # 3.11's asyncio transport memmove its buffer after every send().
            Body=WatchedBody(data),
        )
        return str(resp["ETag"])

    async def abort_multipart(self, bucket: str, key: str, upload_id: str) -> bool:
        """Abort, patiently but within ``abort_timeout``: a server that is briefly down must not
        keep the upload open, and one that stopped answering must not hold the caller.  False
        when the upload may still be open."""
        attempt = 0
        with anyio.move_on_after(self.transfer.abort_timeout):
            while True:
                attempt += 1
                try:
                    await self._call(
                        f"s3://{bucket}/{key}",
                        "abort_multipart_upload",
                        Bucket=bucket,
                        Key=key,
                        UploadId=upload_id,
                    )
                    return True
                except NotFoundError:
                    return True  # already gone
                except DeltaGliderError:
                    await anyio.sleep(backoff(attempt, base=0.25, cap=4.0))
        log.warning(
            "s3://%s/%s: could not abort multipart upload %s within %gs; the next client on "
            "this machine tries again (elsewhere, a lifecycle rule for incomplete uploads)",
            bucket,
            key,
            upload_id,
            self.transfer.abort_timeout,
        )
        return False

    async def list_multipart_uploads(self, bucket: str) -> list[dict[str, Any]]:
        resp = await self._call(f"s3://{bucket}", "list_multipart_uploads", Bucket=bucket)
        return list(resp.get("Uploads", []))

    async def download_to_fd(
        self,
        bucket: str,
        key: str,
        fd: int,
        size: int,
        etag: str,
        *,
        progress: Progress | None = None,
    ) -> str:
        """Parallel ranged GETs written at their offsets; returns the SHA-256 of the file.

        The hash is computed in order while later ranges are still downloading, instead of in a
        second pass over the finished file.
        """
        part = self.transfer.range_size
        offsets = list(range(0, size, part))
        written = {offset: anyio.Event() for offset in offsets}
        limiter = anyio.CapacityLimiter(self.transfer.max_concurrency)
        digest = hashlib.sha256()

        async def fetch(offset: int) -> None:
            async with limiter:
                end = min(size, offset + part)
                position = await self._lean_range(bucket, key, offset, end, etag, fd, progress)
                async for chunk in self.iter_object(
                    bucket, key, start=position, end=end, etag=etag
                ):
                    await anyio.to_thread.run_sync(pwrite_all, fd, chunk, position)
                    position += len(chunk)
                    if progress:
                        progress(len(chunk))
            written[offset].set()

        async def hash_in_order() -> None:
            for offset in offsets:
                await written[offset].wait()
                length = min(part, size - offset)
                await anyio.to_thread.run_sync(_hash_range, digest, fd, offset, length)

        async with task_group() as tg:
            tg.start_soon(hash_in_order)
            for offset in offsets:
                tg.start_soon(fetch, offset)
        return digest.hexdigest()

    async def _lean_range(
        self,
        bucket: str,
        key: str,
        start: int,
        end: int,
        etag: str,
        fd: int,
        progress: Progress | None,
    ) -> int:
        """Fetch ``[start, end)`` into ``fd`` on the lean path, resuming broken reads; returns
        where it stopped (``end``, or less when botocore must do the rest).

        Chunks are written from the event loop: a 1 MiB write into the page cache costs less
        than the thread hop that would carry it (a 1 GiB download used 0.6 s of CPU this way,
        0.9 s with a hop per chunk and 1.8 s through botocore)."""
        lean = await self._lean()
        position = start
        if lean is None or not etag:
            return position

        def sink(chunk: bytes) -> None:
            nonlocal position
            try:
                pwrite_all(fd, chunk, position)
            except OSError as exc:
                raise _LocalWriteError(exc) from exc
            position += len(chunk)
            if progress:
                progress(len(chunk))

        attempts = Attempts(self.transfer.max_attempts)
        while position < end:
            before = position
            try:
                with anyio.fail_after(self.transfer.request_timeout):
                    await lean.read_range(bucket, key, position, end, etag, sink)
            except Fallback:
                return position
            except _LocalWriteError as failed:
                raise failed.error from None
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                if _lean_unreachable(exc) and position == start:
                    return position  # botocore reports it the usual way
                failure = exc
            else:
                if position >= end:
                    break
                failure = OSError(f"short read: {position - before} bytes")
            if position > before:
                attempts.progressed()
            if not attempts.retry(failure):
                raise self._kept_breaking(f"s3://{bucket}/{key}", failure) from failure
            await anyio.sleep(backoff(attempts.failures))
        return position

    async def delete(self, bucket: str, key: str) -> None:
        await self._call(f"s3://{bucket}/{key}", "delete_object", Bucket=bucket, Key=key)

    async def delete_many(self, bucket: str, keys: list[str]) -> list[dict[str, str]]:
        """Batch delete (1000 keys per request); returns the per-key errors S3 reported."""
        errors: list[dict[str, str]] = []
        for i in range(0, len(keys), 1000):
            batch = keys[i : i + 1000]
            resp = await self._call(
                f"s3://{bucket}",
                "delete_objects",
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
            )
            errors.extend(resp.get("Errors", []))
        return errors

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        params: dict[str, Any] = {
            "Bucket": bucket,
            "Key": key,
            "CopySource": {"Bucket": src_bucket, "Key": src_key},
        }
        if metadata is not None:
            params["Metadata"] = dict(metadata)
            params["MetadataDirective"] = "REPLACE"
        resp = await self._call(f"s3://{bucket}/{key}", "copy_object", **params)
        return str(resp.get("CopyObjectResult", {}).get("ETag", ""))

    async def list_page(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        token: str | None = None,
        start_after: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        lean = await self._lean()
        if lean is not None:
            try:
                found = await with_retries(
                    lambda: lean.list_objects(
                        bucket,
                        prefix=prefix,
                        delimiter=delimiter,
                        token=token,
                        start_after=start_after,
                        max_keys=max_keys,
                    ),
                    self.transfer.max_attempts,
                )
            except Fallback:
                pass  # botocore gives the proper error (or copes with the unusual answer)
            except Exception as exc:
                raise map_error(exc, f"s3://{bucket}/{prefix}") from exc
            else:
                return ListPage(found.objects, found.prefixes, found.next_token, found.truncated)
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            params["Delimiter"] = delimiter
        if token:
            params["ContinuationToken"] = token
        if start_after:
            params["StartAfter"] = start_after
        resp = await self._call(f"s3://{bucket}/{prefix}", "list_objects_v2", **params)
        if "Name" not in resp and "KeyCount" not in resp:
            raise not_s3(f"s3://{bucket}/{prefix}", "not a listing")
        return ListPage(
            objects=list(resp.get("Contents", [])),
            prefixes=[p["Prefix"] for p in resp.get("CommonPrefixes", [])],
            next_token=resp.get("NextContinuationToken"),
            truncated=bool(resp.get("IsTruncated")),
        )

    async def iter_all(
        self,
        bucket: str,
        prefix: str = "",
        *,
        start_after: str | None = None,
        stop_after: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object under ``prefix`` (all pages), optionally only keys in
        ``(start_after, stop_after]``: a key range that can be listed concurrently with others."""
        token: str | None = None
        while True:
            page = await self.list_page(
                bucket,
                prefix=prefix,
                token=token,
                start_after=None if token else start_after,
                max_keys=page_size,
            )
            for obj in page.objects:
                if stop_after is not None and obj["Key"] > stop_after:
                    return
                yield obj
            if not page.truncated or not page.next_token:
                return
            token = page.next_token

    # ---------------------------------------------------------------- buckets
    async def create_bucket(self, bucket: str, region: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"Bucket": bucket}
        if region and region != "us-east-1":
            params["CreateBucketConfiguration"] = {"LocationConstraint": region}
        resp: dict[str, Any] = await self._call(f"s3://{bucket}", "create_bucket", **params)
        return resp

    async def bucket_exists(self, bucket: str) -> bool:
        try:
            await self._call(f"s3://{bucket}", "head_bucket", Bucket=bucket)
        except NotFoundError:
            return False
        return True

    async def delete_bucket(self, bucket: str) -> None:
        await self._call(f"s3://{bucket}", "delete_bucket", Bucket=bucket)

    async def list_buckets(self) -> dict[str, Any]:
        resp = await self._call("ListBuckets", "list_buckets")
        if "Buckets" not in resp and "Owner" not in resp:
            raise not_s3("ListBuckets", "not a bucket list")
        return {key: resp[key] for key in ("Buckets", "Owner", "Prefix") if key in resp}

    async def presign(self, method: str, params: dict[str, Any], expires: int) -> str:
        try:
            url: str = await self.client.generate_presigned_url(
                method, Params=params, ExpiresIn=expires
            )
        except Exception as exc:
            raise map_error(exc, "presign") from exc
        return url


def _head_of(resp: Mapping[str, Any], bucket: str, key: str) -> ObjectHead:
    """What a HEAD (or a whole-object GET) answered about the object."""
    if not resp.get("ETag"):
        raise not_s3(f"s3://{bucket}/{key}", "no ETag")
    return ObjectHead(
        key=key,
        size=int(resp.get("ContentLength", 0)),
        etag=resp.get("ETag", ""),
        metadata={k.lower(): v for k, v in resp.get("Metadata", {}).items()},
        last_modified=resp.get("LastModified"),
        content_type=resp.get("ContentType"),
        attributes={k: v for k, v in resp.items() if k in _HEAD_ATTRIBUTES},
    )

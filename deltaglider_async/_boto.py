"""boto3's shapes around the facade: response metadata, operation names on errors, Range
parsing as S3 does it, and the ``list_objects_v2`` paginator."""

from __future__ import annotations

import base64
import functools
import hashlib
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import botocore.session
import jmespath

from ._exceptions import ConflictError, DeltaGliderError, InvalidArgumentError, NoSuchKey

if TYPE_CHECKING:
    from ._client import AsyncDeltaGliderClient

P = ParamSpec("P")
T = TypeVar("T")


def response_metadata(status: int = 200) -> dict[str, Any]:
    """``ResponseMetadata`` with the keys boto3 puts there (no request id: several requests
    answer one logical call)."""
    return {
        "RequestId": "",
        "HostId": "",
        "HTTPStatusCode": status,
        "HTTPHeaders": {},
        "RetryAttempts": 0,
    }


def operation(name: str) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Errors out of the decorated method name the S3 operation, as ``ClientError`` does."""

    def wrap(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(method)
        async def call(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await method(*args, **kwargs)
            except DeltaGliderError as exc:
                exc.operation_name = exc.operation_name or name
                raise

        return call

    return wrap


#: PutObject/CopyObject parameters S3 applies to the object it stores: passed on to the stored
#: form of the key (delta or direct) as given
STORED_ATTRIBUTES = frozenset(
    {
        "ACL",
        "BucketKeyEnabled",
        "CacheControl",
        "ContentDisposition",
        "ContentEncoding",
        "ContentLanguage",
        "ContentType",
        "Expires",
        "GrantFullControl",
        "GrantRead",
        "GrantReadACP",
        "GrantWriteACP",
        "ObjectLockLegalHoldStatus",
        "ObjectLockMode",
        "ObjectLockRetainUntilDate",
        "SSEKMSEncryptionContext",
        "SSEKMSKeyId",
        "ServerSideEncryption",
        "StorageClass",
        "Tagging",
        "WebsiteRedirectLocation",
    }
)
#: of those, what a space's ``reference.bin`` takes from the put that creates it: the data at
#: rest is encrypted and tiered as asked; content headers, tags and ACLs stay the key's own
#: what S3 types an object stored without a ContentType
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
#: what a copy takes from its source unless the metadata directive is REPLACE (with ContentType)
CONTENT_HEADERS = frozenset(
    {"CacheControl", "ContentDisposition", "ContentEncoding", "ContentLanguage", "Expires"}
)
REFERENCE_ATTRIBUTES = frozenset(
    {"BucketKeyEnabled", "SSEKMSEncryptionContext", "SSEKMSKeyId", "ServerSideEncryption"}
)
#: storage classes whose objects need a restore before a GET: a delta against them could not
#: be read, so a put in one of them is stored directly
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
#: accepted and without effect: the request goes to the caller's own bucket and account, and
#: the SHA-256 of the logical bytes is recorded and checked on every write and read
_IGNORED = frozenset(
    {
        "ChecksumAlgorithm",
        "ChecksumMode",
        "ExpectedBucketOwner",
        "ExpectedSourceBucketOwner",
        "FetchOwner",
        "OptionalObjectAttributes",
        "RequestPayer",
    }
)
_SSE_C = (
    "SSE-C cannot apply to deltas: they are rebuilt from a reference other keys share, which "
    "one customer key per object could not decrypt; use ServerSideEncryption (SSE-S3 or KMS)"
)
#: parameters that cannot mean anything for a delta, and why (docs/conformance.md)
_REFUSED = {
    "SSECustomerAlgorithm": _SSE_C,
    "SSECustomerKey": _SSE_C,
    "SSECustomerKeyMD5": _SSE_C,
    "CopySourceSSECustomerAlgorithm": _SSE_C,
    "CopySourceSSECustomerKey": _SSE_C,
    "CopySourceSSECustomerKeyMD5": _SSE_C,
    "VersionId": "a logical object is read and deleted by key: its stored forms and its "
    "reference have versions of their own",
    "PartNumber": "a logical object has no parts of its own: use Range",
    "WriteOffsetBytes": "appending would change the bytes a delta was encoded for",
    "ChecksumCRC32C": "this checksum is not computed here: pass ChecksumSHA256, ChecksumSHA1, "
    "ChecksumCRC32 or ContentMD5 (the SHA-256 of every object is recorded and checked anyway)",
    "ChecksumCRC64NVME": "this checksum is not computed here: pass ChecksumSHA256, "
    "ChecksumSHA1, ChecksumCRC32 or ContentMD5",
    "MFA": "MFA delete applies to object versions, which logical deletes do not address",
    "BypassGovernanceRetention": "object lock retention is enforced on stored forms, which a "
    "logical delete handles together",
}


@functools.cache
def _s3_model() -> Any:
    """botocore's S3 service model, loaded once (a few hundred KB of JSON)."""
    return botocore.session.get_session().get_service_model("s3")


@functools.cache
def _members(operation: str) -> frozenset[str]:
    shape = _s3_model().operation_model(operation).input_shape
    return frozenset(shape.members) if shape is not None else frozenset()


def accept(operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The boto3 keyword arguments of ``operation`` that the caller passed beyond those the
    method names, without those that have no effect here; an unknown one, or one that cannot
    apply to a delta, is an error naming it (boto3 raises ``ParamValidationError`` for the
    former)."""
    known = _members(operation)
    kept: dict[str, Any] = {}
    for name, value in params.items():
        if name not in known:
            raise InvalidArgumentError(
                f"Unknown parameter in input: {name!r}, must be one of: {', '.join(sorted(known))}"
            )
        if name in _REFUSED:
            raise InvalidArgumentError(f"{name} is not supported: {_REFUSED[name]}")
        if name not in _IGNORED and value is not None:
            kept[name] = value
    return kept


def stored_attributes(params: dict[str, Any]) -> dict[str, Any]:
    """Pop the parameters S3 applies to a stored object out of ``params``."""
    return {name: params.pop(name) for name in list(params) if name in STORED_ATTRIBUTES}


def copy_directives(params: dict[str, Any]) -> tuple[dict[str, str] | None, dict[str, Any]]:
    """Pop what CopyObject applies to the copy out of ``params``: the user metadata (None for
    ``MetadataDirective="COPY"``, the default: the source's, with its content headers) and the
    attributes given (storage class, SSE, tags and ACLs apply either way, as in S3)."""
    directive = params.pop("MetadataDirective", None) or "COPY"
    if directive not in ("COPY", "REPLACE"):
        raise InvalidArgumentError(f"MetadataDirective must be COPY or REPLACE, not {directive!r}")
    metadata = params.pop("Metadata", None)
    params.pop("TaggingDirective", None)  # tags given apply; a source's are not read
    attributes = stored_attributes(params)
    if directive == "COPY":
        return None, {
            k: v for k, v in attributes.items() if k not in CONTENT_HEADERS | {"ContentType"}
        }
    return dict(metadata or {}), attributes


def check_digests(params: dict[str, Any], path: Path, size: int) -> None:
    """Pop ``ContentMD5``/``Checksum*``/``ContentLength`` out of ``params`` and check them
    against the body, as S3 does (``BadDigest``) before anything is stored."""
    wanted = {
        name: params.pop(name)
        for name in ("ContentMD5", "ChecksumSHA256", "ChecksumSHA1", "ChecksumCRC32")
        if name in params
    }
    length = params.pop("ContentLength", None)
    if length is not None and int(length) != size:
        raise InvalidArgumentError(
            f"ContentLength {length} does not match the body's {size} bytes",
            code="IncompleteBody",
        )
    if not wanted:
        return
    md5, sha256, sha1, crc = hashlib.md5(), hashlib.sha256(), hashlib.sha1(), 0
    with path.open("rb") as body:
        while chunk := body.read(4 << 20):
            for digest in (md5, sha256, sha1):
                digest.update(chunk)
            crc = zlib.crc32(chunk, crc)
    actual = {
        "ContentMD5": md5.digest(),
        "ChecksumSHA256": sha256.digest(),
        "ChecksumSHA1": sha1.digest(),
        "ChecksumCRC32": crc.to_bytes(4, "big"),
    }
    for name, value in wanted.items():
        if base64.b64encode(actual[name]).decode() != str(value):
            raise InvalidArgumentError(
                f"{name} {value!r} does not match the body", code="BadDigest"
            )


def check_conditions(
    params: dict[str, Any],
    etag: str | None,
    modified: datetime | None,
    *,
    prefix: str = "",
) -> None:
    """Pop and evaluate ``If-*`` conditions on the logical object (None: it does not exist),
    with S3's answers: 412 ``PreconditionFailed``, 304 ``NotModified``."""
    match = params.pop(f"{prefix}IfMatch", None)
    none_match = params.pop(f"{prefix}IfNoneMatch", None)
    since = _aware(params.pop(f"{prefix}IfModifiedSince", None))
    until = _aware(params.pop(f"{prefix}IfUnmodifiedSince", None))

    def failed(code: str, status: int, why: str) -> ConflictError:
        return ConflictError(why, code=code, status=status)

    if match is not None and (etag is None or not _etag_in(match, etag)):
        raise failed("PreconditionFailed", 412, f"{prefix}IfMatch {match} does not match")
    if until is not None and modified is not None and modified > until and match is None:
        raise failed("PreconditionFailed", 412, f"modified after {prefix}IfUnmodifiedSince")
    if none_match is not None and etag is not None and _etag_in(none_match, etag):
        raise failed("304", 304, f"{prefix}IfNoneMatch {none_match}: not modified")
    if since is not None and modified is not None and modified <= since and none_match is None:
        raise failed("304", 304, f"not modified since {prefix}IfModifiedSince")


def check_write_conditions(params: dict[str, Any], etag: str | None) -> None:
    """Pop and evaluate a put's ``IfNoneMatch="*"`` (create only) and ``IfMatch`` on the
    logical object's ETag (None: no such object)."""
    match, none_match = params.pop("IfMatch", None), params.pop("IfNoneMatch", None)
    if none_match is not None and none_match != "*":
        raise InvalidArgumentError(f"IfNoneMatch of a put must be '*', not {none_match!r}")
    if none_match is not None and etag is not None:
        raise ConflictError("IfNoneMatch='*': the object exists", code="PreconditionFailed")
    if match is not None and etag is None:
        raise NoSuchKey("IfMatch: no such object")
    if match is not None and etag is not None and not _etag_in(match, etag):
        raise ConflictError(f"IfMatch {match} does not match", code="PreconditionFailed")


def _aware(when: Any) -> datetime | None:
    """A condition's date as boto3 takes it (a datetime, naive meaning UTC, or ISO 8601 text)."""
    if when is None:
        return None
    if isinstance(when, str):
        try:
            when = datetime.fromisoformat(when)
        except ValueError:
            raise InvalidArgumentError(f"not an ISO 8601 date: {when!r}") from None
    if not isinstance(when, datetime):
        raise InvalidArgumentError(f"a date is needed, not {type(when).__name__}")
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _etag_in(condition: str, etag: str) -> bool:
    return any(c.strip() in ("*", etag, etag.strip('"')) for c in str(condition).split(","))


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` → half-open ``[start, end)``.

    As S3 does: a header that is not one well-formed byte range is ignored (None: the whole
    object, 200); a well-formed range that does not overlap the object is ``InvalidRange``.
    """
    spec = header.strip()
    if not spec.startswith("bytes=") or "," in spec:
        return None
    first, dash, last = spec[6:].strip().partition("-")
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "":
            return None
        start, end = max(0, size - int(last)), size
        if int(last) == 0:
            start = size
    else:
        start = int(first)
        if last != "" and int(last) < start:
            return None
        end = size if last == "" else min(size, int(last) + 1)
    if start >= size:
        raise InvalidArgumentError(
            f"Range {header!r} is not satisfiable for {size} bytes",
            code="InvalidRange",
            status=416,
        )
    return start, end


class ListObjectsPaginator:
    """``dg.get_paginator("list_objects_v2").paginate(Bucket=..., PaginationConfig=...)``."""

    def __init__(self, client: AsyncDeltaGliderClient) -> None:
        self._client = client

    def paginate(self, **kwargs: Any) -> PageIterator:
        return PageIterator(self._client, kwargs)


class PageIterator:
    """``async for page in ...``, ``await build_full_result()``, ``async for x in search(expr)``
    (aiobotocore's ``AioPageIterator`` surface)."""

    def __init__(self, client: AsyncDeltaGliderClient, kwargs: dict[str, Any]) -> None:
        self._client = client
        config = dict(kwargs.pop("PaginationConfig", None) or {})
        unknown = set(config) - {"MaxItems", "PageSize", "StartingToken"}
        if unknown:
            raise InvalidArgumentError(f"unknown PaginationConfig keys: {sorted(unknown)}")
        self._max_items: int | None = config.get("MaxItems")
        if "PageSize" in config:
            kwargs["MaxKeys"] = config["PageSize"]
        if config.get("StartingToken"):
            kwargs["ContinuationToken"] = config["StartingToken"]
        self._kwargs = kwargs
        self.resume_token: str | None = None

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._pages()

    async def _pages(self) -> AsyncIterator[dict[str, Any]]:
        kwargs = dict(self._kwargs)
        left = self._max_items
        while True:
            if left is not None:
                kwargs["MaxKeys"] = min(int(kwargs.get("MaxKeys", 1000)), left)
            page = await self._client.list_objects_v2(**kwargs)
            yield page
            token = page.get("NextContinuationToken")
            if left is not None:
                left -= page["KeyCount"]
                if left <= 0:
                    self.resume_token = token
                    return
            if not page.get("IsTruncated") or not token:
                return
            kwargs["ContinuationToken"] = token

    async def build_full_result(self) -> dict[str, Any]:
        """The pages merged into one response, as botocore's ``build_full_result`` does."""
        result: dict[str, Any] = {}
        async for page in self:
            for name in ("Contents", "CommonPrefixes"):
                if name in page:
                    result.setdefault(name, []).extend(page[name])
            result["KeyCount"] = result.get("KeyCount", 0) + page.get("KeyCount", 0)
        if self.resume_token:
            result["NextToken"] = self.resume_token
        return result

    async def search(self, expression: str) -> AsyncIterator[Any]:
        """JMESPath ``expression`` applied to each page; list results are flattened."""
        compiled = jmespath.compile(expression)
        async for page in self:
            found = compiled.search(page)
            if isinstance(found, list):
                for item in found:
                    yield item
            else:
                yield found

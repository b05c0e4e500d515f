"""boto3's shapes around the facade: response metadata, operation names on errors, Range
parsing as S3 does it, and the ``list_objects_v2`` paginator."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import jmespath

from ._exceptions import DeltaGliderError, InvalidArgumentError

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

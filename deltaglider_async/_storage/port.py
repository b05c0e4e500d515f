"""The storage port: what the pipelines need from S3, and nothing else.

:class:`~.s3.S3Storage` implements it on aiobotocore (with the fast path for hot requests); unit
tests of the pipelines use a small in-memory implementation (``tests/fakes.py``).  Keys here are
*stored* keys (``reference.bin``, ``x.zip.delta``); errors are the SDK's (``NotFoundError``,
``ConflictError`` for a lost create-only write, ``StorageError``…), already translated.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from .._localfs import FileDigest
from .._transfer import TransferConfig

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ObjectHead:
    key: str
    size: int
    etag: str
    metadata: dict[str, str]
    last_modified: datetime | None = None
    content_type: str | None = None
    #: what a HEAD says of the object beyond that, as boto3 names it (``CacheControl``,
    #: ``StorageClass``, ``ServerSideEncryption``…); only the full HEAD fills it
    attributes: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OpenedObject:
    """A GET whose answer is in: the object's head, and its body to stream (pinned to that
    ETag, resuming by Range like ``iter_object``) or to ``close`` unread."""

    head: ObjectHead
    body: AsyncIterator[bytes]
    close: Callable[[], None]


@dataclass
class ListPage:
    objects: list[dict[str, Any]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    next_token: str | None = None
    truncated: bool = False


class Storage(Protocol):
    transfer: TransferConfig

    @property
    def endpoint(self) -> str:
        """The endpoint requests go to (known once open)."""
        ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...

    async def head(self, bucket: str, key: str) -> ObjectHead | None:
        """The object's head, None if there is no such key."""
        ...

    async def head_fast(self, bucket: str, key: str) -> ObjectHead | None:
        """:meth:`head` for bulk metadata reads (may take a cheaper path)."""
        ...

    def iter_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        etag: str | None = None,
        chunk_size: int = 1 << 20,
    ) -> AsyncIterator[bytes]:
        """Bytes ``[start, end)``; with ``etag``, of that version only."""
        ...

    async def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        """GET a whole object: its head and body in one round trip (None: no such key)."""
        ...

    async def get_bytes(self, bucket: str, key: str) -> bytes: ...

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
        """Write the object at its offsets into ``fd``; returns the SHA-256 of what was written."""
        ...

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
        """Store ``data``; ``attributes`` are PutObject parameters applied as given
        (``ContentType``, ``StorageClass``, ``ServerSideEncryption``, ``Tagging``…)."""
        ...

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
        """Upload ``path``; with ``verify``, every byte sent is checked against that digest."""
        ...

    async def copy(
        self,
        src_bucket: str,
        src_key: str,
        bucket: str,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> str: ...

    async def delete(self, bucket: str, key: str) -> None: ...

    async def delete_many(self, bucket: str, keys: list[str]) -> list[dict[str, str]]:
        """Batch delete; returns the per-key errors (``Key``, ``Code``, ``Message``)."""
        ...

    async def list_page(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str | None = None,
        token: str | None = None,
        start_after: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage: ...

    def iter_all(
        self,
        bucket: str,
        prefix: str = "",
        *,
        start_after: str | None = None,
        stop_after: str | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[dict[str, Any]]: ...

    async def create_bucket(self, bucket: str, region: str | None = None) -> dict[str, Any]: ...
    async def bucket_exists(self, bucket: str) -> bool: ...
    async def delete_bucket(self, bucket: str) -> None: ...
    async def list_buckets(self) -> dict[str, Any]:
        """``Buckets`` and ``Owner`` of ListBuckets."""
        ...

    async def list_multipart_uploads(self, bucket: str) -> list[dict[str, Any]]: ...
    async def presign(self, method: str, params: dict[str, Any], expires: int) -> str: ...

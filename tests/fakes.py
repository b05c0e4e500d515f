"""An in-memory implementation of the storage port, for unit tests of the pipelines only.

Integration tests use real servers; this fake exists so that pipeline branches (races, failures,
batching) can be driven exactly and quickly.  It keeps S3's semantics where the pipelines rely on
them: create-only PUTs, ETag-pinned reads, ListObjectsV2 pages with delimiters, idempotent
deletes, batch deletes that report per-key errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from deltaglider_async import ConflictError, NotFoundError, StorageError, TransferConfig
from deltaglider_async._localfs import FileDigest
from deltaglider_async._storage.port import ListPage, ObjectHead, OpenedObject, Progress


@dataclass
class _Stored:
    data: bytes
    metadata: dict[str, str]
    etag: str
    modified: datetime
    content_type: str | None


@dataclass
class MemoryStorage:
    transfer: TransferConfig = field(default_factory=TransferConfig)
    buckets: dict[str, dict[str, _Stored]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    clock: datetime = field(default_factory=lambda: datetime(2026, 1, 1, tzinfo=UTC))
    endpoint: str = "memory://"

    async def open(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def _bucket(self, bucket: str) -> dict[str, _Stored]:
        if bucket not in self.buckets:
            raise NotFoundError(f"s3://{bucket}: bucket does not exist", code="NoSuchBucket")
        return self.buckets[bucket]

    def _store(self, bucket: str, key: str, data: bytes, metadata: Mapping[str, str],
               content_type: str | None, if_none_match: bool) -> str:  # fmt: skip
        objects = self._bucket(bucket)
        if if_none_match and key in objects:
            raise ConflictError(f"s3://{bucket}/{key}: precondition failed")
        self.clock += timedelta(seconds=1)
        etag = '"' + hashlib.md5(data).hexdigest() + '"'
        objects[key] = _Stored(data, {k.lower(): v for k, v in metadata.items()}, etag,
                               self.clock, content_type)  # fmt: skip
        return etag

    async def head(self, bucket: str, key: str) -> ObjectHead | None:
        self.calls.append(("head", key))
        found = self._bucket(bucket).get(key)
        if found is None:
            return None
        return ObjectHead(key, len(found.data), found.etag, dict(found.metadata), found.modified,
                          found.content_type)  # fmt: skip

    async def head_fast(self, bucket: str, key: str) -> ObjectHead | None:
        return await self.head(bucket, key)

    async def iter_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        etag: str | None = None,
        chunk_size: int = 1 << 20,
    ) -> AsyncIterator[bytes]:
        self.calls.append(("get", key))
        found = self._bucket(bucket).get(key)
        if found is None:
            raise NotFoundError(f"s3://{bucket}/{key}: not found")
        if etag and etag != found.etag:
            raise ConflictError(f"s3://{bucket}/{key}: precondition failed")
        data = found.data[start:end]
        for offset in range(0, len(data), chunk_size):
            yield data[offset : offset + chunk_size]

    async def open_object(self, bucket: str, key: str) -> OpenedObject | None:
        head = await self.head(bucket, key)
        if head is None:
            return None
        self.calls[-1] = ("open", key)
        return OpenedObject(
            head,
            self.iter_object(bucket, key, etag=head.etag),
            lambda: self.calls.append(("close", key)),
        )

    async def get_bytes(self, bucket: str, key: str) -> bytes:
        return b"".join([chunk async for chunk in self.iter_object(bucket, key)])

    async def download_to_fd(self, bucket: str, key: str, fd: int, size: int, etag: str, *,
                             progress: Progress | None = None) -> str:  # fmt: skip
        import os

        data = await self.get_bytes(bucket, key)
        os.pwrite(fd, data, 0)
        return hashlib.sha256(data).hexdigest()

    async def put_bytes(self, bucket: str, key: str, data: bytes, *,
                        metadata: Mapping[str, str], attributes: Mapping[str, Any] | None = None,
                        if_none_match: bool = False) -> str:  # fmt: skip
        self.calls.append(("put", key))
        content_type = (attributes or {}).get("ContentType")
        return self._store(bucket, key, data, metadata, content_type, if_none_match)

    async def put_file(self, bucket: str, key: str, path: Path, *, metadata: Mapping[str, str],
                       attributes: Mapping[str, Any] | None = None, if_none_match: bool = False,
                       progress: Progress | None = None,
                       verify: FileDigest | None = None) -> str:  # fmt: skip
        self.calls.append(("put", key))
        data = path.read_bytes()
        if verify is not None:
            verify.check_all(data)
        content_type = (attributes or {}).get("ContentType")
        return self._store(bucket, key, data, metadata, content_type, if_none_match)

    async def copy(self, src_bucket: str, src_key: str, bucket: str, key: str, *,
                   metadata: Mapping[str, str] | None = None) -> str:  # fmt: skip
        self.calls.append(("copy", key))
        found = self._bucket(src_bucket).get(src_key)
        if found is None:
            raise NotFoundError(f"s3://{src_bucket}/{src_key}: not found")
        meta = found.metadata if metadata is None else dict(metadata)
        return self._store(bucket, key, found.data, meta, found.content_type, False)

    async def delete(self, bucket: str, key: str) -> None:
        self.calls.append(("delete", key))
        self._bucket(bucket).pop(key, None)

    async def delete_many(self, bucket: str, keys: list[str]) -> list[dict[str, str]]:
        self.calls.append(("delete_many", str(len(keys))))
        for key in keys:
            self._bucket(bucket).pop(key, None)
        return []

    async def list_page(self, bucket: str, *, prefix: str = "", delimiter: str | None = None,
                        token: str | None = None, start_after: str | None = None,
                        max_keys: int = 1000) -> ListPage:  # fmt: skip
        self.calls.append(("list", prefix))
        after = token or start_after or ""
        objects: list[dict[str, Any]] = []
        prefixes: list[str] = []
        for key in sorted(self._bucket(bucket)):
            if not key.startswith(prefix) or key <= after:
                continue
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest[: rest.index(delimiter) + 1]
                if common not in prefixes:
                    prefixes.append(common)
                continue
            found = self.buckets[bucket][key]
            objects.append({"Key": key, "Size": len(found.data), "ETag": found.etag,
                            "LastModified": found.modified})  # fmt: skip
            if len(objects) == max_keys:
                return ListPage(objects, prefixes, key, True)
        return ListPage(objects, prefixes, None, False)

    async def iter_all(self, bucket: str, prefix: str = "", *, start_after: str | None = None,
                       stop_after: str | None = None,
                       page_size: int = 1000) -> AsyncIterator[dict[str, Any]]:  # fmt: skip
        page = await self.list_page(bucket, prefix=prefix, start_after=start_after,
                                    max_keys=10**9)  # fmt: skip
        for obj in page.objects:
            if stop_after is not None and obj["Key"] > stop_after:
                return
            yield obj

    async def create_bucket(self, bucket: str, region: str | None = None) -> dict[str, Any]:
        self.buckets.setdefault(bucket, {})
        return {}

    async def bucket_exists(self, bucket: str) -> bool:
        return bucket in self.buckets

    async def delete_bucket(self, bucket: str) -> None:
        if self._bucket(bucket):
            raise StorageError(f"s3://{bucket}: not empty", code="BucketNotEmpty")
        del self.buckets[bucket]

    async def list_buckets(self) -> dict[str, Any]:
        return {"Buckets": [{"Name": name} for name in sorted(self.buckets)], "Owner": {}}

    async def list_multipart_uploads(self, bucket: str) -> list[dict[str, Any]]:
        return []

    async def presign(self, method: str, params: dict[str, Any], expires: int) -> str:
        return f"memory://{params['Bucket']}/{params['Key']}"

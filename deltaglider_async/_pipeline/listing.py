"""The list pipeline: stored listings turned into pages of logical objects.

References and internal keys are hidden and ``x.zip.delta`` is listed as ``x.zip``. A page holds
as many entries as asked although hidden keys take room in S3's pages: it is topped up from further
listing requests. Deltas get their logical size and ETag from their HEAD, read once per stored
ETag and remembered in the client's :class:`~.._engine.heads.DeltaHeads` (shared with stats).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio

from .._core.metadata import logical_etag
from .._core.spaces import INTERNAL_PREFIX, StoredKind, check_bucket, classify
from .._engine.heads import DeltaHead
from .._formats import DEFAULT_FORMAT
from .._tasks import task_group
from .context import Stage


@dataclass
class LogicalPage:
    #: boto3-shaped ``Contents`` entries, each with its ``DeltaGliderInfo``
    contents: list[dict[str, Any]] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    next_token: str | None = None


class ListPipeline(Stage):
    async def page(
        self,
        bucket: str,
        *,
        prefix: str,
        delimiter: str | None,
        max_keys: int,
        token: str | None,
        start_after: str | None,
        logical_sizes: bool,
    ) -> LogicalPage:
        """Up to ``max_keys`` logical entries and common prefixes after ``token`` (or
        ``start_after``); ``logical_sizes=False`` leaves deltas at their stored size."""
        check_bucket(bucket)
        result = LogicalPage()
        seen: set[str] = set()
        first = token is None
        while True:
            page = await self._storage.list_page(
                bucket,
                prefix=prefix,
                delimiter=delimiter,
                token=token,
                start_after=start_after if first else None,
                max_keys=max(0, max_keys - len(result.contents) - len(result.prefixes)),
            )
            first = False
            for obj in page.objects:
                kind, logical = classify(obj["Key"])
                if kind in (StoredKind.REFERENCE, StoredKind.INTERNAL) or logical in seen:
                    continue
                seen.add(logical)
                result.contents.append(_listed(obj, logical, kind))
            result.prefixes += [p for p in page.prefixes if not p.startswith(INTERNAL_PREFIX)]
            token = page.next_token if page.truncated else None
            if token is None or len(result.contents) + len(result.prefixes) >= max_keys:
                break
        result.next_token = token
        if logical_sizes:
            await self._fill_logical(bucket, result.contents)
        return result

    async def _fill_logical(self, bucket: str, contents: list[dict[str, Any]]) -> None:
        heads = self._ctx.stats.heads
        if any(entry["DeltaGliderInfo"]["StoredAs"] == "delta" for entry in contents):
            await heads.load(bucket)
        limiter = anyio.CapacityLimiter(self._transfer.max_heads)

        async def fill(entry: dict[str, Any]) -> None:
            info = entry["DeltaGliderInfo"]
            stored = info["StoredKey"]
            known = heads.get(bucket, stored, entry["ETag"], whole=True)
            if known is None:
                async with limiter:
                    head = await self._storage.head_fast(bucket, stored)
                if head is None:
                    return  # deleted since it was listed
                known = DeltaHead.read(head)
                heads.remember(bucket, stored, known)
            info.update(
                OriginalSize=known.size,
                Sha256=known.sha256,
                DeltaFormat=known.delta_format or DEFAULT_FORMAT,
                FormatNote=known.note,
            )
            if known.size is not None:
                entry["Size"] = known.size
            if known.sha256:
                entry["ETag"] = logical_etag(known.sha256)

        async with task_group() as tg:
            for entry in contents:
                if entry["DeltaGliderInfo"]["StoredAs"] == "delta":
                    tg.start_soon(fill, entry)


def _listed(obj: Mapping[str, Any], logical: str, kind: StoredKind) -> dict[str, Any]:
    """A listing entry of a stored object, under its logical key (sizes filled in later)."""
    size = obj.get("Size", 0)
    entry = {
        "Key": logical,
        "LastModified": obj.get("LastModified"),
        "ETag": obj.get("ETag", ""),
        "Size": size,
        "StorageClass": obj.get("StorageClass", "STANDARD"),
    }
    if "Owner" in obj:
        entry["Owner"] = obj["Owner"]
    entry["DeltaGliderInfo"] = {
        "StoredAs": "delta" if kind is StoredKind.DELTA else "direct",
        "StoredKey": obj["Key"],
        "StoredSize": size,
        "OriginalSize": None if kind is StoredKind.DELTA else size,
    }
    return entry

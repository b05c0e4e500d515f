"""Stats crawler: streams the listing, HEADs deltas concurrently, caches and reuses results.

Three layers keep repeated calls cheap:
1. a per-client session cache (a detailed result also answers quick and sampled calls; any write
   through the client invalidates its bucket);
2. what each delta's HEAD said, remembered with its stored ETag in the client's
   :class:`~.heads.DeltaHeads` (which listings share), so a re-run HEADs only new or changed
   deltas (incremental);
3. the in-bucket document ``.deltaglider/stats_<mode>.json``, reused while the listing's object
   count and stored bytes still match, and carrying the per-key sizes for other processes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio

from .._core.metadata import timestamp
from .._core.spaces import StoredKind, classify
from .._core.stats import (
    MODES,
    RANGE_PAGE,
    BucketStats,
    Listing,
    Mode,
    StoredObject,
    compute_stats,
    fingerprint,
    listing_boundaries,
    stats_document_key,
)
from .._exceptions import (
    BucketNotFoundError,
    CredentialsError,
    DeltaGliderError,
    InvalidArgumentError,
    NotFoundError,
)
from .._storage.port import Storage
from .._tasks import RatePace, task_group
from .heads import DeltaHead, DeltaHeads

DOCUMENT_VERSION = "1.0"
#: S3's documented request rate per prefix for GET/HEAD (3,500 for writes).
READS_PER_SECOND = 5500.0

#: HEADs deltas elsewhere: (bucket, objects) -> (original size by stored key, HEADs failed).
RemoteHeads = Callable[[str, list[StoredObject]], Awaitable[tuple[dict[str, int], int]]]


class StatsEngine:
    def __init__(
        self, storage: Storage, *, concurrency: int = 64, heads: DeltaHeads | None = None
    ) -> None:
        self._storage = storage
        self.concurrency = concurrency
        self.heads = heads or DeltaHeads()
        self._session: dict[tuple[str, str], dict[Mode, BucketStats]] = {}

    def invalidate(self, bucket: str) -> None:
        for key in [k for k in self._session if k[0] == bucket]:
            del self._session[key]

    def clear(self) -> None:
        self._session.clear()
        self.heads.clear()

    def cached(self, bucket: str) -> BucketStats | None:
        """The best cached whole-bucket result (for list_buckets)."""
        found = self._session.get((bucket, ""), {})
        modes: tuple[Mode, ...] = ("detailed", "sampled", "quick")
        for mode in modes:
            if mode in found:
                return found[mode]
        return None

    async def bucket_stats(
        self,
        bucket: str,
        mode: Mode = "quick",
        *,
        prefix: str | None = None,
        refresh: bool = False,
        use_document: bool = True,
        save_document: bool = True,
        remote: RemoteHeads | None = None,
    ) -> BucketStats:
        """``remote`` HEADs the deltas elsewhere (a cluster) once the listing is complete,
        instead of this process HEADing them while it lists."""
        if mode not in MODES:
            raise InvalidArgumentError(f"stats mode must be one of {', '.join(MODES)}: {mode!r}")
        scope = (bucket, prefix or "")
        if not refresh:
            session = self._session.get(scope, {})
            for better in MODES[MODES.index(mode) :][::-1]:
                if better in session:
                    return session[better]
        listing, originals, heads, failed = await self._crawl(
            bucket, prefix or "", mode, refresh, use_document, remote
        )
        result = compute_stats(
            bucket,
            mode,
            listing,
            originals,
            failed_heads=failed,
            heads_issued=heads,
            computed_at=timestamp(datetime.now(UTC)),
        )
        self._session.setdefault(scope, {})[mode] = result
        if save_document and not prefix and not result.partial:
            await self._save_document(bucket, mode, listing, originals, result)
        return result

    async def original_sizes(
        self, bucket: str, objects: Sequence[StoredObject]
    ) -> tuple[dict[str, int], int]:
        """Original sizes of deltas from one HEAD each, ``concurrency`` at a time: found sizes
        by stored key, and how many HEADs failed."""
        sizes: dict[str, int] = {}
        limiter = anyio.CapacityLimiter(self.concurrency)
        heads = _Heads(self._storage, bucket)

        async def head(obj: StoredObject) -> None:
            async with limiter:
                found = await heads.read(obj)
            if found is not None and found.size is not None:
                self.heads.remember(bucket, obj.key, found)
                sizes[obj.key] = found.size

        async with task_group() as tg:
            for obj in objects:
                tg.start_soon(head, obj)
        return sizes, heads.failed

    async def _crawl(
        self,
        bucket: str,
        prefix: str,
        mode: Mode,
        refresh: bool,
        use_document: bool,
        remote: RemoteHeads | None,
    ) -> tuple[Listing, dict[str, int], int, int]:
        """The listing, the original sizes of its deltas known or read, HEADs sent, HEADs failed."""
        await self.heads.load(bucket)
        boundaries: list[str] = []
        if use_document and not refresh and not prefix:
            boundaries = await self._load_document(bucket)
        listing = Listing()
        sizes: dict[str, int] = {}
        heads = _Heads(self._storage, bucket)
        later: list[StoredObject] = []
        send, receive = anyio.create_memory_object_stream[StoredObject](max_buffer_size=4096)

        async def worker() -> None:
            async with receive.clone() as stream:
                async for obj in stream:
                    found = await heads.read(obj)
                    if found is not None and found.size is not None:
                        self.heads.remember(bucket, obj.key, found)
                        sizes[obj.key] = found.size

        async def to_head(obj: StoredObject) -> None:
            if remote is None:
                await send.send(obj)
            else:
                later.append(obj)

        async with task_group() as tg:
            for _ in range(self.concurrency if remote is None else 0):
                tg.start_soon(worker)

            async def list_range(start: str | None, stop: str | None) -> None:
                async for item in self._storage.iter_all(
                    bucket,
                    prefix,
                    start_after=start,
                    stop_after=stop,
                    page_size=RANGE_PAGE if boundaries else 1000,
                ):
                    obj = StoredObject(item["Key"], int(item.get("Size", 0)), item.get("ETag", ""))
                    listing.add(obj)
                    if classify(obj.key)[0] is not StoredKind.DELTA:
                        continue
                    known = self.heads.get(bucket, obj.key, obj.etag)
                    if known is not None and known.size is not None:
                        sizes[obj.key] = known.size
                    elif mode == "detailed":
                        # HEAD while listing continues (never hold every key first)
                        await to_head(obj)

            async with send:
                # Pages of one listing come one after another; key ranges split at the previous
                # run's boundaries are listed side by side (new keys land in some range).
                ranges = list(zip([None, *boundaries], [*boundaries, None], strict=True))
                async with task_group() as listers:
                    for start, stop in ranges:
                        listers.start_soon(list_range, start, stop)
                if mode != "detailed":
                    for obj in listing.keys_to_head(mode):
                        if obj.key not in sizes:
                            await to_head(obj)
            receive.close()
        if remote is None or not later:
            return listing, sizes, heads.issued, heads.failed
        found, failed = await remote(bucket, later)
        for obj in later:
            if obj.key in found:
                sizes[obj.key] = found[obj.key]
                self.heads.remember_size(bucket, obj.key, obj.etag, found[obj.key])
        return listing, sizes, len(later), failed

    async def _load_document(self, bucket: str) -> list[str]:
        """Seed per-key sizes from the in-bucket documents; return listing range boundaries."""
        documents: dict[str, Any] = {}

        async def load(mode: Mode) -> None:
            # A server that does not answer is no missed shortcut: the listing would wait the
            # same timeouts again, so only a missing or unreadable document is passed over.
            try:
                raw = await self._storage.get_bytes(bucket, stats_document_key(mode))
                documents[mode] = json.loads(raw)
            except BucketNotFoundError:
                raise
            except (NotFoundError, CredentialsError, ValueError):
                pass  # missing, unreadable, damaged or foreign: only a missed shortcut

        async with task_group() as tg:
            for mode in ("detailed", "sampled"):
                tg.start_soon(load, mode)
        boundaries: list[str] = []
        for mode in ("detailed", "sampled"):
            document = documents.get(mode)
            try:
                for stored_key, (etag, size) in document.get("originals", {}).items():  # type: ignore[union-attr]
                    self.heads.remember_size(bucket, stored_key, str(etag), int(size))
                boundaries = boundaries or sorted(str(b) for b in document.get("boundaries", []))  # type: ignore[union-attr]
            except (AttributeError, ValueError, TypeError):
                continue
        return boundaries

    async def _save_document(
        self,
        bucket: str,
        mode: Mode,
        listing: Listing,
        originals: dict[str, int],
        result: BucketStats,
    ) -> None:
        document: dict[str, Any] = {
            "version": DOCUMENT_VERSION,
            "mode": mode,
            "computed_at": result.computed_at,
            "validation": fingerprint(listing),
            "stats": result.as_dict(),
            "originals": {
                obj.key: [obj.etag, originals[obj.key]]
                for objs in listing.deltas.values()
                for obj in objs
                if obj.key in originals
            },
            "boundaries": listing_boundaries(listing),
        }
        # With read-only credentials stats still work; only the shortcut is lost.
        with contextlib.suppress(DeltaGliderError):
            await self._storage.put_bytes(
                bucket,
                stats_document_key(mode),
                json.dumps(document).encode(),
                metadata={},
                attributes={"ContentType": "application/json"},
            )


class _Heads:
    """HEADs for deltas' original sizes, paced to S3's read rate per prefix, counted."""

    def __init__(self, storage: Storage, bucket: str) -> None:
        self._storage = storage
        self._bucket = bucket
        self._pace = RatePace(READS_PER_SECOND)
        self.issued = 0
        self.failed = 0

    async def read(self, obj: StoredObject) -> DeltaHead | None:
        """What the delta's HEAD says; None when it is gone or the HEAD failed."""
        self.issued += 1
        await self._pace.wait()
        try:
            found = await self._storage.head_fast(self._bucket, obj.key)
        except DeltaGliderError:
            self.failed += 1
            return None
        return None if found is None else DeltaHead.read(found)

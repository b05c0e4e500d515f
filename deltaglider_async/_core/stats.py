"""Bucket statistics arithmetic: pure functions over a listing and known original sizes.

- ``object_count``: user objects (deltas + direct); references and ``.deltaglider/`` excluded.
- ``total_size``: sum of original sizes.
- ``compressed_size``: stored bytes of deltas and direct objects plus every reference in use.
- ``space_saved = max(0, total - compressed)``; ``average_compression_ratio = saved / total``.
- A ``reference.bin`` whose space has no delta is *orphaned*: listed, not counted.

Original sizes of deltas come from ``dg-file-size`` (one HEAD each).  Where a mode does not HEAD
every delta, the missing sizes are projected and the result says ``estimated``.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .spaces import StoredKind, classify, space_of

Mode = Literal["quick", "sampled", "detailed"]
MODES: tuple[Mode, ...] = ("quick", "sampled", "detailed")
#: Deltas HEADed per delta space in sampled mode.
SAMPLE_PER_SPACE = 8


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    etag: str


@dataclass
class Listing:
    """A bucket listing sorted into what stats needs."""

    deltas: dict[str, list[StoredObject]] = field(default_factory=dict)  # by space
    references: dict[str, StoredObject] = field(default_factory=dict)  # by space
    direct: list[StoredObject] = field(default_factory=list)

    def add(self, obj: StoredObject) -> None:
        kind, _ = classify(obj.key)
        if kind is StoredKind.DELTA:
            self.deltas.setdefault(space_of(obj.key), []).append(obj)
        elif kind is StoredKind.REFERENCE:
            self.references[space_of(obj.key)] = obj
        elif kind is StoredKind.DIRECT:
            self.direct.append(obj)

    @property
    def object_count(self) -> int:
        return len(self.direct) + sum(len(v) for v in self.deltas.values())

    @property
    def stored_bytes(self) -> int:
        """Every stored byte the listing shows (the cache-validation fingerprint)."""
        return (
            sum(o.size for o in self.direct)
            + sum(o.size for v in self.deltas.values() for o in v)
            + sum(o.size for o in self.references.values())
        )

    def keys_to_head(self, mode: Mode) -> list[StoredObject]:
        """Deltas whose original size the mode reads: all, a sample per space, or none."""
        if mode == "detailed":
            return [o for v in self.deltas.values() for o in v]
        if mode == "sampled":
            picked: list[StoredObject] = []
            for objs in self.deltas.values():
                if len(objs) <= SAMPLE_PER_SPACE:
                    picked += objs
                else:  # evenly spread over the space's (sorted) versions
                    step = len(objs) / SAMPLE_PER_SPACE
                    picked += [objs[int(i * step)] for i in range(SAMPLE_PER_SPACE)]
            return picked
        return []


@dataclass(frozen=True)
class OrphanedReference:
    key: str
    size: int


@dataclass(frozen=True)
class BucketStats:
    bucket: str
    mode: Mode
    object_count: int
    total_size: int
    compressed_size: int
    space_saved: int
    average_compression_ratio: float
    delta_objects: int
    direct_objects: int
    delta_spaces: int
    orphaned_references: tuple[OrphanedReference, ...] = ()
    #: some original sizes are projected rather than read from metadata
    estimated: bool = False
    #: some HEAD requests failed for good; their deltas' sizes are projected
    partial: bool = False
    failed_heads: int = 0
    heads_issued: int = 0
    computed_at: str = ""

    @property
    def orphaned_hint(self) -> str:
        if not self.orphaned_references:
            return ""
        return (
            f"{len(self.orphaned_references)} reference(s) no longer used by any delta: remove "
            "with `deltaglider-async rm s3://BUCKET/<space>reference.bin`"
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["orphaned_references"] = [asdict(o) for o in self.orphaned_references]
        return data


def compute_stats(
    bucket: str,
    mode: Mode,
    listing: Listing,
    originals: Mapping[str, int],
    *,
    failed_heads: int = 0,
    heads_issued: int = 0,
    computed_at: str = "",
) -> BucketStats:
    """Combine a listing with the original sizes read so far (keyed by stored delta key).

    Deltas without a known original size are projected: from the known originals of the same
    space (their median), else from the space's reference size.
    """
    total = sum(o.size for o in listing.direct)
    compressed = total
    estimated = False
    orphans: list[OrphanedReference] = []
    for space, reference in listing.references.items():
        if not listing.deltas.get(space):
            orphans.append(OrphanedReference(reference.key, reference.size))
    for space, objs in listing.deltas.items():
        ref = listing.references.get(space)
        known = [originals[o.key] for o in objs if o.key in originals]
        fallback = int(statistics.median(known)) if known else (ref.size if ref else 0)
        for obj in objs:
            compressed += obj.size
            size = originals.get(obj.key)
            if size is None:
                size = fallback
                estimated = True
            total += size
        if ref is not None:
            compressed += ref.size
    saved = max(0, total - compressed)
    delta_count = sum(len(v) for v in listing.deltas.values())
    return BucketStats(
        bucket=bucket,
        mode=mode,
        object_count=listing.object_count,
        total_size=total,
        compressed_size=compressed,
        space_saved=saved,
        average_compression_ratio=saved / total if total else 0.0,
        delta_objects=delta_count,
        direct_objects=len(listing.direct),
        delta_spaces=len([s for s, v in listing.deltas.items() if v]),
        orphaned_references=tuple(sorted(orphans, key=lambda o: o.key)),
        estimated=estimated,
        partial=failed_heads > 0,
        failed_heads=failed_heads,
        heads_issued=heads_issued,
        computed_at=computed_at,
    )


def stats_document_key(mode: Mode) -> str:
    return f".deltaglider/stats_{mode}.json"


def fingerprint(listing: Listing) -> dict[str, int]:
    """What the in-bucket stats document is validated against."""
    return {"object_count": listing.object_count, "compressed_size": listing.stored_bytes}


#: Keys per listing range between the boundaries kept in the stats document.
RANGE_KEYS = 500
#: Page size for a ranged listing: its keys plus room for new ones.  S3 has no end key, so a
#: full 1000-key page would list every range twice over.
RANGE_PAGE = RANGE_KEYS + RANGE_KEYS // 5


def listing_boundaries(listing: Listing, per_range: int = RANGE_KEYS) -> list[str]:
    """Every ``per_range``-th stored key: split points for listing key ranges concurrently."""
    keys = sorted(
        [o.key for o in listing.direct]
        + [o.key for objs in listing.deltas.values() for o in objs]
        + [o.key for o in listing.references.values()]
    )
    return keys[per_range - 1 : -1 : per_range]

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeVar

from .spaces import REFERENCE_NAME, StoredKind, classify, name_of, space_of

T = TypeVar("T")
Mode = Literal["quick", "sampled", "detailed"]
MODES: tuple[Mode, ...] = ("quick", "sampled", "detailed")
#: Deltas HEADed per delta space in sampled mode ...
SAMPLE_PER_SPACE = 8
#: ... and in quick mode: a version's own size, which a space's reference does not show when it
#: is stored in compact form (the archive format's, several times smaller than the file)
QUICK_PER_SPACE = 1


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
    #: a space's later references (``reference-<n>.bin``), by space
    snapshots: dict[str, list[StoredObject]] = field(default_factory=dict)
    direct: list[StoredObject] = field(default_factory=list)

    def add(self, obj: StoredObject) -> None:
        kind, _ = classify(obj.key)
        if kind is StoredKind.DELTA:
            self.deltas.setdefault(space_of(obj.key), []).append(obj)
        elif kind is StoredKind.REFERENCE and name_of(obj.key) == REFERENCE_NAME:
            self.references[space_of(obj.key)] = obj
        elif kind is StoredKind.REFERENCE:
            self.snapshots.setdefault(space_of(obj.key), []).append(obj)
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
            + sum(o.size for o in self.all_references)
        )

    @property
    def all_references(self) -> list[StoredObject]:
        return [*self.references.values(), *(o for v in self.snapshots.values() for o in v)]

    def keys_to_head(self, mode: Mode) -> list[StoredObject]:
        """Deltas whose original size the mode reads: all, or a sample per space."""
        if mode == "detailed":
            return [o for v in self.deltas.values() for o in v]
        count = SAMPLE_PER_SPACE if mode == "sampled" else QUICK_PER_SPACE
        # evenly spread over each space's (sorted) versions
        return [o for v in self.deltas.values() for o in sample_evenly(v, count)]


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
    for reference in listing.all_references:
        if not listing.deltas.get(space_of(reference.key)):
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
        compressed += sum(o.size for o in listing.snapshots.get(space, []))
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
        + [o.key for o in listing.all_references]
    )
    return keys[per_range - 1 : -1 : per_range]


# --- what another delta format would store --------------------------------------------------


def sample_evenly(objects: Sequence[T], count: int) -> list[T]:
    """Up to ``count`` of ``objects``, spread over them (first and last included)."""
    if len(objects) <= count:
        return list(objects)
    if count <= 1:
        return list(objects[:count])
    step = (len(objects) - 1) / (count - 1)
    return [objects[round(i * step)] for i in range(count)]


@dataclass(frozen=True)
class SpaceEstimate:
    """One delta space: what it stores now, and what it would store in another delta format
    (its reference as that format writes a new space's reference, plus every object, those of
    the sample trial-encoded and the others projected by the sample's ratio)."""

    space: str
    objects: int
    stored_size: int
    estimated_size: int
    sampled: int
    #: the space's reference.bin now, and as the format would write it (``migrate`` stores it
    #: so, in place too)
    reference_size: int = 0
    estimated_reference_size: int = 0
    #: sampled objects the format would store another way (a vcdiff delta, a direct object)
    fell_back: int = 0
    #: why some of the sample could not be tried, if any could not
    note: str = ""

    @property
    def ratio(self) -> float:
        """How many times smaller the estimate is than what is stored (above 1: smaller)."""
        return self.stored_size / self.estimated_size if self.estimated_size else 0.0


@dataclass(frozen=True)
class FormatEstimate:
    bucket: str
    delta_format: str
    #: objects trial-encoded per space (at most)
    sample: int
    spaces: tuple[SpaceEstimate, ...]

    @property
    def stored_size(self) -> int:
        return sum(s.stored_size for s in self.spaces)

    @property
    def estimated_size(self) -> int:
        return sum(s.estimated_size for s in self.spaces)

    def as_dict(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "delta_format": self.delta_format,
            "sample": self.sample,
            "stored_size": self.stored_size,
            "estimated_size": self.estimated_size,
            "spaces": [{**asdict(s), "ratio": round(s.ratio, 3)} for s in self.spaces],
        }


def project_space(
    space: str,
    objects: Sequence[StoredObject],
    trials: Mapping[str, int],
    *,
    reference_now: int,
    reference_then: int,
    fell_back: int = 0,
    note: str = "",
) -> SpaceEstimate:
    """Combine the trial-encoded sizes (by stored key) of a sample of a space's ``objects``
    with their stored sizes: the others are taken to shrink or grow as the sample did."""
    tried = [o for o in objects if o.key in trials]
    before = sum(o.size for o in tried)
    after = sum(trials[o.key] for o in tried)
    scale = after / before if before else 1.0
    estimated = reference_then + sum(
        trials[o.key] if o.key in trials else round(o.size * scale) for o in objects
    )
    return SpaceEstimate(
        space=space,
        objects=len(objects),
        stored_size=reference_now + sum(o.size for o in objects),
        estimated_size=estimated,
        sampled=len(tried),
        reference_size=reference_now,
        estimated_reference_size=reference_then,
        fell_back=fell_back,
        note=note,
    )

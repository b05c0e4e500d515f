"""Sync planning (aws s3 sync semantics), pure: two listings in, a list of actions out.

Entries are keyed by their path relative to the sync roots.  S3 sizes are *logical* sizes
(``dg-file-size``), never the stored delta size, so a delta never looks "changed".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

#: S3 timestamps have one-second resolution; local ones do not.
TIMESTAMP_TOLERANCE = 1.0

Direction = Literal["upload", "download"]


@dataclass(frozen=True)
class SyncEntry:
    size: int
    mtime: float
    sha256: str | None = None


@dataclass
class SyncPlan:
    transfer: list[str] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)
    #: why each path is transferred: "new", "size", "newer", "timestamp", "checksum"
    reasons: dict[str, str] = field(default_factory=dict)


def _reason(
    src: SyncEntry,
    dst: SyncEntry,
    direction: Direction,
    *,
    size_only: bool,
    exact_timestamps: bool,
    checksum: bool,
) -> str | None:
    if src.size != dst.size:
        return "size"
    if checksum:
        if src.sha256 is None or dst.sha256 is None or src.sha256 != dst.sha256:
            return "checksum"
        return None
    if size_only:
        return None
    if exact_timestamps and direction == "download":
        return "timestamp" if abs(src.mtime - dst.mtime) > TIMESTAMP_TOLERANCE else None
    if direction == "download":
        # aws-cli's rule: a download sets the local time to the object's, so a local file
        # *newer* than its object was changed locally and is replaced; an older one is kept.
        return "newer" if dst.mtime - src.mtime > TIMESTAMP_TOLERANCE else None
    return "newer" if src.mtime - dst.mtime > TIMESTAMP_TOLERANCE else None


def plan_sync(
    source: Mapping[str, SyncEntry],
    destination: Mapping[str, SyncEntry],
    direction: Direction,
    *,
    delete: bool = False,
    size_only: bool = False,
    exact_timestamps: bool = False,
    checksum: bool = False,
) -> SyncPlan:
    """What to copy (missing or changed at the destination) and, with ``delete``, what to remove.

    Internal objects (references, deltas' stored names, ``.deltaglider/``) never reach this
    function: listings are logical, so ``--delete`` cannot remove a ``reference.bin``.
    """
    plan = SyncPlan()
    for path in sorted(source):
        src = source[path]
        dst = destination.get(path)
        if dst is None:
            reason: str | None = "new"
        else:
            reason = _reason(
                src, dst, direction, size_only=size_only, exact_timestamps=exact_timestamps,
                checksum=checksum,
            )  # fmt: skip
        if reason:
            plan.transfer.append(path)
            plan.reasons[path] = reason
    if delete:
        plan.delete = sorted(p for p in destination if p not in source)
    return plan

"""What the HEAD of each delta said: its logical size, SHA-256 and format.

One cache per client serves both listings (logical ``Size`` and ``ETag``) and stats (original
sizes). A delta never changes in place, so an entry holds while the listing shows the stored ETag
it was read for; a different ETag is a miss.
"""

from __future__ import annotations

from dataclasses import dataclass

from .._core.metadata import parse_metadata
from .._storage.port import ObjectHead

#: deltas a client remembers (about 300 bytes each); past that the oldest are forgotten,
#: which costs a HEAD again, never a wrong answer
KEPT = 500_000


@dataclass(frozen=True, slots=True)
class DeltaHead:
    etag: str
    size: int | None
    sha256: str | None = None
    delta_format: str | None = None
    note: str | None = None
    #: only ``size`` is known (from the stats document or a cluster's HEADs), not the rest
    size_only: bool = False

    @classmethod
    def read(cls, head: ObjectHead) -> DeltaHead:
        meta = parse_metadata(head.metadata, head.key)
        return cls(head.etag, meta.file_size, meta.file_sha256, meta.delta_format, meta.format_note)


class DeltaHeads:
    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._entries: dict[tuple[str, str], DeltaHead] = {}

    def get(self, bucket: str, key: str, etag: str, *, whole: bool = False) -> DeltaHead | None:
        """What is known of the delta ``key`` as stored with ``etag`` (``whole``: more than
        its size)."""
        found = self._entries.get((bucket, key))
        # some servers quote ETags in HEAD answers and not in listings
        if found is None or found.etag.strip('"') != etag.strip('"'):
            return None
        if whole and found.size_only:
            return None
        return found

    def remember(self, bucket: str, key: str, head: DeltaHead) -> None:
        entries = self._entries
        entries.pop((bucket, key), None)
        if len(entries) >= self._kept:
            del entries[next(iter(entries))]
        entries[(bucket, key)] = head

    def remember_size(self, bucket: str, key: str, etag: str, size: int) -> None:
        """A size learnt without the HEAD's other fields; never overrides a whole entry."""
        if self.get(bucket, key, etag) is None:
            self.remember(bucket, key, DeltaHead(etag, size, size_only=True))

    def clear(self) -> None:
        self._entries.clear()

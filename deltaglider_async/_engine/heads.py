"""What the HEAD of each delta said: its logical size, SHA-256 and format.

One cache per client serves both listings (logical ``Size`` and ``ETag``) and stats (original
sizes). A delta never changes in place, so an entry holds while the listing shows the stored ETag
it was read for; a different ETag is a miss.

With a :class:`Notes` store (the reference cache's directory), each bucket's entries are loaded
the first time a client needs them and written back when it closes, so a new process (a second
``ls``) does not HEAD what an earlier one read. Entries on disk are checked like the others: by
stored ETag, so one that went stale is only a miss.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import astuple, dataclass
from typing import Protocol

import anyio

from .._core.metadata import parse_metadata
from .._storage.port import ObjectHead

#: deltas a client remembers (about 300 bytes each); past that the oldest are forgotten,
#: which costs a HEAD again, never a wrong answer
KEPT = 500_000
#: entries of one bucket written to disk at most (about 150 bytes each there)
PERSISTED = 200_000
_NOTE_VERSION = 1


class Notes(Protocol):
    """Where small documents persist between processes (``ReferenceCache`` is one)."""

    def read_note(self, name: str) -> bytes | None: ...
    def write_note(self, name: str, data: bytes) -> None: ...


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
        self._notes: Notes | None = None
        self._namespace = ""
        self._loaded: set[str] = set()
        self._changed: set[str] = set()

    def persist(self, notes: Notes, namespace: str) -> None:
        """Keep entries in ``notes`` between processes, apart for each ``namespace`` (the
        endpoint: buckets of different servers may share a name)."""
        self._notes, self._namespace = notes, namespace

    def _note_name(self, bucket: str) -> str:
        digest = hashlib.sha256(f"{self._namespace}\n{bucket}".encode()).hexdigest()
        return f"heads-{digest[:40]}"

    async def load(self, bucket: str) -> None:
        """Entries of ``bucket`` an earlier process wrote (once per client and bucket)."""
        notes = self._notes
        if notes is None or bucket in self._loaded:
            return
        self._loaded.add(bucket)
        raw = await anyio.to_thread.run_sync(notes.read_note, self._note_name(bucket))
        try:
            document = json.loads(raw) if raw else {}
            if document.get("version") != _NOTE_VERSION or document.get("bucket") != bucket:
                return
            for key, fields in document["deltas"].items():
                if (bucket, key) not in self._entries:
                    self.remember(bucket, key, DeltaHead(*fields), changed=False)
        except (ValueError, TypeError, KeyError, AttributeError):
            return  # another version's or a damaged note: only a missed shortcut

    async def save(self) -> None:
        """Write back the entries of every bucket that learnt some since it was loaded."""
        notes, buckets = self._notes, self._changed
        self._changed = set()
        if notes is None or not buckets:
            return
        for bucket in buckets:
            await self.load(bucket)  # learnt without a listing (a cluster's HEADs): keep the rest
        documents: dict[str, dict[str, list[object]]] = {bucket: {} for bucket in buckets}
        for (bucket, key), head in reversed(self._entries.items()):  # newest first
            kept = documents.get(bucket)
            if kept is not None and not head.size_only and len(kept) < PERSISTED:
                kept[key] = list(astuple(head))[:5]
        for bucket, deltas in documents.items():
            data = json.dumps({"version": _NOTE_VERSION, "bucket": bucket, "deltas": deltas})
            await anyio.to_thread.run_sync(notes.write_note, self._note_name(bucket), data.encode())

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

    def remember(self, bucket: str, key: str, head: DeltaHead, *, changed: bool = True) -> None:
        if changed and not head.size_only:
            self._changed.add(bucket)
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
        self._changed.clear()
        self._loaded.clear()

"""The put pipeline: a local file becomes a delta against its space's reference, or a direct object.

Read top to bottom: :meth:`PutPipeline.store` validates and routes; :meth:`_put_delta` finds or
creates the reference (``election.py``), encodes, stores the delta and checks that its reference
survived a concurrent delete; :meth:`_put_direct` stores the bytes as they are; both then remove
an older copy of the other kind (``_core/twins.py``).  docs/reliability.md says what holds when
writers and deleters race.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from .._boto import CONTENT_HEADERS, DEFAULT_CONTENT_TYPE, REFERENCE_ATTRIBUTES
from .._core.metadata import (
    delta_metadata,
    direct_metadata,
    escape_user_metadata,
    format_note_metadata,
    logical_etag,
    timestamp,
    user_metadata,
)
from .._core.policy import delta_budget, delta_ratio, keep_delta, parse_max_ratio
from .._core.spaces import (
    DELTA_SUFFIX,
    MAX_KEY_BYTES,
    SNAPSHOT_PREFIX,
    S3Url,
    check_writable_key,
    delta_key,
    fits_delta_layout,
    is_eligible,
    name_of,
    parse_s3_url,
    reference_key,
    reference_number,
    snapshot_key,
    space_of,
    upload_key,
)
from .._core.twins import newer_copy
from .._engine.codec import EncodeResult, unlink_quietly
from .._exceptions import InvalidArgumentError, InvalidRequest
from .._formats import DEFAULT_FORMAT, FORMATS, DeltaFormat
from .._localfs import FileChangedError, FileDigest, read_snapshot
from .._models import CompressionEstimate, UploadSummary
from .._storage.port import ObjectHead, Progress
from .._tasks import task_group
from .context import Context, Resolved, Stage, copy_rank, reference_sha
from .election import Election, SpaceStart
from .get import GetPipeline

log = logging.getLogger("deltaglider_async")

#: Attempts at a delta put whose reference a concurrent delete keeps collecting.
_GC_RACE_ROUNDS = 3
#: Older references a file that misfits the newest is tried against before it becomes one
#: (and snapshot numbers it tries to take when concurrent puts take them first).
_OLDER_TRIES = 3


@dataclass(frozen=True)
class _Put:
    """What one put stores, wherever it ends up (delta or direct)."""

    bucket: str
    key: str
    extra: Mapping[str, str]
    #: PutObject parameters for the stored object (content headers, storage class, SSE…)
    attributes: Mapping[str, Any]
    ratio_limit: float
    progress: Progress | None


def local_to_key(path: str | os.PathLike[str], url: str) -> tuple[Path, S3Url, str]:
    """The local file, the parsed URL and the logical key it goes to (trailing / = directory)."""
    local = Path(path)
    if not local.is_file():
        raise InvalidArgumentError(f"{local}: no such file")
    target = parse_s3_url(url)
    key = upload_key(target, local.name)
    check_writable_key(key)
    return local, target, key


class PutPipeline(Stage):
    def __init__(self, ctx: Context, get: GetPipeline) -> None:
        super().__init__(ctx)
        self._get = get
        self._election = Election(ctx)

    async def copy(
        self,
        obj: Resolved,
        bucket: str,
        key: str,
        *,
        metadata: Mapping[str, str] | None = None,
        attributes: Mapping[str, Any] | None = None,
        reencode: bool = False,
    ) -> UploadSummary:
        """Store the logical bytes of ``obj`` at ``key``, encoded for the destination's space
        (a copy, a migration, or a delta rebuilt against a new reference), with ``attributes``.
        ``metadata=None`` keeps the source's user metadata and content headers (S3's
        ``MetadataDirective="COPY"``); a mapping replaces them all. A copy onto itself that
        changes nothing is refused as S3 refuses it, unless it is to ``reencode`` (migrate)."""
        unchanged = metadata is None and not attributes
        if (obj.bucket, obj.key) == (bucket, key) and unchanged and not reencode:
            raise InvalidRequest(
                f"s3://{bucket}/{key}: a copy onto itself must change its metadata, storage"
                " class or encryption (S3's rule)"
            )
        kept: dict[str, Any] = {}
        if metadata is None:
            kept = {k: v for k, v in obj.head.attributes.items() if k in CONTENT_HEADERS}
            if obj.head.content_type:
                kept["ContentType"] = obj.head.content_type
        spool = self._temp_path(".copy")
        try:
            fd = os.open(spool, os.O_WRONLY | os.O_TRUNC)
            try:
                await self._get.write_object(obj, fd, None)
            finally:
                os.close(fd)
            return await self.store(
                bucket,
                key,
                spool,
                user_metadata=user_metadata(obj.head.metadata) if metadata is None else metadata,
                attributes={**kept, **(attributes or {})},
                max_ratio=None,
                no_delta=False,
            )
        finally:
            unlink_quietly(spool)

    async def store(
        self,
        bucket: str,
        key: str,
        path: Path,
        *,
        user_metadata: Mapping[str, str] | None,
        attributes: Mapping[str, Any],
        max_ratio: float | None,
        no_delta: bool,
        progress: Progress | None = None,
        space_start: SpaceStart | None = None,
        leads: bool = False,
    ) -> UploadSummary:
        """Store ``path`` as a delta against its space's reference where that is eligible and
        worth it, else directly.  ``space_start`` coordinates a bulk upload: the leader announces
        the reference it creates, the others encode against it early."""
        check_writable_key(key)
        ratio_limit = self._ctx.max_ratio if max_ratio is None else parse_max_ratio(max_ratio)
        await self._require_bucket(bucket)
        self._ctx.stats.invalidate(bucket)
        extra = escape_user_metadata(user_metadata or {})
        # S3's type for an object stored without one, set explicitly: some servers guess one
        # from the bytes or the stored name (``.delta``), which is not the logical object's
        attributes = {"ContentType": DEFAULT_CONTENT_TYPE, **attributes}
        put = _Put(bucket, key, extra, attributes, ratio_limit, progress)
        if no_delta:
            return await self._put_direct(put, path, "delta disabled")
        if not is_eligible(key, self._extensions):
            return await self._put_direct(put, path, "")
        if not fits_delta_layout(key):
            return await self._put_direct(put, path, "key too long for its .delta name")
        async with self._stable_copy(path) as stable:
            if stable.stat().st_size == 0:
                return await self._put_direct(put, stable, "empty file")
            for attempt in range(_GC_RACE_ROUNDS):
                first = attempt == 0
                stored = await self._put_delta(
                    put, stable, space_start if first else None, leads and first
                )
                if stored is not None and (first or stored.stored_as == "delta"):
                    return stored
                if stored is not None:
                    break
            else:  # raced by reference GC every time: a direct copy needs no reference
                stored = await self._put_direct(put, stable, "its reference kept changing")
            # An earlier round left a delta whose reference is gone: it must not stay.
            await self._storage.delete(bucket, delta_key(key))
            return stored

    @contextlib.asynccontextmanager
    async def _stable_copy(self, path: Path) -> AsyncIterator[Path]:
        """A file that holds still for the several reads a delta put makes (hash, reference,
        encode): small files are copied aside in one read; large ones are read in place and
        every part sent is checked against the read that hashed it."""
        limit = self._transfer.multipart_threshold
        if path.stat().st_size >= limit:
            yield path
            return
        copy = self._temp_path(Path(path.name).suffix)
        try:
            async with self._codec.memory.reserve(min(path.stat().st_size, limit), str(path)):
                data = await anyio.to_thread.run_sync(read_snapshot, path, limit)
                await anyio.Path(copy).write_bytes(data)
                del data  # the generator's frame lives on while the copy is in use
            yield copy
        finally:
            unlink_quietly(copy)

    async def _put_delta(
        self, put: _Put, path: Path, space_start: SpaceStart | None, leads: bool
    ) -> UploadSummary | None:
        """One attempt at storing ``path`` as a delta; None when the reference it was encoded
        against is gone once the delta landed (a concurrent GC): the caller tries again."""
        bucket, key = put.bucket, put.key
        space = space_of(key)
        ref_key = reference_key(space)
        budget = delta_budget(path.stat().st_size, put.ratio_limit)
        delta_path = self._temp_path(DELTA_SUFFIX)
        reference_created = False
        reference_size = 0  # what the reference this put created takes in the bucket
        ref_sha: str | None
        try:
            early = None
            if space_start is not None and not leads:
                early = await self._election.encode_early(
                    bucket, ref_key, space_start, path, delta_path, budget
                )
            if early is not None:
                ref_sha, result = early
            else:
                references, ref_key, ref_head = await self._newest_reference(bucket, space)
                if ref_head is None:
                    ref_head, reference_created = await self._create_reference(
                        put, ref_key, path, space_start if leads else None
                    )
                    reference_size = ref_head.size if reference_created else 0
                ref_sha = reference_sha(ref_head, ref_key)
                if leads and space_start is not None:
                    space_start.settle(ref_sha)
                if ref_sha is None:
                    return await self._put_direct(
                        put, path, f"{ref_key} is not a deltaglider reference"
                    )
                result = await self._encode(
                    put, ref_key, ref_head, ref_sha, reference_created, path, delta_path, budget
                )
            snapshot = ""
            if not reference_created and not self._fits(result, put.ratio_limit):
                reason = self._over_ratio(result, put.ratio_limit)
                if early is not None:
                    references = await self._references(bucket, space)
                refit = await self._refit(put, references, ref_key, path, delta_path, budget)
                if refit is None:
                    return await self._put_direct(put, path, reason)
                ref_key, ref_sha, result, created_head = refit
                reference_created = created_head is not None
                if created_head is not None:
                    reference_size = created_head.size
                    snapshot = f"new reference {name_of(ref_key)} ({reason} against the others)"
            meta = delta_metadata(
                tool=self._ctx.tool,
                original_name=name_of(key),
                sha256=result.sha256,
                size=result.size,
                created_at=timestamp(datetime.now(UTC)),
                ref_key=ref_key,
                ref_sha256=ref_sha,
                delta_size=result.delta_size,
                zero_diff=reference_created,
                format_fields={
                    **FORMATS[result.format_name].metadata(name_of(key)),
                    **format_note_metadata(result.note),
                },
            )

            async def send() -> None:
                await self._storage.put_file(
                    bucket,
                    delta_key(key),
                    delta_path,
                    metadata={**put.extra, **meta},
                    attributes=put.attributes,
                )

            await send()
            kept = False

            async def confirm() -> None:
                nonlocal kept
                kept = await self._reference_is(bucket, ref_key, ref_sha)

            async with task_group() as tg:
                tg.start_soon(confirm)
                tg.start_soon(self._drop_twin, bucket, key, True, send)
        finally:
            unlink_quietly(delta_path)
        if not kept:
            log.warning(
                "s3://%s/%s: its reference was collected while the delta was stored; again",
                bucket,
                key,
            )
            return None
        log.info(
            "s3://%s/%s: stored as delta, %d of %d bytes",
            bucket,
            key,
            result.delta_size,
            result.size,
        )
        if put.progress:
            put.progress(result.size)
        return UploadSummary(
            bucket=bucket,
            key=key,
            original_size=result.size,
            # The first file of a space also pays for its reference (as stored: compact, maybe)
            stored_size=result.delta_size + reference_size,
            stored_as="delta",
            sha256=result.sha256,
            reference_created=reference_created,
            reason=snapshot or result.note,
            delta_format=result.format_name,
            etag=logical_etag(result.sha256),
            reference_key=ref_key,
            reference_size=reference_size,
        )

    async def _refit(
        self,
        put: _Put,
        references: list[str],
        ref_key: str,
        path: Path,
        delta_path: Path,
        budget: int | None,
    ) -> tuple[str, str, EncodeResult, ObjectHead | None] | None:
        """A base for a file that misfits ``ref_key``: a few older references (two products
        released into one space take turns), else a new snapshot made from the file, which
        stored whole would be a reference nothing uses (a compact one costs less) while later
        versions delta against it.  Its key, SHA-256, the delta and its HEAD if it is new; None:
        store the file whole (the default format, or concurrent puts of other files took the
        next few snapshot numbers)."""
        older = references[references.index(ref_key) + 1 :] if ref_key in references else []
        for candidate in older[:_OLDER_TRIES]:
            head = await self._storage.head(put.bucket, candidate)
            sha = reference_sha(head, candidate) if head is not None else None
            if head is None or sha is None:
                continue
            result = await self._encode_against(
                put.bucket, candidate, head.etag, sha, path, delta_path, budget
            )
            if self._fits(result, put.ratio_limit):
                return candidate, sha, result, None
        newest = references[0]
        for _ in range(_OLDER_TRIES):  # concurrent puts of other products take numbers too
            snapshot = self._next_snapshot(newest)
            if not snapshot:
                return None
            head, created = await self._create_reference(put, snapshot, path, None)
            sha = reference_sha(head, snapshot)
            if sha is None:
                return None
            result = await self._encode(put, snapshot, head, sha, created, path, delta_path, budget)
            if created or self._fits(result, put.ratio_limit):
                return snapshot, sha, result, head if created else None
            newest = snapshot
        return None

    async def _references(self, bucket: str, space: str) -> list[str]:
        """The references a new delta of ``space`` may be taken against, newest first: the
        snapshots a listing shows, where the format makes them, then ``reference.bin``."""
        numbers: set[int] = set()
        token: str | None = None
        while self._ctx.delta_format.takes_snapshots:
            page = await self._storage.list_page(
                bucket, prefix=space + SNAPSHOT_PREFIX, delimiter="/", token=token
            )
            numbers.update(
                n for entry in page.objects if (n := reference_number(entry["Key"])) is not None
            )
            if not page.truncated or not page.next_token:
                break
            token = page.next_token
        return [snapshot_key(space, n) for n in sorted(numbers, reverse=True)] + [
            reference_key(space)
        ]

    async def _newest_reference(
        self, bucket: str, space: str
    ) -> tuple[list[str], str, ObjectHead | None]:
        """The space's references (newest first) and the newest one still there, with its HEAD
        (``reference.bin`` and None: the space has none).  The listing and the HEAD of
        ``reference.bin`` go together: most spaces have no snapshot."""
        first_head: ObjectHead | None = None

        async def head_first() -> None:
            nonlocal first_head
            first_head = await self._storage.head(bucket, reference_key(space))

        async with task_group() as tg:
            tg.start_soon(head_first)
            references = await self._references(bucket, space)
        for ref_key in references[:-1]:
            head = await self._storage.head(bucket, ref_key)
            if head is not None:
                return references, ref_key, head
        return references, references[-1], first_head

    @staticmethod
    def _fits(result: EncodeResult, ratio_limit: float) -> bool:
        return not result.over_budget and keep_delta(result.delta_size, result.size, ratio_limit)

    def _next_snapshot(self, ref_key: str) -> str:
        """The key of the reference after ``ref_key`` ("" where the format makes none)."""
        number = reference_number(ref_key)
        if not self._ctx.delta_format.takes_snapshots or number is None:
            return ""
        key = snapshot_key(space_of(ref_key), number + 1)
        return key if len(key.encode("utf-8")) <= MAX_KEY_BYTES else ""

    async def _create_reference(
        self, put: _Put, ref_key: str, path: Path, announce: SpaceStart | None
    ) -> tuple[ObjectHead, bool]:
        return await self._election.create(
            put.bucket,
            ref_key,
            put.key,
            path,
            announce,
            attributes={k: v for k, v in put.attributes.items() if k in REFERENCE_ATTRIBUTES},
        )

    async def _encode(
        self,
        put: _Put,
        ref_key: str,
        ref_head: ObjectHead,
        ref_sha: str,
        reference_created: bool,
        path: Path,
        delta_path: Path,
        budget: int | None,
    ) -> EncodeResult:
        """The delta of ``path`` against the reference (a zero-diff one against a reference
        just made from it, encoded from the local file)."""
        if not reference_created:
            return await self._encode_against(
                put.bucket, ref_key, ref_head.etag, ref_sha, path, delta_path, budget
            )
        result = await self._ctx.delta_format.encode(self._codec, path, path, delta_path, None)
        if result.sha256 != ref_sha:
            raise FileChangedError(path)
        return result

    @staticmethod
    def _over_ratio(result: EncodeResult, ratio_limit: float) -> str:
        if result.over_budget:
            return f"delta exceeds max ratio {ratio_limit:.2f}"
        ratio = delta_ratio(result.delta_size, result.size)
        return f"delta ratio {ratio:.2f} > max {ratio_limit:.2f}"

    async def _drop_twin(
        self, bucket: str, key: str, ours_is_delta: bool, send: Callable[[], Awaitable[None]]
    ) -> None:
        """After storing our copy of ``key``, delete the other kind's copy if it is older.

        A writer of the other kind may be doing the same to ours at this moment, and a delete
        may hit a copy stored after our HEAD; so once we deleted, we look at our own copy again
        and store it once more if it went (``_core/twins.py`` has the argument).
        """
        ours, other = (delta_key(key), key) if ours_is_delta else (key, delta_key(key))
        theirs = await self._storage.head(bucket, other)
        if theirs is None:
            return
        mine = await self._storage.head(bucket, ours)
        if mine is None:
            return  # ours was replaced or deleted meanwhile: not ours to clean up
        copies = {ours: copy_rank(mine), other: copy_rank(theirs)}
        if newer_copy(copies[delta_key(key)], copies[key]) != (
            "delta" if ours_is_delta else "direct"
        ):
            return  # theirs is newer: a reader serves it, and its writer removes ours
        await self._storage.delete(bucket, other)
        if await self._storage.head(bucket, ours) is None:
            log.info(
                "s3://%s/%s: a concurrent writer removed our copy; storing it again", bucket, key
            )
            await send()

    async def _put_direct(self, put: _Put, path: Path, reason: str) -> UploadSummary:
        """Store ``path`` as it is, hashing exactly the bytes sent: a small file is read once
        (and held, under the memory budget, until it is sent); a large one is hashed, then
        every part sent is checked against that read."""
        size = path.stat().st_size
        if size >= self._transfer.multipart_threshold:
            return await self._send_direct(put, path, reason)
        async with self._codec.memory.reserve(size, str(path)):
            return await self._send_direct(put, path, reason)

    async def _send_direct(self, put: _Put, path: Path, reason: str) -> UploadSummary:
        threshold = self._transfer.multipart_threshold
        size = path.stat().st_size
        created_at = timestamp(datetime.now(UTC))
        data: bytes | None = None
        digest: FileDigest | None = None
        if size < threshold:
            data = await anyio.to_thread.run_sync(read_snapshot, path, threshold)
            sha256, size = hashlib.sha256(data).hexdigest(), len(data)
        else:
            digest = await self._codec.hash_file(path, self._transfer.part_size_for(size))
            sha256, size = digest.sha256, digest.size
        meta = {
            **put.extra,
            **direct_metadata(
                tool=self._ctx.tool,
                original_name=name_of(put.key),
                sha256=sha256,
                size=size,
                created_at=created_at,
            ),
            # A put asked for another delta format records why it stored the file directly.
            **(
                format_note_metadata(reason or "not delta-eligible")
                if self._ctx.delta_format.name != DEFAULT_FORMAT
                else {}
            ),
        }

        etag = ""

        async def send(progress: Progress | None = None) -> None:
            nonlocal etag
            if data is not None:
                etag = await self._storage.put_bytes(
                    put.bucket, put.key, data, metadata=meta, attributes=put.attributes
                )
                if progress:
                    progress(len(data))
            else:
                etag = await self._storage.put_file(
                    put.bucket,
                    put.key,
                    path,
                    metadata=meta,
                    attributes=put.attributes,
                    progress=progress,
                    verify=digest,
                )

        await send(put.progress)
        if is_eligible(put.key, self._extensions) and fits_delta_layout(put.key):
            await self._drop_twin(put.bucket, put.key, False, send)
        log.info(
            "s3://%s/%s: stored directly, %d bytes%s",
            put.bucket,
            put.key,
            size,
            f" ({reason})" if reason else "",
        )
        return UploadSummary(
            bucket=put.bucket,
            key=put.key,
            original_size=size,
            stored_size=size,
            stored_as="direct",
            sha256=sha256,
            reason=reason,
            etag=etag,
        )

    async def estimate(
        self, path: str | os.PathLike[str], url: str, delta_format: DeltaFormat | None = None
    ) -> CompressionEstimate:
        """Trial-encode a local file against the newest reference of the delta space ``url``
        names (the one a put tries first), in ``delta_format`` (the client's)."""
        local, target, key = local_to_key(path, url)
        size = local.stat().st_size
        if not is_eligible(key, self._extensions):
            return CompressionEstimate(size, size, 1.0, "direct", None, "not delta-eligible")
        _, _, head = await self._newest_reference(target.bucket, space_of(key))
        if head is None:
            return CompressionEstimate(
                size,
                size,
                1.0,
                "delta",
                None,
                "first file of its delta space: becomes the reference",
            )
        return await self.trial(local, target.bucket, head, delta_format)

    async def reform_reference(self, bucket: str, space: str) -> bool:
        """Store the space's ``reference.bin`` in the form this client's delta format writes a
        new space's (archive: compact, when smaller; vcdiff: the file itself, which deltaglider
        6.2 needs), as ``migrate`` leaves a space it converted in place.  Readers of either
        form get the same file (same SHA-256).  False when it already is, or there is none."""
        ref_key = reference_key(space)
        head = await self._storage.head(bucket, ref_key)
        if head is None or reference_sha(head, ref_key) is None:
            return False
        writer = self._ctx.delta_format
        form_now = head.metadata.get("dg-reference-form", DEFAULT_FORMAT)
        if form_now == writer.name:
            return False
        local, body = self._temp_path(".ref"), self._temp_path(".ref")
        try:
            form = await self._reference_as(bucket, head, writer, local, body)
            if form is None and form_now == DEFAULT_FORMAT:
                return False  # stored as the file itself already: what the format would write
            again = await self._storage.head(bucket, ref_key)
            if again is None or again.etag != head.etag:
                return False  # deleted or replaced meanwhile: never bring it back
            metadata = {k: v for k, v in head.metadata.items() if k != "dg-reference-form"}
            attributes = {k: v for k, v in head.attributes.items() if k in REFERENCE_ATTRIBUTES}
            await self._storage.put_file(
                bucket,
                ref_key,
                body if form is not None else local,
                metadata={**metadata, **(form or {})},
                attributes=attributes,
            )
            self._ctx.stats.invalidate(bucket)
            log.info("s3://%s/%s stored again as %s", bucket, ref_key, writer.name)
            return True
        finally:
            unlink_quietly(local)
            unlink_quietly(body)

    async def trial(
        self, local: Path, bucket: str, reference: ObjectHead, delta_format: DeltaFormat | None
    ) -> CompressionEstimate:
        """What a put of ``local`` against the space's ``reference`` would store."""
        size = local.stat().st_size
        ref_key = reference.key
        ref_sha = reference_sha(reference, ref_key)
        if ref_sha is None:  # what a put would do too
            reason = f"{ref_key} is not a deltaglider reference"
            return CompressionEstimate(size, size, 1.0, "direct", None, reason)
        delta_path = self._temp_path(DELTA_SUFFIX)
        try:
            result = await self._encode_against(
                bucket, ref_key, reference.etag, ref_sha, local, delta_path, None, delta_format
            )
        finally:
            unlink_quietly(delta_path)
        ratio = delta_ratio(result.delta_size, size)
        keep = keep_delta(result.delta_size, size, self._ctx.max_ratio)
        return CompressionEstimate(
            original_size=size,
            estimated_size=result.delta_size if keep else size,
            ratio=ratio,
            would_store_as="delta" if keep else "direct",
            reference_key=ref_key,
            reason=result.note
            if keep
            else f"delta ratio {ratio:.2f} > max {self._ctx.max_ratio:.2f}",
            delta_format=result.format_name if keep else "",
        )

"""The delete pipeline: logical keys go with both their stored forms, in batched DeleteObjects,
and a space's reference goes with its last delta, without stranding a delta stored meanwhile
(the five steps of :meth:`DeletePipeline._collect_reference`, docs/reliability.md)."""

from __future__ import annotations

import logging
import os
import uuid

import anyio

from .._core.metadata import MetaKind, parse_metadata
from .._core.spaces import (
    INTERNAL_PREFIX,
    StoredKind,
    check_bucket,
    check_writable_key,
    classify,
    delta_key,
    is_eligible,
    reference_number,
    space_of,
)
from .._engine.codec import unlink_quietly
from .._exceptions import (
    BucketNotFoundError,
    ConflictError,
    DeltaGliderError,
    NoSuchKey,
    ReferenceInUseError,
    StorageError,
)
from .._formats import reference_reader
from .._localfs import write_all
from .._tasks import task_group
from .context import Context, Resolved, Stage, iter_file, reference_sha
from .get import GetPipeline
from .put import PutPipeline

log = logging.getLogger("deltaglider_async")


class DeletePipeline(Stage):
    def __init__(self, ctx: Context, get: GetPipeline, put: PutPipeline) -> None:
        super().__init__(ctx)
        self._get = get
        self._put = put

    async def delete_one(self, bucket: str, key: str, *, force: bool = False) -> Resolved | None:
        """Delete a logical object (None: there was none, as S3 a missing key is no error; or
        ``key`` named a ``reference.bin``, deleted only when no delta uses it, or with
        ``force``)."""
        check_bucket(bucket)
        self._ctx.stats.invalidate(bucket)
        if key.endswith("/") and key.strip("/"):
            # a folder marker (as consoles create them): only ever stored as it is
            check_writable_key(key[:-1])
            await self._storage.delete(bucket, key)
            return None
        if reference_number(key) is not None:
            check_writable_key(space_of(key) + "x")
            await self._delete_reference(bucket, key, force=force)
            return None
        check_writable_key(classify(key)[1] or key)
        try:
            obj = await self._get.resolve(bucket, key)
        except NoSuchKey:
            return None
        await self._delete_logical(obj)
        if obj.meta.kind is MetaKind.DELTA:
            await self._collect_reference(bucket, space_of(obj.key))
        return obj

    async def delete_many(
        self, bucket: str, keys: list[str]
    ) -> tuple[list[str], list[tuple[str, DeltaGliderError]]]:
        """Delete logical keys: resolved concurrently, deleted in batches of 1,000 stored keys,
        then the references of the spaces that lost their last delta.  Returns the keys deleted
        (a missing key counts, as in S3) and the per-key errors; a missing bucket raises."""
        check_bucket(bucket)
        self._ctx.stats.invalidate(bucket)
        found: dict[str, Resolved | None] = {}
        errors: list[tuple[str, DeltaGliderError]] = []
        limiter = anyio.CapacityLimiter(self._transfer.max_files * 4)

        async def resolve(key: str) -> None:
            async with limiter:
                try:
                    check_writable_key(classify(key)[1] or key)
                    found[key] = await self._get.resolve(bucket, key)
                except NoSuchKey:
                    found[key] = None
                except BucketNotFoundError:
                    raise
                except DeltaGliderError as exc:
                    errors.append((key, exc))

        async with task_group() as tg:
            for key in keys:
                tg.start_soon(resolve, key)
        stored = [form for obj in found.values() if obj for form in self._stored_forms(obj)]
        failed = {f.get("Key", ""): f for f in await self._storage.delete_many(bucket, stored)}
        deleted: list[str] = []
        spaces: set[str] = set()
        for key in keys:
            if key not in found:
                continue
            obj = found[key]
            if obj is None:
                deleted.append(key)
                continue
            failure = failed.get(obj.stored_key)
            if failure is not None:
                message = failure.get("Message") or failure.get("Code", "delete failed")
                errors.append((key, StorageError(f"s3://{bucket}/{obj.stored_key}: {message}")))
                continue
            deleted.append(key)
            if obj.meta.kind is MetaKind.DELTA:
                spaces.add(space_of(obj.key))
        for space in sorted(spaces):
            await self._collect_reference(bucket, space)
        return deleted, errors

    def _stored_forms(self, obj: Resolved) -> list[str]:
        """The stored key served, and the other kind's copy where there can be one."""
        if not (is_eligible(obj.key, self._extensions) or obj.meta.kind is MetaKind.DELTA):
            return [obj.stored_key]
        twin = obj.key if obj.stored_key != obj.key else delta_key(obj.key)
        return [obj.stored_key, twin]

    async def _delete_logical(self, obj: Resolved) -> None:
        """Both stored forms of the key go: the one served and a twin of the other kind."""
        for stored in self._stored_forms(obj):
            await self._storage.delete(obj.bucket, stored)

    async def _list_space(self, bucket: str, space: str) -> tuple[list[str], list[str]]:
        """The deltas directly in ``space``, and the references (``reference.bin`` and its
        snapshots) the listing showed, newest first."""
        deltas: list[str] = []
        references: list[tuple[int, str]] = []
        token: str | None = None
        while True:
            page = await self._storage.list_page(bucket, prefix=space, delimiter="/", token=token)
            for entry in page.objects:
                key = entry["Key"]
                if space_of(key) != space:
                    continue
                kind, _ = classify(key)
                if kind is StoredKind.DELTA:
                    deltas.append(key)
                elif (number := reference_number(key)) is not None:
                    references.append((number, key))
            if not page.truncated or not page.next_token:
                return deltas, [key for _, key in sorted(references, reverse=True)]
            token = page.next_token

    async def _collect_reference(self, bucket: str, space: str) -> None:
        """Delete the space's references once no delta uses them, without stranding a delta
        that a concurrent writer stores meanwhile (docs/reliability.md), one by one:

        1. one listing of the space shows the reference and no delta (the reference must be in
           that very listing: a server that aliases key spellings cannot make us collect the
           reference of another space);
        2. the reference is copied aside, server-side, to a hidden key;
        3. the reference is deleted;
        4. a second listing: deltas that landed meanwhile get the reference back (or, if a new
           first writer already made another one, are stored again against it);
        5. the copy aside is deleted.
        Writers check the reference after storing their delta and store again if it is gone.
        """
        deltas, references = await self._list_space(bucket, space)
        for ref_key in references:
            if deltas:
                return
            deltas = await self._collect_one(bucket, space, ref_key)

    async def collect_unused_snapshots(self, bucket: str, space: str) -> list[str]:
        """Delete the snapshots (``reference-<n>.bin``) of ``space`` that no delta names, as a
        space converted to the default format leaves them; the keys deleted.  Costs a HEAD of
        every delta in the space, so only ``migrate`` asks for it."""
        deltas, references = await self._list_space(bucket, space)
        snapshots = [key for key in references if reference_number(key) != 1]
        if not snapshots:
            return []
        named: set[str] = set()
        limiter = anyio.CapacityLimiter(self._transfer.max_files * 4)

        async def look(stored: str) -> None:
            async with limiter:
                head = await self._storage.head(bucket, stored)
            if head is not None:
                ref_key = parse_metadata(head.metadata, stored).ref_key
                named.add(ref_key or "")

        async with task_group() as tg:
            for stored in deltas:
                tg.start_soon(look, stored)
        collected = []
        for ref_key in snapshots:
            if ref_key in named:
                continue
            await self._collect_one(bucket, space, ref_key)
            if await self._storage.head(bucket, ref_key) is None:  # not reinstated meanwhile
                collected.append(ref_key)
        return collected

    async def _collect_one(self, bucket: str, space: str, ref_key: str) -> list[str]:
        """Steps 2-5 for one reference; the deltas the second listing found."""
        head = await self._storage.head(bucket, ref_key)
        sha = reference_sha(head, ref_key) if head is not None else None
        if sha is None:
            return []  # gone already, or not ours to delete
        aside = f"{INTERNAL_PREFIX}gc/{sha}-{uuid.uuid4().hex[:12]}"
        try:
            await self._storage.copy(bucket, ref_key, bucket, aside)
        except DeltaGliderError as exc:
            log.warning("s3://%s/%s: kept (cannot copy it aside: %s)", bucket, ref_key, exc)
            return []
        try:
            await self._storage.delete(bucket, ref_key)
            deltas, _ = await self._list_space(bucket, space)
            if deltas:
                await self._reinstate_reference(bucket, ref_key, aside, sha, deltas)
            return deltas
        finally:
            with anyio.CancelScope(shield=True):
                await self._storage.delete(bucket, aside)

    async def _reinstate_reference(
        self, bucket: str, ref_key: str, aside: str, sha: str, deltas: list[str]
    ) -> None:
        """Deltas appeared while their reference was being collected: put it back."""
        stranded = []
        for stored in deltas:
            head = await self._storage.head(bucket, stored)
            if head is not None and parse_metadata(head.metadata, stored).ref_sha256 in (sha, None):
                stranded.append(classify(stored)[1])
        if not stranded:
            return
        copy = self._temp_path(".ref")
        try:
            fd = os.open(copy, os.O_WRONLY | os.O_TRUNC)
            try:
                async for chunk in self._storage.iter_object(bucket, aside):
                    await anyio.to_thread.run_sync(write_all, fd, chunk)
            finally:
                os.close(fd)
            head = await self._storage.head(bucket, aside)
            metadata = head.metadata if head is not None else {}
            try:
                await self._storage.put_file(
                    bucket, ref_key, copy, metadata=metadata, if_none_match=True
                )
                log.info(
                    "s3://%s/%s: reinstated for %d new delta(s)", bucket, ref_key, len(stranded)
                )
                return
            except ConflictError:
                pass
            if await self._reference_is(bucket, ref_key, sha):
                return
            # A new first writer made another reference: store the stranded objects against it.
            await self._cache.warm(
                sha, reference_reader(lambda: iter_file(copy), sha, f"s3://{bucket}/{ref_key}")
            )
        finally:
            unlink_quietly(copy)
        for key in stranded:
            await self._store_again(bucket, key)

    async def _store_again(self, bucket: str, key: str) -> None:
        """Rebuild an object and store it anew (against its space's current reference)."""
        await self._put.copy(await self._get.resolve(bucket, key), bucket, key)

    async def _delete_reference(self, bucket: str, ref_key: str, *, force: bool) -> None:
        space = space_of(ref_key)
        deltas, _ = await self._list_space(bucket, space)
        if deltas and not force:
            raise ReferenceInUseError(
                f"s3://{bucket}/{ref_key} may be used by deltas in {space or 'the root'}; "
                "delete them first or force"
            )
        await self._storage.delete(bucket, ref_key)

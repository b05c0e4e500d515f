"""What a bucket's delta spaces would store in another delta format, before converting them.

Per space: the reference as that format writes references (the archive format's compact form,
made and measured, never stored), and a sample of its objects spread over the versions, each
read back and trial-encoded against the reference as a put would (the ratio policy included);
the rest are projected by the sample's ratio (:func:`~.._core.stats.project_space`).  Objects
already in the format count as they are.  Nothing is written to the bucket.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .._core.spaces import is_eligible, space_of
from .._core.stats import (
    FormatEstimate,
    Listing,
    SpaceEstimate,
    StoredObject,
    project_space,
    sample_evenly,
)
from .._engine.codec import unlink_quietly
from .._exceptions import DeltaGliderError
from .._formats import DEFAULT_FORMAT, DeltaFormat
from .._storage.port import ObjectHead
from .context import Context, Stage
from .get import GetPipeline
from .put import PutPipeline

#: objects trial-encoded per space unless told otherwise
DEFAULT_SAMPLE = 8


class FormatEstimator(Stage):
    def __init__(self, ctx: Context, get: GetPipeline, put: PutPipeline) -> None:
        super().__init__(ctx)
        self._get = get
        self._put = put

    async def estimate(
        self,
        bucket: str,
        delta_format: DeltaFormat,
        *,
        prefix: str = "",
        sample: int = DEFAULT_SAMPLE,
        on_space: Callable[[SpaceEstimate], None] | None = None,
    ) -> FormatEstimate:
        listing = Listing()
        async for entry in self._storage.iter_all(bucket, prefix):
            listing.add(StoredObject(entry["Key"], int(entry["Size"]), entry.get("ETag", "")))
        # Objects stored direct (the ratio policy, a format that did not apply) are what a
        # better format may turn into deltas.
        direct: dict[str, list[StoredObject]] = {}
        for obj in listing.direct:
            if is_eligible(obj.key, self._extensions):
                direct.setdefault(space_of(obj.key), []).append(obj)
        spaces: list[SpaceEstimate] = []
        for space in sorted(listing.references):
            objects = sorted(
                listing.deltas.get(space, []) + direct.get(space, []), key=lambda o: o.key
            )
            if not objects:
                continue  # an orphaned reference: nothing would be stored for it
            snapshots = sum(o.size for o in listing.snapshots.get(space, []))
            found = await self._space(
                bucket, space, listing.references[space], snapshots, objects, delta_format, sample
            )
            spaces.append(found)
            if on_space is not None:
                on_space(found)
        return FormatEstimate(bucket, delta_format.name, sample, tuple(spaces))

    async def _space(
        self,
        bucket: str,
        space: str,
        reference: StoredObject,
        snapshots: int,
        objects: list[StoredObject],
        delta_format: DeltaFormat,
        sample: int,
    ) -> SpaceEstimate:
        """``snapshots``: the bytes of the space's later references, which a format that makes
        them keeps (a sample is trial-encoded against ``reference.bin`` only, so one that
        names a snapshot may count whole: the estimate errs high)."""
        head = await self._storage.head(bucket, reference.key)
        if head is None:  # deleted since the listing
            return project_space(space, objects, {}, reference_now=0, reference_then=0)
        trials: dict[str, int] = {}
        fell_back = 0
        notes: list[str] = []
        for obj in sample_evenly(objects, sample):
            try:
                size, same_format = await self._trial(bucket, obj, head, delta_format)
            except DeltaGliderError as exc:  # one unreadable object does not end the estimate
                notes.append(f"{obj.key}: {exc}")
                continue
            trials[obj.key] = size
            fell_back += not same_format
        reference_then = await self._reference_size(bucket, head, delta_format)
        return project_space(
            space,
            objects,
            trials,
            reference_now=head.size + snapshots,
            reference_then=reference_then + (snapshots if delta_format.takes_snapshots else 0),
            fell_back=fell_back,
            note="; ".join(notes),
        )

    async def _trial(
        self, bucket: str, obj: StoredObject, reference: ObjectHead, delta_format: DeltaFormat
    ) -> tuple[int, bool]:
        """The object's size in ``delta_format``, and whether it would be a delta in it."""
        found = await self._get.resolve(bucket, obj.key)
        if found.stored_as == "delta" and (found.meta.delta_format or DEFAULT_FORMAT) == (
            delta_format.name
        ):
            return found.head.size, True
        local = self._temp_path(".estimate")
        try:
            fd = os.open(local, os.O_WRONLY)  # our own scratch file: the object, as resolved
            try:
                await self._get.write_object(found, fd, None)
            finally:
                os.close(fd)
            trial = await self._put.trial(local, bucket, reference, delta_format)
        finally:
            unlink_quietly(local)
        same = trial.would_store_as == "delta" and trial.delta_format == delta_format.name
        return trial.estimated_size, same

    async def _reference_size(
        self, bucket: str, reference: ObjectHead, delta_format: DeltaFormat
    ) -> int:
        """What the space's reference would store in ``delta_format``: as it is when it is
        already in that form, else what the format makes of the file it stands for."""
        if reference.metadata.get("dg-reference-form", DEFAULT_FORMAT) == delta_format.name:
            return reference.size
        local, body = self._temp_path(".ref"), self._temp_path(".ref")
        try:
            made = await self._reference_as(bucket, reference, delta_format, local, body)
            return body.stat().st_size if made is not None else local.stat().st_size
        finally:
            unlink_quietly(local)
            unlink_quietly(body)

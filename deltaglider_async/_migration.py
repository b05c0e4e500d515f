"""What ``migrate`` still has to copy, decided from what is in the destination (never from local
state), so that an interrupted or repeated run, local or on a cluster, does only what is left."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio

from ._core.filters import PathFilter, is_included
from ._core.spaces import S3Url, parse_s3_url, space_of
from ._tasks import task_group

if TYPE_CHECKING:
    from ._client import AsyncDeltaGliderClient


@dataclass(frozen=True)
class MigrationStep:
    """One logical object to copy: where from, where to, what the source says it is, and the
    delta format its copy must be written in to count as done (None: any)."""

    source: str
    destination: str
    size: int
    sha256: str | None = None
    delta_format: str | None = None

    @property
    def destination_space(self) -> str:
        """The unit of work that is never split (one reference election)."""
        return space_of_url(self.destination)


def space_of_url(url: str) -> str:
    """``bucket/space/`` (``bucket/`` at the root) of the object an ``s3://`` URL names."""
    target = parse_s3_url(url)
    return f"{target.bucket}/{space_of(target.key)}"


def _prefix_of(url: S3Url) -> str:
    if not url.key:
        return ""
    return url.key if url.is_prefix else url.key + "/"


async def plan_migration(
    dg: AsyncDeltaGliderClient,
    source: str,
    destination: str,
    *,
    filters: Sequence[PathFilter] = (),
    delta_format: str | None = None,
) -> list[MigrationStep]:
    """Source objects not yet at the destination with the same size (and SHA-256 when known).

    With ``delta_format``, a destination object also counts as done only once a put in that
    format has stored it (as such a delta, or elsewise with a recorded reason): converting a
    prefix in place, or resuming a conversion, does only what is left."""
    src, dst = parse_s3_url(source), parse_s3_url(destination)
    src_prefix, dst_prefix = _prefix_of(src), _prefix_of(dst)
    present = {
        entry["Key"][len(dst_prefix) :]: entry
        async for entry in dg.iter_objects(dst.bucket, dst_prefix, fetch_metadata=True)
    }
    steps = []
    async for entry in dg.iter_objects(src.bucket, src_prefix, fetch_metadata=True):
        rel = entry["Key"][len(src_prefix) :]
        if rel and is_included(rel, filters):
            steps.append(
                MigrationStep(
                    f"s3://{src.bucket}/{entry['Key']}",
                    f"s3://{dst.bucket}/{dst_prefix}{rel}",
                    int(entry["Size"]),
                    entry["DeltaGliderInfo"].get("Sha256"),
                    delta_format,
                )
            )
    return await _left_to_do(dg, steps, present, dst_prefix)


async def still_to_do(
    dg: AsyncDeltaGliderClient, steps: Iterable[MigrationStep]
) -> list[MigrationStep]:
    """``steps`` re-checked against their destination spaces as they are now (a task that runs
    again after its worker died skips what the first attempt finished)."""
    steps = list(steps)
    present: dict[str, dict[str, Any]] = {}
    spaces = {step.destination_space for step in steps}

    async def list_space(space: str) -> None:
        bucket, _, prefix = space.partition("/")
        async for page in dg.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=prefix, Delimiter="/", FetchMetadata=True
        ):
            for entry in page.get("Contents", []):
                present[f"s3://{bucket}/{entry['Key']}"] = entry

    async with task_group() as tg:
        for space in sorted(spaces):
            tg.start_soon(list_space, space)
    return await _left_to_do(dg, steps, present, None)


async def _left_to_do(
    dg: AsyncDeltaGliderClient,
    steps: list[MigrationStep],
    present: dict[str, dict[str, Any]],
    dst_prefix: str | None,
) -> list[MigrationStep]:
    """``present`` maps what names a destination (its key below ``dst_prefix``, or its URL when
    ``dst_prefix`` is None) to its listing entry."""
    todo = []
    unsure: list[tuple[MigrationStep, str]] = []
    for step in steps:
        name = step.destination
        if dst_prefix is not None:
            name = parse_s3_url(name).key[len(dst_prefix) :]
        done = present.get(name)
        if done is None or done["Size"] != step.size:
            todo.append(step)
            continue
        info = done["DeltaGliderInfo"]
        ours = info.get("Sha256")
        if ours is not None and step.sha256 is not None and ours != step.sha256:
            todo.append(step)
        elif step.delta_format is None or _converted(info, step.delta_format):
            continue
        elif info["StoredAs"] != "delta":
            unsure.append((step, info["StoredKey"]))
        else:
            todo.append(step)
    todo.extend(await _unconverted_direct(dg, unsure))
    order = {step: index for index, step in enumerate(steps)}
    return sorted(todo, key=order.__getitem__)


def _converted(info: dict[str, Any], delta_format: str) -> bool:
    """Written by a put in ``delta_format``: as such a delta, or elsewise with its reason."""
    return info.get("DeltaFormat") == delta_format.strip().lower() or bool(info.get("FormatNote"))


async def _unconverted_direct(
    dg: AsyncDeltaGliderClient, candidates: list[tuple[MigrationStep, str]]
) -> list[MigrationStep]:
    """Direct objects a put in their step's format has not yet looked at (listings carry no
    metadata)."""
    found: list[MigrationStep] = []
    limiter = anyio.CapacityLimiter(32)

    async def check(step: MigrationStep, stored: str) -> None:
        async with limiter:
            head = await dg.head_object(Bucket=parse_s3_url(step.destination).bucket, Key=stored)
        if not _converted(head["DeltaGliderInfo"], step.delta_format or ""):
            found.append(step)

    async with task_group() as tg:
        for step, stored in candidates:
            tg.start_soon(check, step, stored)
    return found

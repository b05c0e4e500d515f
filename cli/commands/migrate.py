"""``migrate``: copy a prefix (plain objects or any deltaglider dialect) into delta form."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import typer

from deltaglider_async import (
    AsyncDeltaGliderClient,
)
from deltaglider_async.aws import (
    PathFilter,
    S3Url,
    is_s3_url,
    parse_s3_url,
)

from .._app import app
from .._common import (
    DEFAULT_TRANSFERS,
    DeltaFormatOpt,
    DryRun,
    Excludes,
    Includes,
    Json,
    MaxRatio,
    OnlyErrors,
    Quiet,
    Settings,
    Transfers,
    _output,
    _prefix_of,
    _s3_objects,
    _usage,
    check_delta_format,
    command,
    copy_in_s3,
)


@command(app)
def migrate(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix/ (plain or delta objects)")],
    destination: Annotated[str, typer.Argument(help="s3://bucket/prefix/ to store in delta form")],
    exclude: Excludes = None,
    include: Includes = None,
    dryrun: DryRun = False,
    quiet: Quiet = False,
    only_show_errors: OnlyErrors = False,
    max_ratio: MaxRatio = None,
    delta_format: DeltaFormatOpt = None,
    transfers: Transfers = DEFAULT_TRANSFERS,
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """Copy a prefix into delta form; re-running skips what is already there (resumable)."""
    out = _output(json_output, quiet, only_show_errors, True)
    check_delta_format(out, delta_format)
    filters = settings.filters
    if not (is_s3_url(source) and is_s3_url(destination)):
        _usage(out, "migrate copies between s3:// URLs")

    async def work() -> int:
        src, dst = parse_s3_url(source), parse_s3_url(destination)
        async with settings.client(
            max_ratio=max_ratio, transfers=transfers, delta_format=delta_format
        ) as dg:
            todo = await _migration_plan(dg, src, dst, filters, delta_format)
            urls = [(f"s3://{src.bucket}/{a}", f"s3://{dst.bucket}/{b}") for a, b in todo]
            return await copy_in_s3(dg, out, "migrate", urls, dryrun, show_stored=True)

    settings.execute(work, out)


async def _migration_plan(
    dg: AsyncDeltaGliderClient,
    src: S3Url,
    dst: S3Url,
    filters: list[PathFilter],
    delta_format: str | None,
) -> list[tuple[str, str]]:
    """Source objects not yet at the destination with the same size (and SHA-256 when known).

    With ``--delta-format``, a destination object also counts as done only once a put in that
    format has stored it (as such a delta, or elsewise with a recorded reason): converting a
    prefix in place, or resuming a conversion, does only what is left."""
    base = _prefix_of(dst) if dst.key else ""
    present = {rel: e for rel, e in await _s3_objects(dg, dst, filters, metadata=True)}
    todo = []
    unsure: list[tuple[str, str, str]] = []
    for rel, entry in await _s3_objects(dg, src, filters, metadata=True):
        done = present.get(rel)
        if done is not None and done["Size"] == entry["Size"]:
            ours, theirs = (
                done["DeltaGliderInfo"].get("Sha256"),
                entry["DeltaGliderInfo"].get("Sha256"),
            )
            if ours is None or theirs is None or ours == theirs:
                info = done["DeltaGliderInfo"]
                if delta_format is None or _converted(info, delta_format):
                    continue
                if info["StoredAs"] != "delta":
                    unsure.append((entry["Key"], base + rel, done["Key"]))
                    continue
        todo.append((entry["Key"], base + rel))
    todo.extend(await _unconverted_direct(dg, dst.bucket, unsure, delta_format or ""))
    return todo


def _converted(info: dict[str, Any], delta_format: str) -> bool:
    return info.get("DeltaFormat") == delta_format.strip().lower() or bool(info.get("FormatNote"))


async def _unconverted_direct(
    dg: AsyncDeltaGliderClient, bucket: str, candidates: list[tuple[str, str, str]], fmt: str
) -> list[tuple[str, str]]:
    """Direct objects a put in ``fmt`` has not yet looked at (listings carry no metadata)."""
    found: list[tuple[str, str]] = []
    limiter = anyio.CapacityLimiter(32)

    async def check(source: str, target: str, stored: str) -> None:
        async with limiter:
            head = await dg.head_object(Bucket=bucket, Key=stored)
        if not _converted(head["DeltaGliderInfo"], fmt):
            found.append((source, target))

    async with anyio.create_task_group() as tg:
        for source, target, stored in candidates:
            tg.start_soon(check, source, target, stored)
    return sorted(found)

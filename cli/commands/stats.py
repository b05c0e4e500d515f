"""``stats``: how much delta compression saves in a bucket."""

from __future__ import annotations

from typing import Annotated

import typer

from deltaglider_async import (
    InvalidArgumentError,
)
from deltaglider_async.aws import (
    is_s3_url,
    parse_s3_url,
)
from deltaglider_async.dask import connect

from .._app import app
from .._common import (
    EXIT_OK,
    Checkers,
    DaskOpt,
    Json,
    Settings,
    _output,
    _usage,
    command,
)
from .._render import human


@command(app)
def stats(
    bucket: Annotated[str, typer.Argument(help="bucket, s3://bucket or s3://bucket/prefix")],
    quick: Annotated[bool, typer.Option("--quick", help="listing only (estimated)")] = False,
    sampled: Annotated[bool, typer.Option("--sampled", help="HEAD a sample per space")] = False,
    detailed: Annotated[bool, typer.Option("--detailed", help="HEAD every delta")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="ignore cached results")] = False,
    checkers: Checkers = 64,
    dask: DaskOpt = None,
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """How much delta compression saves in a bucket."""
    out = _output(json_output, False, False, True)
    if quick + sampled + detailed > 1:
        _usage(out, "choose one of --quick, --sampled, --detailed")
    mode = "detailed" if detailed else "sampled" if sampled else "quick"
    if dask is not None and mode == "quick":
        _usage(out, "--dask HEADs deltas on a cluster: use it with --detailed or --sampled")
    try:
        target = parse_s3_url(bucket if is_s3_url(bucket) else f"s3://{bucket}")
    except InvalidArgumentError as exc:
        _usage(out, str(exc))

    async def work() -> int:
        spec = settings.spec(checkers=checkers)
        async with spec.build() as dg:
            if dask is None:
                result = await dg.bucket_stats(
                    target.bucket,
                    mode,  # type: ignore[arg-type]
                    prefix=target.key or None,
                    refresh=refresh,
                )
            else:
                async with connect(dask, spec) as cluster:
                    result = await cluster.bucket_stats(
                        dg,
                        target.bucket,
                        mode,  # type: ignore[arg-type]
                        prefix=target.key or None,
                        refresh=refresh,
                    )
        if out.json_mode:
            out.data(result.as_dict())
            return EXIT_OK
        flag = " (estimated)" if result.estimated else ""
        lines = [
            f"Bucket statistics: {result.bucket}{'/' + target.key if target.key else ''} "
            f"[{result.mode}{flag}]",
            f"  Objects:           {result.object_count} "
            f"({result.delta_objects} delta, {result.direct_objects} direct, "
            f"{result.delta_spaces} delta space(s))",
            f"  Original size:     {human(result.total_size)}{flag}",
            f"  Stored size:       {human(result.compressed_size)}",
            f"  Space saved:       {human(result.space_saved)} "
            f"({100 * result.average_compression_ratio:.1f}%)",
        ]
        if result.partial:
            lines.append(f"  PARTIAL: {result.failed_heads} HEAD request(s) failed")
        for orphan in result.orphaned_references:
            lines.append(f"  Orphaned reference: {orphan.key} ({human(orphan.size)})")
        if result.orphaned_hint:
            lines.append("  " + result.orphaned_hint.replace("BUCKET", result.bucket))
        for text in lines:
            out.line(text)
        return EXIT_OK

    settings.execute(work, out)

"""``stats``: how much delta compression saves in a bucket."""

from __future__ import annotations

from typing import Annotated

import typer

from deltaglider_async import (
    DELTA_FORMATS,
    FormatEstimate,
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
    quick: Annotated[
        bool, typer.Option("--quick", help="the listing and a delta per space (estimated)")
    ] = False,
    sampled: Annotated[bool, typer.Option("--sampled", help="HEAD a sample per space")] = False,
    detailed: Annotated[bool, typer.Option("--detailed", help="HEAD every delta")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="ignore cached results")] = False,
    estimate_format: Annotated[
        str | None,
        typer.Option(
            "--estimate-format",
            metavar="FORMAT",
            help="also estimate, per delta space, what FORMAT (archive, vcdiff) would store "
            "(reads and trial-encodes a sample of each space; writes nothing)",
        ),
    ] = None,
    sample: Annotated[
        int | None,
        typer.Option(
            "--sample", min=1, help="objects trial-encoded per space by --estimate-format [8]"
        ),
    ] = None,
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
    if estimate_format is not None and estimate_format.strip().lower() not in DELTA_FORMATS:
        _usage(out, f"--estimate-format must be one of {', '.join(DELTA_FORMATS)}")

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
            estimate = None
            if estimate_format is not None:
                estimate = await dg.estimate_format(
                    target.bucket, estimate_format, prefix=target.key or None, sample=sample
                )
        if out.json_mode:
            data = result.as_dict()
            if estimate is not None:
                data["format_estimate"] = estimate.as_dict()
            out.data(data)
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
        if estimate is not None:
            lines += _estimate_lines(estimate)
        for text in lines:
            out.line(text)
        return EXIT_OK

    settings.execute(work, out)


def _estimate_lines(estimate: FormatEstimate) -> list[str]:
    name = estimate.delta_format
    lines = [
        f"  In the {name} format (estimated from up to {estimate.sample} object(s) per space):"
    ]
    for space in estimate.spaces:
        fell_back = f", {space.fell_back} not as {name} deltas" if space.fell_back else ""
        lines.append(
            f"    {space.space or '(bucket root)'}: {human(space.stored_size)} stored now, "
            f"~{human(space.estimated_size)} ({_times(space.ratio)}; "
            f"{space.sampled} of {space.objects} tried{fell_back})"
        )
        if space.note:
            lines.append(f"      not tried: {space.note}")
    if not estimate.spaces:
        lines.append("    no delta space")
    else:
        whole = estimate.stored_size / estimate.estimated_size if estimate.estimated_size else 0
        lines.append(
            f"    all: {human(estimate.stored_size)} stored now, "
            f"~{human(estimate.estimated_size)} ({_times(whole)})"
        )
    return lines


def _times(ratio: float) -> str:
    if ratio >= 1:
        return f"{ratio:.1f}x smaller"
    return f"{1 / ratio:.1f}x larger" if ratio else "nothing stored"

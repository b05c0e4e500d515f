"""``cp``: local files to S3, S3 objects to local files (or stdout), and S3 to S3."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from deltaglider_async import (
    AsyncDeltaGliderClient,
    InvalidArgumentError,
)
from deltaglider_async.aws import (
    PathFilter,
    S3Url,
    is_included,
    is_s3_url,
    parse_s3_url,
    upload_key,
)

from .._app import app
from .._common import (
    DEFAULT_TRANSFERS,
    EXIT_FAILED,
    EXIT_FATAL,
    EXIT_OK,
    DeltaFormatOpt,
    DryRun,
    Excludes,
    Includes,
    Json,
    LocalPathError,
    MaxRatio,
    NoDelta,
    NoProgress,
    OnlyErrors,
    Quiet,
    Recursive,
    Settings,
    Transfers,
    _display,
    _local_files,
    _local_targets,
    _output,
    _prefix_of,
    _report_results,
    _s3_objects,
    _saved_text,
    _usage,
    check_delta_format,
    command,
    copy_in_s3,
    remove_moved,
    upload_items,
)
from .._render import Output, Summary, TransferProgress


@command(app, uploads=True)
def cp(
    source: Annotated[str, typer.Argument(help="local path or s3://bucket/key")],
    destination: Annotated[str, typer.Argument(help="local path or s3://bucket/key")],
    recursive: Recursive = False,
    exclude: Excludes = None,
    include: Includes = None,
    dryrun: DryRun = False,
    quiet: Quiet = False,
    only_show_errors: OnlyErrors = False,
    no_progress: NoProgress = False,
    max_ratio: MaxRatio = None,
    delta_format: DeltaFormatOpt = None,
    no_delta: NoDelta = False,
    transfers: Transfers = DEFAULT_TRANSFERS,
    json_output: Json = False,
    *,
    settings: Settings,
    move: bool = False,
) -> None:
    """Copy local files to S3, S3 objects to local files, or S3 to S3."""
    out = _output(json_output, quiet, only_show_errors, no_progress)
    verb = "mv" if move else "cp"
    check_delta_format(out, delta_format)
    filters = settings.filters
    src_s3, dst_s3 = is_s3_url(source), is_s3_url(destination)
    if "-" in (source, destination) and (move or not (src_s3 or dst_s3)):
        _usage(out, f"{verb} - needs an s3:// URL on the other side (cp only)")
    if not (src_s3 or dst_s3):
        out.err.print(
            f"{verb} needs at least one s3:// URL (use your shell for local files)", markup=False
        )
        raise typer.Exit(EXIT_FATAL)  # aws-cli's "Invalid argument type"
    if move and src_s3 and dst_s3 and _same_path(source, destination):
        out.err.print(f"Cannot mv a file onto itself: {source} - {destination}", markup=False)
        raise typer.Exit(EXIT_FATAL)

    async def work() -> int:
        async with settings.client(
            max_ratio=max_ratio, transfers=transfers, delta_format=delta_format
        ) as dg:
            if source == "-" or destination == "-":
                return await _stream_cp(
                    dg, out, source, destination, dryrun, max_ratio, no_delta, settings.put_args
                )
            if not src_s3:
                return await _upload(
                    dg,
                    out,
                    Path(source),
                    parse_s3_url(destination),
                    recursive,
                    settings,
                    dryrun,
                    max_ratio,
                    no_delta,
                    move,
                )
            if not dst_s3:
                return await _download(
                    dg, out, parse_s3_url(source), destination, recursive, filters, dryrun, move
                )
            return await _copy(
                dg,
                out,
                parse_s3_url(source),
                parse_s3_url(destination),
                recursive,
                settings,
                dryrun,
                move,
            )

    settings.execute(work, out, transfers=True)


async def _stream_cp(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: str,
    destination: str,
    dryrun: bool,
    max_ratio: float | None,
    no_delta: bool,
    put_args: dict[str, Any],
) -> int:
    """``cp - s3://b/k`` stores standard input; ``cp s3://b/k -`` writes the object to stdout.

    Standard output receives bytes as they are rebuilt; a SHA-256 mismatch at the end exits 1
    (as aws-cli, a consumer of a pipe cannot be un-sent what it already read).
    """
    if source == "-":
        target = parse_s3_url(destination)
        if target.is_prefix:
            raise InvalidArgumentError("cp - needs a full s3://bucket/key destination")
        if dryrun:
            out.result(f"(dryrun) upload: - to {target}", {"op": "upload", "dryrun": True})
            return EXIT_OK
        stdin = sys.stdin.buffer
        resp = await dg.put_object(
            Bucket=target.bucket,
            Key=target.key,
            Body=stdin,
            MaxRatio=max_ratio,
            NoDelta=no_delta,
            **put_args,
        )
        info = resp["DeltaGliderInfo"]
        saved = _saved_text(
            info["OriginalSize"],
            info["StoredSize"],
            info["StoredAs"],
            info["Reason"],
            info["ReferenceSize"] if info["ReferenceCreated"] else None,
        )
        if out.show_savings or out.json_mode:  # aws-cli prints nothing for a stdin upload
            out.result(
                f"upload: - to {target}{out.savings(saved)}", {"op": "upload", "ok": True, **info}
            )
        return EXIT_OK
    src = parse_s3_url(source)
    resp = await dg.get_object(Bucket=src.bucket, Key=src.key)
    sink = sys.stdout.buffer
    async for chunk in resp["Body"].iter_chunks(1 << 20):
        await anyio.to_thread.run_sync(sink.write, chunk)
    sink.flush()
    return EXIT_OK


async def _upload(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: Path,
    target: S3Url,
    recursive: bool,
    settings: Settings,
    dryrun: bool,
    max_ratio: float | None,
    no_delta: bool,
    move: bool,
) -> int:
    verb = "move" if move else "upload"
    if source.is_dir() and not recursive:  # aws-cli reports it as a failed transfer (exit 1)
        out.error(
            f"{verb} failed: {_display(str(source))}/ to {target}: "
            "is a directory (use --recursive)",
            {"op": "upload", "source": str(source), "error": "is a directory"},
        )
        return EXIT_FAILED
    summary = Summary("upload")
    if source.is_dir():
        base = _prefix_of(target) if target.key else ""
        files = _local_files(source, settings.filters, out, summary)
        items = [(p, f"s3://{target.bucket}/{base}{rel}") for p, rel in files]
    elif source.is_file():  # filters apply to a single file too, by its name (as aws's)
        url = f"s3://{target.bucket}/{upload_key(target, source.name)}"
        items = [(source, url)] if is_included(source.name, settings.filters) else []
    else:
        raise LocalPathError(source)
    if dryrun:
        for path, url in items:
            out.result(
                f"(dryrun) {verb}: {_display(str(path))} to {url}",
                {"op": verb, "dryrun": True, "source": str(path), "destination": url},
            )
        summary.render(out)
        return summary.exit_code()
    results = await upload_items(dg, out, items, settings, max_ratio, no_delta)
    _report_results(out, summary, verb, results)
    if move:
        for result in results:
            if result.error is None:
                Path(result.source).unlink(missing_ok=True)
    summary.render(out)
    return summary.exit_code()


async def _download(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: S3Url,
    destination: str,
    recursive: bool,
    filters: list[PathFilter],
    dryrun: bool,
    move: bool,
) -> int:
    verb = "move" if move else "download"
    target = Path(destination)
    summary = Summary("download")
    if recursive:
        objects = await _s3_objects(dg, source, filters)
        items = _local_targets(
            out, summary, source.bucket, [(rel, e["Key"]) for rel, e in objects], target
        )
    else:
        if source.is_prefix:
            raise InvalidArgumentError(f"{source} is a prefix: use --recursive")
        name = source.key.rsplit("/", 1)[-1]
        into_dir = target.is_dir() or destination.endswith(("/", os.sep))
        dest = target / name if into_dir else target
        items = [(str(source), dest)] if is_included(name, filters) else []
    if dryrun:
        for url, path in items:
            out.result(
                f"(dryrun) {verb}: {url} to {_display(str(path))}",
                {"op": verb, "dryrun": True, "source": url, "destination": str(path)},
            )
        summary.render(out)
        return summary.exit_code()
    with TransferProgress(out, 0, len(items)) as bars:
        results = await dg.download_many(items, progress=bars)
    _report_results(out, summary, verb, results)
    if move:
        await remove_moved(dg, out, summary, results)
    summary.render(out)
    return summary.exit_code()


async def _copy(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: S3Url,
    target: S3Url,
    recursive: bool,
    settings: Settings,
    dryrun: bool,
    move: bool,
) -> int:
    if recursive:
        base = _prefix_of(target) if target.key else ""
        found = await _s3_objects(dg, source, settings.filters)
        pairs = [(e["Key"], base + rel) for rel, e in found]
    else:
        pairs = [(source.key, upload_key(target, source.key.rsplit("/", 1)[-1]))]
    urls = [(f"s3://{source.bucket}/{a}", f"s3://{target.bucket}/{b}") for a, b in pairs]
    return await copy_in_s3(dg, out, "move" if move else "copy", urls, dryrun, settings, move=move)


def _same_path(source: str, destination: str) -> bool:
    """aws-cli's test for a move onto itself (into a "directory" of itself included)."""
    if source == destination:
        return True
    return destination.endswith("/") and source == destination + source.rsplit("/", 1)[-1]


def _mv(**options: Any) -> None:
    """Move local files to S3, S3 objects to local files, or S3 to S3 (each source is deleted
    once its copy is stored and verified)."""
    cp(**options, move=True)


_mv.__wrapped__ = cp  # type: ignore[attr-defined]  # the same options as cp
_mv.__annotations__ = cp.__annotations__
_mv.__name__ = "mv"
command(app, uploads=True)(_mv)

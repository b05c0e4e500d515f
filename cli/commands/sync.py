"""``sync``: make a local directory and an S3 prefix match, aws-cli's way."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import anyio
import typer

from deltaglider_async import (
    AsyncDeltaGliderClient,
    DeltaGliderError,
)
from deltaglider_async.aws import (
    PathFilter,
    S3Url,
    SyncEntry,
    is_s3_url,
    parse_s3_url,
    plan_sync,
    safe_local_relpath,
)

from .._app import app
from .._common import (
    DEFAULT_TRANSFERS,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Checkers,
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
    Settings,
    Transfers,
    _display,
    _local_files,
    _local_targets,
    _output,
    _prefix_of,
    _report_results,
    _s3_objects,
    _usage,
    check_delta_format,
    command,
    copy_in_s3,
    show_dryrun,
    upload_items,
)
from .._render import Output, Summary, TransferProgress


@command(app, uploads=True)
def sync(
    source: Annotated[str, typer.Argument(help="local directory or s3://bucket/prefix")],
    destination: Annotated[str, typer.Argument(help="local directory or s3://bucket/prefix")],
    delete: Annotated[bool, typer.Option("--delete", help="remove what the source lacks")] = False,
    size_only: Annotated[bool, typer.Option("--size-only", help="compare sizes only")] = False,
    exact_timestamps: Annotated[
        bool, typer.Option("--exact-timestamps", help="S3→local: any mtime difference copies")
    ] = False,
    checksum: Annotated[bool, typer.Option("--checksum", help="compare SHA-256")] = False,
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
    checkers: Checkers = 64,
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """Make the destination match the source (new or changed files; --delete removes extras)."""
    out = _output(json_output, quiet, only_show_errors, no_progress)
    check_delta_format(out, delta_format)
    filters = settings.filters
    if not (is_s3_url(source) or is_s3_url(destination)):
        _usage(out, "sync needs an s3:// URL on at least one side")

    how = {"delete": delete, "size_only": size_only, "dryrun": dryrun, "checksum": checksum}

    async def work() -> int:
        async with settings.client(
            max_ratio=max_ratio,
            transfers=transfers,
            checkers=checkers,
            delta_format=delta_format,
        ) as dg:
            if is_s3_url(source) and is_s3_url(destination):
                return await _sync_within_s3(
                    dg, out, parse_s3_url(source), parse_s3_url(destination), settings, **how
                )
            upload = not is_s3_url(source)
            local = Path(destination if upload is False else source)
            remote = parse_s3_url(destination if upload else source)
            summary = Summary("upload" if upload else "download")
            if upload and not local.is_dir():
                if not local.exists():
                    raise LocalPathError(local)
                out.error(  # aws-cli's words for a file where a directory belongs
                    f"warning: Skipping file {local.absolute()}/. File does not exist.",
                    {"op": "skip", "source": str(local), "error": "not a directory"},
                )
                return EXIT_USAGE
            local_entries = (
                await _local_entries(local, filters, checksum, out, summary)
                if local.is_dir()
                else {}
            )
            remote_entries, remote_keys = await _remote_entries(
                dg, remote, filters, checksum, settings.page_size
            )
            plan = plan_sync(
                local_entries if upload else remote_entries,
                remote_entries if upload else local_entries,
                "upload" if upload else "download",
                delete=delete,
                size_only=size_only,
                exact_timestamps=exact_timestamps,
                checksum=checksum,
            )
            base = _prefix_of(remote) if remote.key else ""
            if upload:
                items = [
                    (local / rel, f"s3://{remote.bucket}/{base}{rel}") for rel in plan.transfer
                ]
            else:
                dl = _local_targets(
                    out,
                    summary,
                    remote.bucket,
                    [(rel, remote_keys[rel]) for rel in plan.transfer],
                    local,
                )
            if dryrun:
                if upload:
                    show_dryrun(out, "upload", [(str(p), url) for p, url in items])
                else:
                    show_dryrun(out, "download", [(url, str(p)) for url, p in dl])
                for rel in plan.delete:
                    gone = (
                        f"s3://{remote.bucket}/{remote_keys[rel]}"
                        if upload
                        else _display(str(local / rel))
                    )
                    out.result(
                        f"(dryrun) delete: {gone}", {"op": "delete", "dryrun": True, "path": gone}
                    )
                return summary.exit_code()
            if upload:
                results = await upload_items(dg, out, items, settings, max_ratio, no_delta)
                _report_results(out, summary, "upload", results)
                if plan.delete:
                    resp = await dg.delete_objects(
                        Bucket=remote.bucket,
                        Delete={"Objects": [{"Key": remote_keys[r]} for r in plan.delete]},
                    )
                    for item in resp.get("Deleted", []):
                        out.result(
                            f"delete: s3://{remote.bucket}/{item['Key']}",
                            {"op": "delete", "ok": True, "key": item["Key"]},
                        )
                    for item in resp.get("Errors", []):
                        summary.failed += 1
                        out.error(
                            f"delete failed: {item['Key']}: {item['Message']}",
                            {"op": "delete", "key": item["Key"]},
                        )
            else:
                with TransferProgress(out, 0, len(dl)) as bars:
                    results = await dg.download_many(dl, progress=bars)
                _report_results(out, summary, "download", results)
                for rel in plan.delete:
                    (local / safe_local_relpath(rel)).unlink(missing_ok=True)
                    out.result(
                        f"delete: {_display(str(local / rel))}",
                        {"op": "delete", "ok": True, "path": rel},
                    )
            summary.render(out)
            return summary.exit_code()

    settings.execute(work, out, transfers=True)


async def _local_entries(
    root: Path, filters: list[PathFilter], checksum: bool, out: Output, summary: Summary
) -> dict[str, SyncEntry]:
    entries = {}
    for path, rel in _local_files(root, filters, out, summary):
        info = path.stat()
        sha = await anyio.to_thread.run_sync(_sha256_file, path) if checksum else None
        entries[rel] = SyncEntry(info.st_size, info.st_mtime, sha)
    return entries


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


async def _remote_entries(
    dg: AsyncDeltaGliderClient,
    remote: S3Url,
    filters: list[PathFilter],
    checksum: bool,
    page_size: int | None,
) -> tuple[dict[str, SyncEntry], dict[str, str]]:
    entries: dict[str, SyncEntry] = {}
    keys: dict[str, str] = {}
    for rel, entry in await _s3_objects(dg, remote, filters, metadata=True, page_size=page_size):
        keys[rel] = entry["Key"]
        entries[rel] = SyncEntry(entry["Size"], entry["LastModified"].timestamp())
    if checksum:
        limiter = anyio.CapacityLimiter(dg.transfer.max_heads)

        async def fill(rel: str) -> None:
            async with limiter:
                try:
                    head = await dg.head_object(Bucket=remote.bucket, Key=keys[rel])
                except DeltaGliderError:
                    return  # unknown checksum: compared by size and time instead
            sha = head["DeltaGliderInfo"].get("Sha256")
            entries[rel] = SyncEntry(entries[rel].size, entries[rel].mtime, sha)

        async with anyio.create_task_group() as tg:
            for rel in list(entries):
                tg.start_soon(fill, rel)
    return entries, keys


async def _sync_within_s3(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: S3Url,
    target: S3Url,
    settings: Settings,
    *,
    delete: bool,
    size_only: bool,
    dryrun: bool,
    checksum: bool,
) -> int:
    """``sync s3://a/ s3://b/``: what is missing or changed at the target is copied (stored in
    delta form against the target space's reference); ``--delete`` removes the extras."""
    ours, their_keys = await _remote_entries(dg, source, settings.filters, checksum, None)
    theirs, target_keys = await _remote_entries(dg, target, settings.filters, checksum, None)
    # aws-cli compares an S3 copy's times as an upload's
    plan = plan_sync(ours, theirs, "upload", delete=delete, size_only=size_only, checksum=checksum)
    base = _prefix_of(target) if target.key else ""
    pairs = [
        (f"s3://{source.bucket}/{their_keys[rel]}", f"s3://{target.bucket}/{base}{rel}")
        for rel in plan.transfer
    ]
    gone = [target_keys[rel] for rel in plan.delete]
    if dryrun:
        show_dryrun(out, "copy", pairs)
        for key in gone:
            out.result(f"(dryrun) delete: s3://{target.bucket}/{key}", {"op": "delete"})
        return EXIT_OK
    code = await copy_in_s3(dg, out, "copy", pairs, False, settings)
    if gone:
        resp = await dg.delete_objects(
            Bucket=target.bucket, Delete={"Objects": [{"Key": k} for k in gone]}
        )
        for item in resp.get("Deleted", []):
            out.result(f"delete: s3://{target.bucket}/{item['Key']}", {"op": "delete", "ok": True})
        if resp.get("Errors"):
            return EXIT_FAILED
    return code

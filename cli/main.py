"""``deltaglider-async``: aws-s3-like commands over the async SDK (run through ``anyio.run``).

Exit codes: 0 ok · 1 some operation failed (or a verify mismatch) · 2 usage · 130 interrupted ·
255 fatal (endpoint unreachable, credentials, internal error).  Expected failures print one line;
``--debug`` adds the traceback.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from datetime import UTC
from pathlib import Path
from typing import Annotated, Any, NoReturn

import anyio
import typer

from deltaglider_async import (
    AsyncDeltaGliderClient,
    CredentialsError,
    DeltaGliderError,
    EndpointError,
    InvalidArgumentError,
    TransferConfig,
    TransferResult,
    create_client,
)
from deltaglider_async._core.filters import PathFilter, is_included, ordered_filters
from deltaglider_async._core.spaces import (
    S3Url,
    is_s3_url,
    parse_s3_url,
    safe_local_relpath,
    space_of,
    upload_key,
)
from deltaglider_async._core.sync import SyncEntry, plan_sync
from deltaglider_async._tasks import task_group

from ._render import Output, Summary, TransferProgress, human

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_FATAL = 0, 1, 2, 130, 255

app = typer.Typer(
    name="deltaglider-async",
    help="S3 storage for versioned artifacts as xdelta3 deltas (aws s3 style commands).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_ARGV: list[str] = []

Endpoint = Annotated[
    str | None, typer.Option("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL)")
]
Region = Annotated[str | None, typer.Option("--region", help="AWS region")]
Profile = Annotated[str | None, typer.Option("--profile", help="AWS profile")]
Json = Annotated[bool, typer.Option("--json", help="JSON lines on stdout, no progress")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="print nothing but errors")]
OnlyErrors = Annotated[bool, typer.Option("--only-show-errors", help="print only errors")]
NoProgress = Annotated[bool, typer.Option("--no-progress", help="no progress bars")]
DryRun = Annotated[bool, typer.Option("--dryrun", help="show what would be done")]
Recursive = Annotated[bool, typer.Option("--recursive", "-r", help="every object under a prefix")]
Excludes = Annotated[
    list[str] | None, typer.Option("--exclude", help="skip matching paths (repeatable)")
]
Includes = Annotated[
    list[str] | None, typer.Option("--include", help="re-include matching paths (later wins)")
]
MaxRatio = Annotated[
    float | None, typer.Option("--max-ratio", help="store directly above this delta/size ratio")
]
NoDelta = Annotated[bool, typer.Option("--no-delta", help="store every file directly")]
DEFAULT_TRANSFERS = TransferConfig.max_files
Transfers = Annotated[int, typer.Option("--transfers", min=1, help="files in flight")]
Checkers = Annotated[int, typer.Option("--checkers", min=1, help="concurrent HEAD requests")]
Debug = Annotated[bool, typer.Option("--debug", help="show tracebacks")]


class CommandFailed(Exception):
    """Some operations failed; their errors were already printed."""


def _client(
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    *,
    max_ratio: float | None = None,
    transfers: int = DEFAULT_TRANSFERS,
    checkers: int = 64,
) -> AsyncDeltaGliderClient:
    return create_client(
        endpoint_url,
        region_name=region,
        profile_name=profile,
        max_ratio=max_ratio,
        transfer=TransferConfig(max_files=transfers, max_heads=checkers),
    )


def _execute(work: Callable[[], Awaitable[int | None]], out: Output, debug: bool) -> None:
    """Run one command's coroutine and turn every outcome into its exit code."""
    try:
        code = anyio.run(work, backend="asyncio") or EXIT_OK
    except KeyboardInterrupt:
        out.err.print("interrupted", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except CommandFailed:
        raise typer.Exit(EXIT_FAILED) from None
    except (EndpointError, CredentialsError) as exc:
        _report(out, exc, debug)
        raise typer.Exit(EXIT_FATAL) from None
    except InvalidArgumentError as exc:
        _report(out, exc, debug)
        raise typer.Exit(EXIT_USAGE) from None
    except DeltaGliderError as exc:
        _report(out, exc, debug)
        raise typer.Exit(EXIT_FAILED) from None
    except OSError as exc:
        _report(out, exc, debug)
        raise typer.Exit(EXIT_FAILED) from None
    except Exception as exc:
        out.err.print(f"internal error: {exc!r}", markup=False)
        if debug:
            traceback.print_exc()
        raise typer.Exit(EXIT_FATAL) from None
    raise typer.Exit(code)


def _report(out: Output, exc: BaseException, debug: bool) -> None:
    code = getattr(exc, "code", type(exc).__name__)
    if out.json_mode:
        out.data({"ok": False, "error": str(exc), "code": code})
    out.err.print(f"error: {exc}", markup=False, soft_wrap=True)
    if debug:
        traceback.print_exception(exc)


def _output(json_mode: bool, quiet: bool, only_errors: bool, no_progress: bool) -> Output:
    return Output(
        json_mode=json_mode, quiet=quiet, only_errors=only_errors, progress=not no_progress
    )


def _display(path: str) -> str:
    return path if is_s3_url(path) or os.path.isabs(path) or path.startswith(".") else f"./{path}"


def _saved_text(
    original: int, stored: int, kind: str, reason: str = "", new_reference: bool = False
) -> str:
    if new_reference:
        return f"(new reference {human(original)} + delta {human(stored - original)})"
    if kind == "delta":
        # floor, so that 99.97 % does not read as a perfect 100.0 %
        pct = math.floor(1000 * (1 - stored / original)) / 10 if original else 0.0
        return f"(delta {human(stored)}, {pct:.1f}% saved)"
    return f"(direct {human(stored)}{', ' + reason if reason else ''})"


def _report_results(
    out: Output, summary: Summary, verb: str, results: list[TransferResult]
) -> None:
    for result in results:
        record: dict[str, Any] = {
            "op": verb,
            "source": result.source,
            "destination": result.destination,
        }
        if result.error is not None:
            summary.failed += 1
            out.error(
                f"{verb} failed: {_display(result.source)} to {result.destination}: {result.error}",
                {**record, "error": str(result.error), "code": result.error.code},
            )
        elif result.upload is not None:
            up = result.upload
            summary.add(up.original_size, up.stored_size, up.stored_as)
            saved = _saved_text(
                up.original_size, up.stored_size, up.stored_as, up.reason, up.reference_created
            )
            out.result(
                f"{verb}: {_display(result.source)} to {up.url} {saved}",
                {**record, "ok": True, **up.as_dict()},
            )
        elif result.download is not None:
            down = result.download
            summary.add(down.size, down.size, down.stored_as)
            out.result(
                f"{verb}: {result.source} to {_display(down.path)}",
                {**record, "ok": True, **down.as_dict()},
            )


def _local_files(root: Path, filters: list[PathFilter]) -> list[tuple[Path, str]]:
    """Regular files under ``root`` with their ``/``-separated relative paths, filtered."""
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if path.is_file() and is_included(rel, filters):
                found.append((path, rel))
    return found


def _local_targets(
    out: Output, summary: Summary, bucket: str, keys: list[tuple[str, str]], root: Path
) -> list[tuple[str, Path]]:
    """``(url, local path)`` for each ``(relative key, key)``; a key that cannot be a local
    path (``a/../b``, ``a\\b``, a folder marker ``p/``) is skipped with an error, as aws-cli
    warns and goes on."""
    items = []
    for rel, key in keys:
        url = f"s3://{bucket}/{key}"
        try:
            items.append((url, root / safe_local_relpath(rel)))
        except InvalidArgumentError as exc:
            summary.failed += 1
            out.error(
                f"download failed: {url}: {exc}",
                {"op": "download", "source": url, "error": str(exc), "code": exc.code},
            )
    return items


def _prefix_of(url: S3Url) -> str:
    return url.key if url.is_prefix else url.key + "/"


async def _s3_objects(
    dg: AsyncDeltaGliderClient, url: S3Url, filters: list[PathFilter], *, metadata: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """Logical objects under a prefix as (relative key, listing entry), filtered."""
    prefix = _prefix_of(url) if url.key else ""
    found = []
    async for entry in dg.iter_objects(url.bucket, prefix, fetch_metadata=metadata):
        rel = entry["Key"][len(prefix) :]
        if rel and is_included(rel, filters):
            found.append((rel, entry))
    return found


# ------------------------------------------------------------------------------------------ cp
@app.command()
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
    no_delta: NoDelta = False,
    transfers: Transfers = DEFAULT_TRANSFERS,
    json_output: Json = False,
    endpoint_url: Endpoint = None,
    region: Region = None,
    profile: Profile = None,
    debug: Debug = False,
) -> None:
    """Copy local files to S3, S3 objects to local files, or S3 to S3."""
    out = _output(json_output, quiet, only_show_errors, no_progress)
    filters = ordered_filters(_ARGV)
    src_s3, dst_s3 = is_s3_url(source), is_s3_url(destination)
    if "-" in (source, destination) and not (src_s3 or dst_s3):
        _usage(out, "cp - needs an s3:// URL on the other side")
    if not (src_s3 or dst_s3):
        _usage(out, "cp needs at least one s3:// URL (use your shell to copy local files)")

    async def work() -> int:
        async with _client(
            endpoint_url, region, profile, max_ratio=max_ratio, transfers=transfers
        ) as dg:
            if source == "-" or destination == "-":
                return await _stream_cp(dg, out, source, destination, dryrun, max_ratio, no_delta)
            if not src_s3:
                return await _upload(
                    dg,
                    out,
                    Path(source),
                    parse_s3_url(destination),
                    recursive,
                    filters,
                    dryrun,
                    max_ratio,
                    no_delta,
                )
            if not dst_s3:
                return await _download(
                    dg, out, parse_s3_url(source), destination, recursive, filters, dryrun
                )
            return await _copy(
                dg, out, parse_s3_url(source), parse_s3_url(destination), recursive, filters, dryrun
            )

    _execute(work, out, debug)


async def _stream_cp(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: str,
    destination: str,
    dryrun: bool,
    max_ratio: float | None,
    no_delta: bool,
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
            Bucket=target.bucket, Key=target.key, Body=stdin, MaxRatio=max_ratio, NoDelta=no_delta
        )
        info = resp["DeltaGliderInfo"]
        saved = _saved_text(
            info["OriginalSize"],
            info["StoredSize"],
            info["StoredAs"],
            info["Reason"],
            info["ReferenceCreated"],
        )
        out.result(f"upload: - to {target} {saved}", {"op": "upload", "ok": True, **info})
        return EXIT_OK
    src = parse_s3_url(source)
    resp = await dg.get_object(Bucket=src.bucket, Key=src.key)
    sink = sys.stdout.buffer
    async for chunk in resp["Body"].iter_chunks(1 << 20):
        await anyio.to_thread.run_sync(sink.write, chunk)
    sink.flush()
    return EXIT_OK


def _usage(out: Output, message: str) -> NoReturn:
    out.err.print(f"usage error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


async def _upload(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: Path,
    target: S3Url,
    recursive: bool,
    filters: list[PathFilter],
    dryrun: bool,
    max_ratio: float | None,
    no_delta: bool,
) -> int:
    if source.is_dir():
        if not recursive:
            raise InvalidArgumentError(f"{source} is a directory: use --recursive")
        base = _prefix_of(target) if target.key else ""
        items = [
            (p, f"s3://{target.bucket}/{base}{rel}") for p, rel in _local_files(source, filters)
        ]
    elif source.is_file():
        items = [(source, f"s3://{target.bucket}/{upload_key(target, source.name)}")]
    else:
        raise DeltaGliderError(f"{source}: no such file or directory", code="NoSuchFile")
    summary = Summary("upload")
    if dryrun:
        for path, url in items:
            out.result(
                f"(dryrun) upload: {_display(str(path))} to {url}",
                {"op": "upload", "dryrun": True, "source": str(path), "destination": url},
            )
        summary.render(out)
        return EXIT_OK
    total = sum(p.stat().st_size for p, _ in items)
    with TransferProgress(out, total, len(items)) as bars:
        results = await dg.upload_many(items, max_ratio=max_ratio, no_delta=no_delta, progress=bars)
    _report_results(out, summary, "upload", results)
    summary.render(out)
    return EXIT_FAILED if summary.failed else EXIT_OK


async def _download(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: S3Url,
    destination: str,
    recursive: bool,
    filters: list[PathFilter],
    dryrun: bool,
) -> int:
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
        items = [(str(source), dest)]
    if dryrun:
        for url, path in items:
            out.result(
                f"(dryrun) download: {url} to {_display(str(path))}",
                {"op": "download", "dryrun": True, "source": url, "destination": str(path)},
            )
        summary.render(out)
        return EXIT_FAILED if summary.failed else EXIT_OK
    with TransferProgress(out, 0, len(items)) as bars:
        results = await dg.download_many(items, progress=bars)
    _report_results(out, summary, "download", results)
    summary.render(out)
    return EXIT_FAILED if summary.failed else EXIT_OK


async def _server_copy(
    dg: AsyncDeltaGliderClient,
    out: Output,
    summary: Summary,
    record: dict[str, Any],
    source: tuple[str, str],
    target: tuple[str, str],
) -> dict[str, Any] | None:
    """Copy one object inside S3 (stored in delta form); a failure is reported and counted."""
    try:
        resp = await dg.copy_object(
            Bucket=target[0], Key=target[1], CopySource={"Bucket": source[0], "Key": source[1]}
        )
    except DeltaGliderError as exc:
        summary.failed += 1
        what = f"{record['source']} to {record['destination']}"
        out.error(f"{record['op']} failed: {what}: {exc}", {**record, "error": str(exc)})
        return None
    info: dict[str, Any] = resp["DeltaGliderInfo"]
    summary.add(0, info["StoredSize"], info["StoredAs"])
    return info


async def _copy(
    dg: AsyncDeltaGliderClient,
    out: Output,
    source: S3Url,
    target: S3Url,
    recursive: bool,
    filters: list[PathFilter],
    dryrun: bool,
) -> int:
    if recursive:
        base = _prefix_of(target) if target.key else ""
        pairs = [(e["Key"], base + rel) for rel, e in await _s3_objects(dg, source, filters)]
    else:
        pairs = [(source.key, upload_key(target, source.key.rsplit("/", 1)[-1]))]
    summary = Summary("copy")
    for src_key, dst_key in pairs:
        line = f"copy: s3://{source.bucket}/{src_key} to s3://{target.bucket}/{dst_key}"
        record = {
            "op": "copy",
            "source": f"s3://{source.bucket}/{src_key}",
            "destination": f"s3://{target.bucket}/{dst_key}",
        }
        if dryrun:
            out.result("(dryrun) " + line, {**record, "dryrun": True})
            continue
        info = await _server_copy(
            dg, out, summary, record, (source.bucket, src_key), (target.bucket, dst_key)
        )
        if info is not None:
            out.result(line, {**record, "ok": True, "stored_as": info["StoredAs"]})
    summary.render(out)
    return EXIT_FAILED if summary.failed else EXIT_OK


# ------------------------------------------------------------------------------------------ ls
@app.command()
def ls(
    url: Annotated[
        str | None, typer.Argument(help="s3://bucket[/prefix]; none lists buckets")
    ] = None,
    recursive: Recursive = False,
    human_readable: Annotated[bool, typer.Option("--human-readable", help="KiB, MiB…")] = False,
    summarize: Annotated[bool, typer.Option("--summarize", help="totals at the end")] = False,
    stored_size: Annotated[
        bool, typer.Option("--stored-size", help="also the stored size")
    ] = False,
    json_output: Json = False,
    endpoint_url: Endpoint = None,
    region: Region = None,
    profile: Profile = None,
    debug: Debug = False,
) -> None:
    """List buckets, or the logical objects under a prefix (logical sizes)."""
    out = _output(json_output, False, False, True)

    def size_text(n: int) -> str:
        return human(n) if human_readable else str(n)

    async def work() -> int:
        async with _client(endpoint_url, region, profile) as dg:
            if url is None:
                for bucket in (await dg.list_buckets())["Buckets"]:
                    created = bucket.get("CreationDate")
                    when = created.strftime("%Y-%m-%d %H:%M:%S") if created else ""
                    if out.json_mode:
                        out.data({"bucket": bucket["Name"], "created": when})
                    else:
                        out.line(f"{when} {bucket['Name']}")
                return EXIT_OK
            target = parse_s3_url(url)
            prefix = target.key
            count = total = 0
            token: str | None = None
            while True:
                page = await dg.list_objects_v2(
                    Bucket=target.bucket,
                    Prefix=prefix,
                    Delimiter=None if recursive else "/",
                    ContinuationToken=token,
                    FetchMetadata=True,
                )
                for common in page["CommonPrefixes"]:
                    name = common["Prefix"][len(_dir_of(prefix)) :]
                    if out.json_mode:
                        out.data({"prefix": common["Prefix"]})
                    else:
                        out.line(f"{'PRE':>30} {name}")
                for entry in page["Contents"]:
                    count += 1
                    total += entry["Size"]
                    info = entry["DeltaGliderInfo"]
                    if out.json_mode:
                        out.data(
                            {
                                "key": entry["Key"],
                                "size": entry["Size"],
                                "stored_size": info["StoredSize"],
                                "stored_as": info["StoredAs"],
                                "last_modified": entry["LastModified"],
                            }
                        )
                        continue
                    when = entry["LastModified"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
                    name = entry["Key"] if recursive else entry["Key"][len(_dir_of(prefix)) :]
                    extra = f" {size_text(info['StoredSize']):>12}" if stored_size else ""
                    out.line(f"{when} {size_text(entry['Size']):>10}{extra} {name}")
                token = page.get("NextContinuationToken")
                if not page["IsTruncated"] or not token:
                    break
            if summarize and not out.json_mode:
                out.line(f"\nTotal Objects: {count}\n   Total Size: {size_text(total)}")
            return EXIT_OK

    _execute(work, out, debug)


def _dir_of(prefix: str) -> str:
    return prefix[: prefix.rfind("/") + 1]


# ------------------------------------------------------------------------------------------ rm
@app.command()
def rm(
    url: Annotated[str, typer.Argument(help="s3://bucket/key, or a prefix with --recursive")],
    recursive: Recursive = False,
    exclude: Excludes = None,
    include: Includes = None,
    dryrun: DryRun = False,
    quiet: Quiet = False,
    only_show_errors: OnlyErrors = False,
    json_output: Json = False,
    endpoint_url: Endpoint = None,
    region: Region = None,
    profile: Profile = None,
    debug: Debug = False,
) -> None:
    """Delete logical objects (their references go when the last delta of a space goes)."""
    out = _output(json_output, quiet, only_show_errors, True)
    filters = ordered_filters(_ARGV)

    async def work() -> int:
        target = parse_s3_url(url)
        async with _client(endpoint_url, region, profile) as dg:
            if recursive:
                keys = [e["Key"] for _, e in await _s3_objects(dg, target, filters)]
            else:
                if target.is_prefix:
                    raise InvalidArgumentError(f"{url} is a prefix: use --recursive")
                keys = [target.key]
            summary = Summary("delete")
            if dryrun:
                for key in keys:
                    out.result(
                        f"(dryrun) delete: s3://{target.bucket}/{key}",
                        {"op": "delete", "dryrun": True, "key": key},
                    )
                return EXIT_OK
            if not recursive:
                await dg.delete_object(Bucket=target.bucket, Key=keys[0])
                out.result(f"delete: {url}", {"op": "delete", "ok": True, "key": keys[0]})
                return EXIT_OK
            resp = await dg.delete_objects(
                Bucket=target.bucket, Delete={"Objects": [{"Key": k} for k in keys]}
            )
            for item in resp["Deleted"]:
                summary.add(0, 0, "deleted")
                out.result(
                    f"delete: s3://{target.bucket}/{item['Key']}",
                    {"op": "delete", "ok": True, "key": item["Key"]},
                )
            for item in resp.get("Errors", []):
                summary.failed += 1
                out.error(
                    f"delete failed: s3://{target.bucket}/{item['Key']}: {item['Message']}",
                    {"op": "delete", "key": item["Key"], "error": item["Message"]},
                )
            if out.json_mode:
                summary.render(out)
            return EXIT_FAILED if summary.failed else EXIT_OK

    _execute(work, out, debug)


# ------------------------------------------------------------------------------------------ sync
@app.command()
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
    no_delta: NoDelta = False,
    transfers: Transfers = DEFAULT_TRANSFERS,
    checkers: Checkers = 64,
    json_output: Json = False,
    endpoint_url: Endpoint = None,
    region: Region = None,
    profile: Profile = None,
    debug: Debug = False,
) -> None:
    """Make the destination match the source (new or changed files; --delete removes extras)."""
    out = _output(json_output, quiet, only_show_errors, no_progress)
    filters = ordered_filters(_ARGV)
    if is_s3_url(source) == is_s3_url(destination):
        _usage(out, "sync needs one local directory and one s3:// URL")

    async def work() -> int:
        async with _client(
            endpoint_url,
            region,
            profile,
            max_ratio=max_ratio,
            transfers=transfers,
            checkers=checkers,
        ) as dg:
            upload = not is_s3_url(source)
            local = Path(destination if upload is False else source)
            remote = parse_s3_url(destination if upload else source)
            if upload and not local.is_dir():
                raise DeltaGliderError(f"{local}: no such directory", code="NoSuchFile")
            local_entries = await _local_entries(local, filters, checksum) if local.is_dir() else {}
            remote_entries, remote_keys = await _remote_entries(dg, remote, filters, checksum)
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
            summary = Summary("upload" if upload else "download")
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
                verb = "upload" if upload else "download"
                for rel in plan.transfer:
                    out.result(f"(dryrun) {verb}: {rel}", {"op": verb, "dryrun": True, "path": rel})
                for rel in plan.delete:
                    out.result(
                        f"(dryrun) delete: {rel}", {"op": "delete", "dryrun": True, "path": rel}
                    )
                return EXIT_OK
            if upload:
                with TransferProgress(
                    out, sum(p.stat().st_size for p, _ in items), len(items)
                ) as bars:
                    results = await dg.upload_many(
                        items, max_ratio=max_ratio, no_delta=no_delta, progress=bars
                    )
                _report_results(out, summary, "upload", results)
                if plan.delete:
                    resp = await dg.delete_objects(
                        Bucket=remote.bucket,
                        Delete={"Objects": [{"Key": remote_keys[r]} for r in plan.delete]},
                    )
                    for item in resp["Deleted"]:
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
            return EXIT_FAILED if summary.failed else EXIT_OK

    _execute(work, out, debug)


async def _local_entries(
    root: Path, filters: list[PathFilter], checksum: bool
) -> dict[str, SyncEntry]:
    entries = {}
    for path, rel in _local_files(root, filters):
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
    dg: AsyncDeltaGliderClient, remote: S3Url, filters: list[PathFilter], checksum: bool
) -> tuple[dict[str, SyncEntry], dict[str, str]]:
    entries: dict[str, SyncEntry] = {}
    keys: dict[str, str] = {}
    for rel, entry in await _s3_objects(dg, remote, filters, metadata=True):
        keys[rel] = entry["Key"]
        entries[rel] = SyncEntry(entry["Size"], entry["LastModified"].timestamp())
    if checksum:
        limiter = anyio.CapacityLimiter(dg.transfer.max_heads)

        async def fill(rel: str) -> None:
            async with limiter:
                head = await dg.head_object(Bucket=remote.bucket, Key=keys[rel])
            sha = head["DeltaGliderInfo"].get("Sha256")
            entries[rel] = SyncEntry(entries[rel].size, entries[rel].mtime, sha)

        async with task_group() as tg:
            for rel in list(entries):
                tg.start_soon(fill, rel)
    return entries, keys


# ------------------------------------------------------------------------------------------ migrate
@app.command()
def migrate(
    source: Annotated[str, typer.Argument(help="s3://bucket/prefix/ (plain or delta objects)")],
    destination: Annotated[str, typer.Argument(help="s3://bucket/prefix/ to store in delta form")],
    exclude: Excludes = None,
    include: Includes = None,
    dryrun: DryRun = False,
    quiet: Quiet = False,
    only_show_errors: OnlyErrors = False,
    max_ratio: MaxRatio = None,
    transfers: Transfers = DEFAULT_TRANSFERS,
    json_output: Json = False,
    endpoint_url: Endpoint = None,
    region: Region = None,
    profile: Profile = None,
    debug: Debug = False,
) -> None:
    """Copy a prefix into delta form; re-running skips what is already there (resumable)."""
    out = _output(json_output, quiet, only_show_errors, True)
    filters = ordered_filters(_ARGV)
    if not (is_s3_url(source) and is_s3_url(destination)):
        _usage(out, "migrate copies between s3:// URLs")

    async def work() -> int:
        src, dst = parse_s3_url(source), parse_s3_url(destination)
        async with _client(
            endpoint_url, region, profile, max_ratio=max_ratio, transfers=transfers
        ) as dg:
            todo = await _migration_plan(dg, src, dst, filters)
            summary = Summary("migrate")
            if dryrun:
                for src_key, dst_key in todo:
                    out.result(
                        f"(dryrun) migrate: s3://{src.bucket}/{src_key} to "
                        f"s3://{dst.bucket}/{dst_key}",
                        {"op": "migrate", "dryrun": True, "key": src_key},
                    )
                return EXIT_OK
            limiter = anyio.CapacityLimiter(transfers)

            async def one(src_key: str, dst_key: str) -> None:
                line = f"s3://{src.bucket}/{src_key} to s3://{dst.bucket}/{dst_key}"
                record = {
                    "op": "migrate",
                    "source": f"s3://{src.bucket}/{src_key}",
                    "destination": f"s3://{dst.bucket}/{dst_key}",
                }
                async with limiter:
                    info = await _server_copy(
                        dg, out, summary, record, (src.bucket, src_key), (dst.bucket, dst_key)
                    )
                if info is None:
                    return
                out.result(
                    f"migrate: {line} ({info['StoredAs']} {human(info['StoredSize'])})",
                    {
                        **record,
                        "ok": True,
                        "stored_as": info["StoredAs"],
                        "stored_size": info["StoredSize"],
                    },
                )

            # The first object of each destination space goes alone: it becomes the reference.
            firsts: dict[str, tuple[str, str]] = {}
            rest: list[tuple[str, str]] = []
            for pair in todo:
                space = space_of(pair[1])
                if space in firsts:
                    rest.append(pair)
                else:
                    firsts[space] = pair
            async with task_group() as tg:
                for pair in firsts.values():
                    tg.start_soon(one, *pair)
            async with task_group() as tg:
                for pair in rest:
                    tg.start_soon(one, *pair)
            if out.json_mode:
                summary.render(out)
            return EXIT_FAILED if summary.failed else EXIT_OK

    _execute(work, out, debug)


async def _migration_plan(
    dg: AsyncDeltaGliderClient, src: S3Url, dst: S3Url, filters: list[PathFilter]
) -> list[tuple[str, str]]:
    """Source objects not yet at the destination with the same size (and SHA-256 when known)."""
    base = _prefix_of(dst) if dst.key else ""
    present = {rel: e for rel, e in await _s3_objects(dg, dst, filters, metadata=True)}
    todo = []
    for rel, entry in await _s3_objects(dg, src, filters, metadata=True):
        done = present.get(rel)
        if done is not None and done["Size"] == entry["Size"]:
            ours, theirs = (
                done["DeltaGliderInfo"].get("Sha256"),
                entry["DeltaGliderInfo"].get("Sha256"),
            )
            if ours is None or theirs is None or ours == theirs:
                continue
        todo.append((entry["Key"], base + rel))
    return todo


# ------------------------------------------------------------------------------------------ stats
@app.command()
def stats(
    bucket: Annotated[str, typer.Argument(help="bucket, s3://bucket or s3://bucket/prefix")],
    quick: Annotated[bool, typer.Option("--quick", help="listing only (estimated)")] = False,
    sampled: Annotated[bool, typer.Option("--sampled", help="HEAD a sample per space")] = False,
    detailed: Annotated[bool, typer.Option("--detailed", help="HEAD every delta")] = False,
    refresh: Annotated[bool, typer.Option("--refresh", help="ignore cached results")] = False,
    checkers: Checkers = 64,
    json_output: Json = False,
    endpoint_url: Endpoint = None,
    region: Region = None,
    profile: Profile = None,
    debug: Debug = False,
) -> None:
    """How much delta compression saves in a bucket."""
    out = _output(json_output, False, False, True)
    if quick + sampled + detailed > 1:
        _usage(out, "choose one of --quick, --sampled, --detailed")
    mode = "detailed" if detailed else "sampled" if sampled else "quick"
    try:
        target = parse_s3_url(bucket if is_s3_url(bucket) else f"s3://{bucket}")
    except InvalidArgumentError as exc:
        _usage(out, str(exc))

    async def work() -> int:
        async with _client(endpoint_url, region, profile, checkers=checkers) as dg:
            result = await dg.bucket_stats(
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

    _execute(work, out, debug)


# ------------------------------------------------------------------------------------------ verify
@app.command()
def verify(
    url: Annotated[str, typer.Argument(help="s3://bucket/key (logical or stored .delta name)")],
    json_output: Json = False,
    endpoint_url: Endpoint = None,
    region: Region = None,
    profile: Profile = None,
    debug: Debug = False,
) -> None:
    """Rebuild an object and check its SHA-256; exit 1 on mismatch."""
    out = _output(json_output, False, False, True)

    async def work() -> int:
        async with _client(endpoint_url, region, profile) as dg:
            result = await dg.verify(url)
        record = {"op": "verify", **result.as_dict()}
        where = f"s3://{result.bucket}/{result.key}"
        if result.valid:
            out.result(
                f"verified: {where} ({result.stored_as}, sha256 {result.actual_sha256})", record
            )
            return EXIT_OK
        out.error(f"MISMATCH: {where}: {result.message}", record)
        return EXIT_FAILED

    _execute(work, out, debug)


def run() -> None:
    """Console entry point: keeps raw arguments for ordered filters, maps exit codes."""
    _ARGV[:] = sys.argv[1:]
    try:
        app(prog_name="deltaglider-async")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    run()

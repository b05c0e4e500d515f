"""What every command shares: options declared once, filters in command-line order, the client,
outcome-to-exit-code mapping, and the helpers that list and report transfers."""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import math
import os
import signal
import sys
import traceback
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import typer
from typer.core import TyperCommand

try:  # Typer 0.29 and later vendor Click
    from typer._click.exceptions import NoSuchOption
except ImportError:  # pragma: no cover - older Typer on Click itself
    from click.exceptions import NoSuchOption  # type: ignore[assignment]

from deltaglider_async import (
    DELTA_FORMATS,
    AsyncDeltaGliderClient,
    DeltaGliderError,
    InvalidArgumentError,
    TransferConfig,
    TransferResult,
    __version__,
)
from deltaglider_async.aws import (
    PathFilter,
    S3Url,
    is_included,
    is_s3_url,
    parse_s3_url,
    safe_local_relpath,
)
from deltaglider_async.dask import ClientSpec

from ._render import ItemProgress, Output, Summary, TransferProgress, human

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_FATAL = 0, 1, 2, 130, 255
#: 128 + SIGTERM, what a shell reports for a process SIGTERM ended.
EXIT_TERMINATED = 143
F = TypeVar("F", bound=Callable[..., Any])

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
DeltaFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--delta-format",
        help="format of new deltas: vcdiff (default, deltaglider-compatible) or archive "
        "(zip/jar/wheel/gzip members; default: DG_DELTA_FORMAT)",
    ),
]
DEFAULT_TRANSFERS = TransferConfig.max_files
Transfers = Annotated[int, typer.Option("--transfers", min=1, help="files in flight")]
Checkers = Annotated[int, typer.Option("--checkers", min=1, help="concurrent HEAD requests")]
DaskOpt = Annotated[
    str | None,
    typer.Option(
        "--dask",
        metavar="SCHEDULER",
        help="run on a Dask cluster: a scheduler address (tcp://host:8786) or local[:N] "
        "(N local worker processes); needs the dask extra",
    ),
]

#: Options every command takes, before or after its name (``--endpoint-url`` as aws has it).
SHARED_OPTIONS: dict[str, tuple[Any, Any]] = {
    "endpoint_url": (
        Annotated[
            str | None,
            typer.Option("--endpoint-url", help="S3 endpoint (default: AWS_ENDPOINT_URL)"),
        ],
        None,
    ),
    "region": (Annotated[str | None, typer.Option("--region", help="AWS region")], None),
    "profile": (Annotated[str | None, typer.Option("--profile", help="AWS profile")], None),
    "debug": (Annotated[bool, typer.Option("--debug", help="show tracebacks")], False),
    "page_size": (
        Annotated[
            int | None,
            typer.Option("--page-size", min=1, max=1000, help="keys per listing request"),
        ],
        None,
    ),
    "show_savings": (
        Annotated[
            bool,
            typer.Option(
                "--show-savings",
                help="end each upload line with how it is stored (delta/direct, size, saving)",
            ),
        ],
        False,
    ),
}


def _text(flag: str, help_text: str) -> tuple[Any, Any]:
    return Annotated[str | None, typer.Option(flag, help=help_text)], None


#: aws-cli's options for what is stored with each uploaded object (``cp``, ``mv``, ``sync``),
#: by the PutObject parameter each one sets
UPLOAD_OPTIONS: dict[str, tuple[str, tuple[Any, Any]]] = {
    "content_type": ("ContentType", _text("--content-type", "Content-Type of every file")),
    "cache_control": ("CacheControl", _text("--cache-control", "Cache-Control header")),
    "content_disposition": (
        "ContentDisposition",
        _text("--content-disposition", "Content-Disposition header"),
    ),
    "content_encoding": ("ContentEncoding", _text("--content-encoding", "Content-Encoding")),
    "content_language": ("ContentLanguage", _text("--content-language", "Content-Language")),
    "expires": ("Expires", _text("--expires", "Expires header (ISO 8601 date)")),
    "storage_class": (
        "StorageClass",
        _text("--storage-class", "STANDARD, STANDARD_IA, INTELLIGENT_TIERING, GLACIER_IR…"),
    ),
    "acl": ("ACL", _text("--acl", "canned ACL: private, public-read, bucket-owner-full-control…")),
    "sse": ("ServerSideEncryption", _text("--sse", "server-side encryption: AES256 or aws:kms")),
    "sse_kms_key_id": ("SSEKMSKeyId", _text("--sse-kms-key-id", "KMS key for --sse aws:kms")),
    "website_redirect": (
        "WebsiteRedirectLocation",
        _text("--website-redirect", "WebsiteRedirectLocation of every file"),
    ),
    "metadata": ("Metadata", _text("--metadata", "user metadata: JSON or key=value,key=value")),
    "metadata_directive": (
        "MetadataDirective",
        _text(
            "--metadata-directive",
            "COPY or REPLACE: whether a copy within S3 keeps its source's metadata and content"
            " headers (REPLACE when --metadata is given)",
        ),
    ),
    "no_guess_mime_type": (
        "",
        (
            Annotated[
                bool,
                typer.Option("--no-guess-mime-type", help="no Content-Type from file names"),
            ],
            False,
        ),
    ),
}


def _put_args(given: dict[str, Any]) -> dict[str, Any]:
    """PutObject parameters from the upload options given (``--metadata`` parsed)."""
    args: dict[str, Any] = {}
    for name, (parameter, _) in UPLOAD_OPTIONS.items():
        value = given.get(name)
        if parameter and value is not None:
            args[parameter] = _metadata(value) if parameter == "Metadata" else value
    if args.get("MetadataDirective", "COPY") not in ("COPY", "REPLACE"):
        raise InvalidArgumentError("--metadata-directive must be COPY or REPLACE")
    return args


def _metadata(text: str) -> dict[str, str]:
    """``--metadata`` as aws-cli reads it: a JSON object, or ``key=value,key=value``."""
    if text.lstrip().startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError as exc:
            raise InvalidArgumentError(f"--metadata is not valid JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise InvalidArgumentError("--metadata must be a JSON object")
        return {str(k): str(v) for k, v in parsed.items()}
    pairs = [item.partition("=") for item in text.split(",") if item]
    if any(not sep or not key for key, sep, _ in pairs):
        raise InvalidArgumentError(f"--metadata must be key=value,key=value: {text!r}")
    return {key: value for key, _, value in pairs}


class CommandFailed(Exception):
    """Some operations failed; their errors were already printed."""


class LocalPathError(DeltaGliderError):
    """A local path the command names does not exist: the command cannot start (aws: 255)."""

    code = "NoSuchFile"

    def __init__(self, path: Path | str) -> None:
        super().__init__(f"The user-provided path {path} does not exist.")


@dataclass
class Settings:
    """The shared options in force for one command, and its filters in command-line order."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    debug: bool = False
    show_savings: bool = False
    #: keys per listing request (``--page-size``; None: S3's 1,000)
    page_size: int | None = None
    filters: list[PathFilter] = field(default_factory=list)
    #: PutObject parameters from the upload options (``cp``, ``mv``, ``sync``)
    put_args: dict[str, Any] = field(default_factory=dict)
    #: aws-cli guesses each uploaded file's Content-Type from its name unless told not to
    guess_mime_type: bool = True
    metadata_directive: str | None = None

    @property
    def copy_args(self) -> dict[str, Any]:
        """CopyObject parameters for copies within S3: the upload options, with aws-cli's
        metadata directive (REPLACE when ``--metadata`` is given and no directive)."""
        directive = self.metadata_directive or ("REPLACE" if "Metadata" in self.put_args else None)
        return {**self.put_args, "MetadataDirective": directive} if directive else self.put_args

    def spec(
        self,
        *,
        max_ratio: float | None = None,
        transfers: int = DEFAULT_TRANSFERS,
        checkers: int = 64,
        delta_format: str | None = None,
    ) -> ClientSpec:
        """The client these options describe, as a recipe that cluster workers can follow."""
        return ClientSpec(
            self.endpoint_url,
            region_name=self.region,
            profile_name=self.profile,
            max_ratio=max_ratio,
            delta_format=delta_format,
            transfer=TransferConfig(max_files=transfers, max_heads=checkers),
        )

    def client(
        self,
        *,
        max_ratio: float | None = None,
        transfers: int = DEFAULT_TRANSFERS,
        checkers: int = 64,
        delta_format: str | None = None,
    ) -> AsyncDeltaGliderClient:
        return self.spec(
            max_ratio=max_ratio, transfers=transfers, checkers=checkers, delta_format=delta_format
        ).build()

    def execute(
        self, work: Callable[[], Awaitable[int | None]], out: Output, *, transfers: bool = False
    ) -> None:
        """Run ``work`` to its exit code. ``transfers`` (cp, mv, rm, sync): an error that stops
        the command once it started is aws-cli's "fatal error", exit 1, not 255."""
        out.show_savings = self.show_savings
        _execute(work, out, self.debug, EXIT_FAILED if transfers else EXIT_FATAL)


class DGCommand(TyperCommand):
    """Recovers the relative order of ``--exclude``/``--include`` from Click's own parse (Click
    keeps each repeatable option in a list of its own; aws semantics need the interleaving)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            opts, _, order = self.make_parser(ctx).parse_args(args=list(args))
        except NoSuchOption as exc:
            # aws-cli's answer and exit code for an option it does not know
            typer.echo(f"\nUnknown options: {exc.option_name}\n", err=True)
            raise typer.Exit(EXIT_FATAL) from None
        pending = {kind: list(opts.get(kind) or []) for kind in ("exclude", "include")}
        filters = []
        for param in order:
            kind = getattr(param, "name", None)
            if kind == "exclude" or kind == "include":
                values = pending[kind]
                if values:
                    filters.append(PathFilter(kind, values.pop(0)))
        ctx.meta["dg.filters"] = filters
        result: list[str] = super().parse_args(ctx, args)
        return result


def _own_parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    """``func``'s parameters with their annotations resolved (the module uses postponed ones)."""
    hints = typing.get_type_hints(func, include_extras=True)
    return [
        p.replace(annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(func).parameters.values()
        if p.name not in ("settings", "move")  # ``move``: cp's flag, set by mv
    ]


def _shared_parameters(uploads: bool = False) -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    options = {**SHARED_OPTIONS}
    if uploads:
        options.update({name: spec for name, (_, spec) in UPLOAD_OPTIONS.items()})
    found = [
        inspect.Parameter(name, keyword, default=default, annotation=kind)
        for name, (kind, default) in options.items()
    ]
    return [*found, inspect.Parameter("dg_context", keyword, annotation=typer.Context)]


def _present_as(func: Callable[..., Any], parameters: list[inspect.Parameter]) -> None:
    """Make Typer read ``parameters`` as ``func``'s own."""
    func.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    func.__annotations__ = {p.name: p.annotation for p in parameters}


def command(app: typer.Typer, *, uploads: bool = False) -> Callable[[F], F]:
    """Register a command that receives the shared options, given before its name (on the app)
    or after it, as one ``settings: Settings`` argument (with ``uploads``, also aws-cli's
    options for what is stored with each file)."""

    def register(func: F) -> F:
        @functools.wraps(func)
        def with_settings(**kwargs: Any) -> Any:
            ctx: typer.Context = kwargs.pop("dg_context")
            before = ctx.find_root().obj or {}
            given = {name: kwargs.pop(name) for name in SHARED_OPTIONS}
            chosen = {name: given[name] or before.get(name, given[name]) for name in given}
            upload = {name: kwargs.pop(name) for name in UPLOAD_OPTIONS if name in kwargs}
            try:
                put_args = _put_args(upload)
                directive = put_args.pop("MetadataDirective", None)
            except InvalidArgumentError as exc:
                typer.echo(f"usage error: {exc}", err=True)
                raise typer.Exit(EXIT_USAGE) from None
            settings = Settings(
                **chosen,
                filters=ctx.meta.get("dg.filters", []),
                put_args=put_args,
                guess_mime_type=not upload.get("no_guess_mime_type", False),
                metadata_directive=directive,
            )
            return func(**kwargs, settings=settings)

        _present_as(with_settings, [*_own_parameters(func), *_shared_parameters(uploads)])
        app.command(cls=DGCommand)(with_settings)
        return func

    return register


def shared_callback(app: typer.Typer) -> None:
    """The shared options before the command name (``deltaglider-async --endpoint-url U ls``)."""

    def remember(**kwargs: Any) -> None:
        ctx: typer.Context = kwargs.pop("dg_context")
        kwargs.pop("version")
        ctx.obj = kwargs

    version = inspect.Parameter(
        "version",
        inspect.Parameter.KEYWORD_ONLY,
        default=False,
        annotation=Annotated[
            bool,
            typer.Option(
                "--version",
                help="print the version and exit",
                is_eager=True,
                callback=_print_version,
            ),
        ],
    )
    _present_as(remember, [*_shared_parameters(), version])
    app.callback()(remember)


def _print_version(wanted: bool) -> None:
    """``--version`` as aws-cli prints its own: the tool's and Python's versions."""
    if wanted:
        python = ".".join(map(str, sys.version_info[:3]))
        typer.echo(f"deltaglider-async/{__version__} Python/{python} {sys.platform}")
        raise typer.Exit(EXIT_OK)


class _Terminated(Exception):
    """SIGTERM arrived: the command was cancelled and has cleaned up."""


async def _until_signalled(work: Callable[[], Awaitable[int | None]]) -> int | None:
    """Run ``work``; Ctrl-C and SIGTERM (``timeout``, CI cancellation, ``docker stop``) cancel
    it, so that temp files go, multipart uploads are aborted and partial files removed.

    Both go through the command's cancel scope, the path SIGTERM always took, rather than
    asyncio's own Ctrl-C handling (a native cancel of the task): in one run of the suite under
    load, a Ctrl-C during an upload was not acted on that way and the upload went on to exit 0.
    A second Ctrl-C stops at once."""
    loop = asyncio.get_running_loop()
    received: list[int] = []
    with anyio.CancelScope() as scope:

        def cancel(signum: int) -> None:
            if signum == signal.SIGINT and signal.SIGINT in received:
                raise KeyboardInterrupt
            received.append(signum)
            scope.cancel()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, cancel, signum)
        try:
            return await work()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    if received and received[0] == signal.SIGINT:
        raise KeyboardInterrupt
    if received:
        raise _Terminated
    return None


def _execute(
    work: Callable[[], Awaitable[int | None]], out: Output, debug: bool, fatal: int
) -> None:
    """Run one command's coroutine and turn every outcome into its exit code (``fatal``: an
    error that stopped it)."""
    try:
        code = anyio.run(_until_signalled, work, backend="asyncio") or EXIT_OK
    except KeyboardInterrupt:
        out.err.print("interrupted", markup=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except _Terminated:
        out.err.print("terminated", markup=False)
        raise typer.Exit(EXIT_TERMINATED) from None
    except CommandFailed:
        raise typer.Exit(EXIT_FAILED) from None
    except LocalPathError as exc:
        _report(out, exc, debug)
        raise typer.Exit(EXIT_FATAL) from None
    except InvalidArgumentError as exc:
        _report(out, exc, debug)
        raise typer.Exit(EXIT_USAGE if fatal == EXIT_FATAL else fatal) from None
    except (DeltaGliderError, OSError) as exc:
        # aws-cli: a transfer command that stops on an error exits 1 ("fatal error"), other
        # commands 255; 1 is also for transfers that failed one by one.
        _report(out, exc, debug)
        raise typer.Exit(fatal) from None
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
    """A local path as aws-cli prints it: relative to the working directory (``./a.zip``,
    ``dist/a.zip``, ``../x/a.zip``), whatever form it was given in."""
    if is_s3_url(path) or path == "-":
        return path
    directory, name = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.relpath(directory), name)


def _saved_text(
    original: int, stored: int, kind: str, reason: str = "", reference: int | None = None
) -> str:
    if reference is not None:
        return f"(new reference {human(reference)} + delta {human(stored - reference)})"
    if kind == "delta":
        # floor, so that 99.97 % does not read as a perfect 100.0 %
        pct = math.floor(1000 * (1 - stored / original)) / 10 if original else 0.0
        return f"(delta {human(stored)}, {pct:.1f}% saved{', ' + reason if reason else ''})"
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
                up.original_size,
                up.stored_size,
                up.stored_as,
                up.reason,
                up.reference_size if up.reference_created else None,
            )
            out.result(
                f"{verb}: {_display(result.source)} to {up.url}{out.savings(saved)}",
                {**record, "ok": True, **up.as_dict()},
            )
        elif result.download is not None:
            down = result.download
            summary.add(down.size, down.size, down.stored_as)
            out.result(
                f"{verb}: {result.source} to {_display(down.path)}",
                {**record, "ok": True, **down.as_dict()},
            )


def _local_files(
    root: Path, filters: list[PathFilter], out: Output, summary: Summary
) -> list[tuple[Path, str]]:
    """Regular files under ``root`` with their ``/``-separated relative paths, filtered; a
    dangling symlink is skipped with aws-cli's warning (and exit code 2)."""
    found: list[tuple[Path, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if not is_included(rel, filters):
                continue
            if path.is_file():
                found.append((path, rel))
            elif path.is_symlink() and not path.exists():
                summary.skipped += 1
                out.error(
                    f"warning: Skipping file {path.absolute()}. File does not exist.",
                    {"op": "skip", "source": str(path), "error": "dangling symlink"},
                )
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
    dg: AsyncDeltaGliderClient,
    url: S3Url,
    filters: list[PathFilter],
    *,
    metadata: bool = False,
    page_size: int | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Logical objects under a prefix as (relative key, listing entry), filtered."""
    prefix = _prefix_of(url) if url.key else ""
    found = []
    async for entry in dg.iter_objects(
        url.bucket, prefix, fetch_metadata=metadata, page_size=page_size
    ):
        rel = entry["Key"][len(prefix) :]
        if rel and is_included(rel, filters):
            found.append((rel, entry))
    return found


def check_delta_format(out: Output, value: str | None) -> None:
    if value is not None and value.strip().lower() not in DELTA_FORMATS:
        _usage(out, f"--delta-format must be one of {', '.join(DELTA_FORMATS)}: {value!r}")


def _usage(out: Output, message: str) -> NoReturn:
    out.err.print(f"usage error: {message}", markup=False, soft_wrap=True)
    raise typer.Exit(EXIT_USAGE)


def show_dryrun(out: Output, verb: str, pairs: list[tuple[str, str]]) -> int:
    for source, destination in pairs:
        out.result(
            f"(dryrun) {verb}: {_display(source)} to {_display(destination)}",
            {"op": verb, "dryrun": True, "source": source, "destination": destination},
        )
    return EXIT_OK


async def upload_items(
    dg: AsyncDeltaGliderClient,
    out: Output,
    items: list[tuple[Path, str]],
    settings: Settings,
    max_ratio: float | None,
    no_delta: bool,
) -> list[TransferResult]:
    """Upload ``(file, url)`` pairs with progress bars and the upload options given."""
    total = sum(path.stat().st_size for path, _ in items)
    with TransferProgress(out, total, len(items)) as bars:
        return await dg.upload_many(
            items,
            max_ratio=max_ratio,
            no_delta=no_delta,
            extra_args=settings.put_args,
            guess_content_type=settings.guess_mime_type,
            progress=bars,
        )


async def copy_in_s3(
    dg: AsyncDeltaGliderClient,
    out: Output,
    verb: str,
    pairs: list[tuple[str, str]],
    dryrun: bool,
    settings: Settings,
    *,
    move: bool = False,
) -> int:
    """``cp`` (or ``mv``) within S3: the SDK's bulk copy, one line per object."""
    if dryrun:
        return show_dryrun(out, verb, pairs)
    with ItemProgress(out, len(pairs)) as bar:
        results = await dg.copy_many(pairs, progress=bar.event, extra_args=settings.copy_args)
    summary = Summary(verb)
    report_copies(out, summary, verb, results)
    if move:
        await remove_moved(dg, out, summary, results)
    summary.render(out)
    return summary.exit_code()


async def remove_moved(
    dg: AsyncDeltaGliderClient, out: Output, summary: Summary, results: list[TransferResult]
) -> None:
    """``mv``: delete the S3 sources whose copy was stored (batched, per bucket)."""
    by_bucket: dict[str, list[str]] = {}
    for result in results:
        if result.error is None and result.source != result.destination:
            source = parse_s3_url(result.source)
            by_bucket.setdefault(source.bucket, []).append(source.key)
    for bucket, keys in by_bucket.items():
        for start in range(0, len(keys), 1000):
            objects = [{"Key": key} for key in keys[start : start + 1000]]
            resp = await dg.delete_objects(
                Bucket=bucket, Delete={"Objects": objects, "Quiet": True}
            )
            for item in resp.get("Errors", []):
                summary.failed += 1
                out.error(
                    f"delete failed: s3://{bucket}/{item['Key']}: {item['Message']}",
                    {"op": "delete", "key": item["Key"], "error": item["Message"]},
                )


def report_copies(
    out: Output,
    summary: Summary,
    verb: str,
    results: list[TransferResult],
    *,
    show_stored: bool = False,
) -> None:
    """One line per copy (``show_stored``: with how it is stored), counted in ``summary``."""
    for result in results:
        record: dict[str, Any] = {
            "op": verb,
            "source": result.source,
            "destination": result.destination,
        }
        if result.error is not None or result.upload is None:
            summary.failed += 1
            out.error(
                f"{verb} failed: {result.source} to {result.destination}: {result.error}",
                {**record, "error": str(result.error)},
            )
            continue
        up = result.upload
        summary.add(up.original_size, up.stored_size, up.stored_as)
        stored = f" ({up.stored_as} {human(up.stored_size)})" if show_stored else ""
        out.result(
            f"{verb}: {result.source} to {result.destination}{stored}",
            {**record, "ok": True, "stored_as": up.stored_as, "stored_size": up.stored_size},
        )

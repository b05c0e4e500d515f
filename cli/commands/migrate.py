"""``migrate``: copy a prefix (plain objects or any deltaglider dialect) into delta form."""

from __future__ import annotations

from typing import Annotated

import typer

from deltaglider_async.aws import is_s3_url, parse_s3_url
from deltaglider_async.dask import connect

from .._app import app
from .._common import (
    DEFAULT_TRANSFERS,
    EXIT_OK,
    DaskOpt,
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
    _usage,
    check_delta_format,
    command,
    report_copies,
    show_dryrun,
)
from .._render import ItemProgress, Summary


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
    dask: DaskOpt = None,
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """Copy a prefix into delta form; re-running skips what is already there (resumable)."""
    out = _output(json_output, quiet, only_show_errors, False)
    check_delta_format(out, delta_format)
    if not (is_s3_url(source) and is_s3_url(destination)):
        _usage(out, "migrate copies between s3:// URLs")
    spec = settings.spec(max_ratio=max_ratio, transfers=transfers, delta_format=delta_format)

    async def work() -> int:
        async with spec.build() as dg:
            steps = await dg.plan_migration(
                source, destination, filters=settings.filters, delta_format=delta_format
            )
            if dryrun:
                return show_dryrun(out, "migrate", [(s.source, s.destination) for s in steps])
            with ItemProgress(out, len(steps)) as bar:
                if dask is None:
                    results = await dg.migrate(steps, progress=bar.event)
                else:
                    async with connect(dask, spec) as cluster:
                        results = await cluster.migrate(steps, on_result=bar.item)
            summary = Summary("migrate")
            report_copies(out, summary, "migrate", results, show_stored=True)
            # Every object converted into the format asked for: then the references (without
            # --delta-format, migrate converts no format, so it leaves references alone too).
            if delta_format is not None and summary.exit_code() == EXIT_OK:
                bucket = parse_s3_url(destination).bucket
                for key in await dg.reform_references(destination):
                    out.note(f"reference stored again in the format's form: s3://{bucket}/{key}")
            summary.render(out)
            return summary.exit_code()

    settings.execute(work, out)

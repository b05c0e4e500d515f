"""``verify``: rebuild objects and check their SHA-256."""

from __future__ import annotations

from typing import Annotated

import typer

from deltaglider_async import VerifyResult
from deltaglider_async.aws import is_s3_url, parse_s3_url
from deltaglider_async.dask import connect

from .._app import app
from .._common import (
    EXIT_FAILED,
    EXIT_OK,
    DaskOpt,
    Excludes,
    Includes,
    Json,
    Recursive,
    Settings,
    _output,
    _s3_objects,
    _usage,
    command,
)
from .._render import ItemProgress, Output


@command(app)
def verify(
    url: Annotated[str, typer.Argument(help="s3://bucket/key (logical or stored .delta name)")],
    recursive: Recursive = False,
    exclude: Excludes = None,
    include: Includes = None,
    dask: DaskOpt = None,
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """Rebuild objects and check their SHA-256; exit 1 on any mismatch."""
    out = _output(json_output, False, False, not recursive)
    if not is_s3_url(url):
        _usage(out, f"verify needs an s3:// URL: {url!r}")
    spec = settings.spec()

    async def work() -> int:
        async with spec.build() as dg:
            if not recursive:
                return _report(out, await dg.verify_many([url]))  # missing: exit 1
            listed = await _s3_objects(dg, parse_s3_url(url), settings.filters)
            target = parse_s3_url(url)
            urls = [f"s3://{target.bucket}/{entry['Key']}" for _, entry in listed]
            with ItemProgress(out, len(urls)) as bar:
                if dask is None:
                    results = await dg.verify_many(urls, on_result=bar.item)
                else:
                    sizes = [int(entry["Size"]) for _, entry in listed]
                    async with connect(dask, spec) as cluster:
                        results = await cluster.verify(urls, sizes=sizes, on_result=bar.item)
        code = _report(out, results)
        out.note(
            f"verify: {len(results)} object(s), "
            f"{sum(not r.valid for r in results)} failed, {out.elapsed():.1f}s"
        )
        return code

    settings.execute(work, out)


def _report(out: Output, results: list[VerifyResult]) -> int:
    code = EXIT_OK
    for result in results:
        record = {"op": "verify", **result.as_dict()}
        where = f"s3://{result.bucket}/{result.key}"
        if result.valid:
            out.result(
                f"verified: {where} ({result.stored_as}, sha256 {result.actual_sha256})", record
            )
        else:
            out.error(f"MISMATCH: {where}: {result.message}", record)
            code = EXIT_FAILED
    return code

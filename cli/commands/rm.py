"""``rm``: delete logical objects (a space's reference goes with its last delta)."""

from __future__ import annotations

from typing import Annotated

import typer

from deltaglider_async.aws import (
    parse_s3_url,
)

from .._app import app
from .._common import (
    EXIT_OK,
    DryRun,
    Excludes,
    Includes,
    Json,
    OnlyErrors,
    Quiet,
    Recursive,
    Settings,
    _output,
    _s3_objects,
    command,
)
from .._render import Summary


@command(app)
def rm(
    url: Annotated[str, typer.Argument(help="s3://bucket/key, or a prefix with --recursive")],
    recursive: Recursive = False,
    exclude: Excludes = None,
    include: Includes = None,
    dryrun: DryRun = False,
    quiet: Quiet = False,
    only_show_errors: OnlyErrors = False,
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """Delete logical objects (their references go when the last delta of a space goes)."""
    out = _output(json_output, quiet, only_show_errors, True)
    filters = settings.filters

    async def work() -> int:
        target = parse_s3_url(url)
        async with settings.client() as dg:
            if recursive:
                keys = [e["Key"] for _, e in await _s3_objects(dg, target, filters)]
            else:
                keys = [target.key]  # ``p/``: the folder marker, as aws-cli deletes it
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
            return summary.exit_code()

    settings.execute(work, out, transfers=True)

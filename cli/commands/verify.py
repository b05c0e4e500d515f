"""``verify``: rebuild an object and check its SHA-256."""

from __future__ import annotations

from typing import Annotated

import typer

from .._app import app
from .._common import (
    EXIT_FAILED,
    EXIT_OK,
    Json,
    Settings,
    _output,
    command,
)


@command(app)
def verify(
    url: Annotated[str, typer.Argument(help="s3://bucket/key (logical or stored .delta name)")],
    json_output: Json = False,
    *,
    settings: Settings,
) -> None:
    """Rebuild an object and check its SHA-256; exit 1 on mismatch."""
    out = _output(json_output, False, False, True)

    async def work() -> int:
        async with settings.client() as dg:
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

    settings.execute(work, out)

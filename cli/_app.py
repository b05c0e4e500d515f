"""The Typer application every command module registers on."""

from __future__ import annotations

import typer

from ._common import shared_callback

app = typer.Typer(
    name="deltaglider-async",
    help="S3 storage for versioned artifacts as xdelta3 deltas (aws s3 style commands).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
shared_callback(app)

"""`longrm synth`: make training data (Short-to-Long padding, consistency majority voting)."""

from __future__ import annotations

import typer

synth_app = typer.Typer(
    help="Synthesize training data: Short-to-Long padding and consistency majority voting.",
    no_args_is_help=True,
)

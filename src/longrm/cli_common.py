"""What every `longrm` command module shares: the consoles, the model option, failing cleanly."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

console = Console(soft_wrap=True)  # paths and commands stay copyable: never wrapped
err_console = Console(stderr=True, soft_wrap=True)

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="'default' (SmolLM2-135M-Instruct), an HF id, a local path, or openai:NAME@URL.",
    ),
]


def fail(message: str) -> typer.Exit:
    """Print `message` as an error and return the exit to raise (status 2)."""
    err_console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code=2)

"""What every `longrm` command module shares: the consoles, the model option, failing cleanly."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypeVar, get_type_hints

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from longrm.items import ItemError, LoadResult, load_items
from longrm.options import (
    OptionError,
    RewardModelOptions,
    flag_name,
    option_fields,
)

R = TypeVar("R")
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


# The reward-model flags that `eval`, `serve` and `bon` share: derived from the one declaration
# (`longrm.options.RewardModelOptions`), so their names, types and help cannot drift apart.
def option_annotation(name: str) -> Any:
    """Return the typer annotation of the declared option `name`: its type, flag and help."""
    f = next(f for f in option_fields() if f.name == name)
    flag = flag_name(f)
    if flag is None:
        raise ValueError(f"option {name!r} has no flag")
    hints = get_type_hints(RewardModelOptions)
    if hints[name] is bool:  # typer spells a switch "--x/--no-x"
        decls = [] if flag == "--" + name.replace("_", "-") else [f"{flag}/--no-{flag[2:]}"]
    else:
        decls = [flag]
    return Annotated[hints[name], typer.Option(*decls, help=f.metadata["help"])]


def reward_model_flags(
    *, defaults: Mapping[str, Any] | None = None, exclude: Collection[str] = ()
) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Return a decorator that gives a typer command one flag per declared reward-model option.

    The command declares a parameter `options: RewardModelOptions`; the decorator replaces it,
    in the command's signature, by one parameter per field with a flag (minus `exclude`), each
    defaulting to the declaration's default or `defaults[name]`, and calls the command with
    the `RewardModelOptions` they make. An option that refuses its value ends the command with
    `--flag: reason`.
    """
    chosen = {**(defaults or {})}
    fields = [f for f in option_fields() if flag_name(f) and f.name not in exclude]

    def wrap(command: Callable[..., R]) -> Callable[..., R]:
        signature = inspect.signature(command, eval_str=True)
        slot = signature.parameters["options"]
        flags = [
            inspect.Parameter(
                f.name,
                slot.kind,
                default=chosen.get(f.name, f.default),
                annotation=option_annotation(f.name),
            )
            for f in fields
        ]
        params = [q for p in signature.parameters.values() for q in (flags if p is slot else [p])]

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> R:
            values = {f.name: kwargs.pop(f.name, chosen.get(f.name, f.default)) for f in fields}
            try:
                options = RewardModelOptions(**values)
            except OptionError as err:
                raise fail(f"{flag_name(_field(err.name))}: {err}") from None
            return command(*args, options=options, **kwargs)

        run.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        run.__annotations__ = {p.name: p.annotation for p in params}
        return run

    return wrap


def _field(name: str) -> dataclasses.Field[Any]:
    return next(f for f in option_fields() if f.name == name)


if TYPE_CHECKING:  # what type checkers see: the declared types (typer needs the flags too)
    KindOpt = str | None
    VerdictOpt = str
    PromptsOpt = Path | None
    PrefixCacheOpt = bool
    ThinkingOpt = bool
    MaxLengthOpt = int | None
    RopeScalingOpt = str | None
    DtypeOpt = str
    AttnOpt = str | None
    ConcurrencyOpt = int
    TimeoutOpt = float
    RetriesOpt = int
    PrefillOpt = bool
    OpenAIParamsOpt = str | None
else:
    KindOpt = option_annotation("kind")
    VerdictOpt = option_annotation("verdict")
    PromptsOpt = option_annotation("prompts_file")
    PrefixCacheOpt = option_annotation("prefix_cache")
    ThinkingOpt = option_annotation("thinking")
    MaxLengthOpt = option_annotation("max_length")
    RopeScalingOpt = option_annotation("rope_scaling")
    DtypeOpt = option_annotation("dtype")
    AttnOpt = option_annotation("attn_implementation")
    ConcurrencyOpt = option_annotation("concurrency")
    TimeoutOpt = option_annotation("timeout")
    RetriesOpt = option_annotation("retries")
    PrefillOpt = option_annotation("prefill")
    OpenAIParamsOpt = option_annotation("openai_params")

# The interval flags that `eval`, `report` and `bench audit` share.
CiLevelOpt = Annotated[
    float, typer.Option(help="Confidence level of every interval (accuracies, differences).")
]
BootstrapOpt = Annotated[
    int,
    typer.Option(
        help="Bootstrap resamples of items per interval (0: Wilson intervals only, none for "
        "differences)."
    ),
]
CiSeedOpt = Annotated[int, typer.Option(help="Seed of the bootstrap resamples.")]


def reward_model_options(**flags: Any) -> RewardModelOptions:
    """Return the RewardModelOptions that the shared flags describe, the flags named
    as their parameters are (`prompts`, `attn`, `max_new_tokens`), for the commands that spell
    each flag out (`serve`, `bon`, `bench audit`); a value an option refuses raises
    OptionError (a ValueError), an unknown name TypeError.
    """
    params = {
        (flag_name(f) or "--" + f.name)[2:].replace("-", "_"): f.name for f in option_fields()
    }
    unknown = sorted(set(flags) - set(params))
    if unknown:
        raise TypeError(f"not reward-model options: {', '.join(unknown)}")
    return RewardModelOptions(**{params[k]: v for k, v in flags.items()})


class SkippingRead(Protocol):
    """What a row reader returns: its rows, and the bad ones --skip-invalid passed over."""

    skipped: list[ItemError]


S = TypeVar("S", bound=SkippingRead)


def read_or_fail(read: Callable[[], S]) -> S:
    """Return what `read` read, or end the command naming the bad row (file, line, field) and
    the flag that skips such rows; print how many rows were skipped, with the first.
    """
    try:
        result = read()
    except (ItemError, FileNotFoundError) as err:
        hint = "" if isinstance(err, FileNotFoundError) else " (--skip-invalid skips such rows)"
        raise fail(f"{err}{hint}") from None
    if result.skipped:
        err_console.print(f"[yellow]skipped {len(result.skipped)} invalid rows[/]; first:")
        err_console.print(f"  {result.skipped[0]}")
    return result


def load_or_fail(path: Path, skip_invalid: bool) -> LoadResult:
    """Return the items of a benchmark, or end the command naming the bad row."""
    return read_or_fail(lambda: load_items(path, skip_invalid=skip_invalid))


class RunProgress:
    """The step bar of a resumable run: work already done on start, then the rate of new work.

    `resumed` ends the line printed when a run finds finished work ("resuming: 3 of 10 ...");
    `rate_unit` names the rate ("rec/s", "rows/min": per minute when it ends in "/min").
    """

    def __init__(self, description: str, rate_unit: str, resumed: str) -> None:
        self.description = description
        self.rate_unit = rate_unit
        self.resumed = resumed
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err_console,
        )
        self.task: TaskID | None = None
        self.new = 0
        self.started = time.perf_counter()

    def __enter__(self) -> RunProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)  # type: ignore[arg-type]

    def start(self, total: int, done: int) -> None:
        """Show the bar with `done` of `total` finished before this run."""
        self.started = time.perf_counter()
        self.task = self.bar.add_task(self.description, total=total, completed=done, rate="")
        if done:
            err_console.print(f"resuming: {done} of {total} {self.resumed}")

    def advance(self, *_: object) -> None:
        """Count one finished piece of work and refresh the rate."""
        self.new += 1
        scale = 60 if self.rate_unit.endswith("/min") else 1
        rate = scale * self.new / max(time.perf_counter() - self.started, 1e-9)
        if self.task is not None:
            self.bar.update(self.task, advance=1, rate=f"{rate:.2f} {self.rate_unit}")

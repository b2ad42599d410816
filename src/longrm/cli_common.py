"""What every `longrm` command module shares: the consoles, the model option, failing cleanly."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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

if TYPE_CHECKING:
    from longrm.rm.load import RewardModelOptions

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


# The reward-model flags that `eval`, `serve` and `bon` share: one definition, one meaning.
KindOpt = Annotated[
    str | None,
    typer.Option(help="scalar | likelihood | judge | openai (default: from the model)."),
]
VerdictOpt = Annotated[str, typer.Option(help="judge/openai verdicts: generate | logprob.")]
PromptsOpt = Annotated[Path | None, typer.Option(help="TOML file replacing judge prompts.")]
PrefixCacheOpt = Annotated[
    bool, typer.Option(help="Encode the shared prompt once per item (off: the baseline).")
]
ThinkingOpt = Annotated[
    bool,
    typer.Option(
        help="Let judges whose chat template can think (Qwen3's enable_thinking) think "
        "before the verdict; off by default, as the authors judge."
    ),
]
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


MaxLengthOpt = Annotated[
    int | None,
    typer.Option(
        help="Context window; longer prompts are cut in the middle. Above the model's "
        "trained window, RoPE scaling is applied (YaRN unless --rope-scaling says)."
    ),
]
RopeScalingOpt = Annotated[
    str | None, typer.Option(help="RoPE scaling TYPE:FACTOR, e.g. yarn:4 (Qwen3 to 128K).")
]
DtypeOpt = Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16.")]
AttnOpt = Annotated[
    str | None, typer.Option(help="Attention implementation, e.g. sdpa or flash_attention_2.")
]
ConcurrencyOpt = Annotated[int, typer.Option(help="openai: requests in flight.")]
TimeoutOpt = Annotated[float, typer.Option(help="openai: seconds per request.")]
RetriesOpt = Annotated[int, typer.Option(help="openai: retries with backoff.")]
PrefillOpt = Annotated[
    bool,
    typer.Option(
        help="openai: continue an assistant message that opens the verdict ('[['), for "
        "servers that accept continue_final_message (vLLM, SGLang)."
    ),
]
OpenAIParamsOpt = Annotated[
    str | None,
    typer.Option(
        help="openai: request fields, a JSON object or a profile (default, reasoning, "
        "vllm-no-thinking); null drops a field."
    ),
]


def reward_model_options(
    *,
    kind: str | None,
    verdict: str = "generate",
    prompts: Path | None = None,
    prefix_cache: bool = True,
    max_new_tokens: int = 2048,
    max_length: int | None = None,
    rope_scaling: str | None = None,
    dtype: str = "auto",
    attn: str | None = None,
    concurrency: int = 8,
    timeout: float = 600.0,
    retries: int = 3,
    protocol: str = "longrm",
    thinking: bool = False,
    prefill: bool = False,
    openai_params: str | None = None,
) -> RewardModelOptions:
    """Return the RewardModelOptions that the shared flags describe (named as the flags are)."""
    from longrm.rm.load import RewardModelOptions

    return RewardModelOptions(
        kind=kind,
        verdict=verdict,
        prompts_file=prompts,
        prefix_cache=prefix_cache,
        max_new_tokens=max_new_tokens,
        max_length=max_length,
        dtype=dtype,
        attn_implementation=attn,
        concurrency=concurrency,
        timeout=timeout,
        retries=retries,
        protocol=protocol,
        thinking=thinking,
        rope_scaling=rope_scaling,
        prefill=prefill,
        openai_params=openai_params,
    )


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

"""The demo: a length-graded, by-construction suite judged by the default model, with the
context and without it (the control), in a few minutes on a laptop's CPU.

The quick plan (what `make demo` runs) is sized from measured figures (COST) to finish in under
five minutes on two idle CPU cores: every family at 512, 1K and 2K tokens, judged by the
likelihood reward and the logprob judge, both also with the context swapped for another item's;
the generating judge writes verdicts for two pairs only (each of its records costs up to
`max_new_tokens` decoding steps). The full plan (`longrm demo --full`) is the earlier demo: 4K
tokens too, Best-of-N items, and every run on every item with the control.

Every step is a `longrm.evaluate` call on the suite written to `out/bench`, so each can be run
again, or resumed, from the shell (`step_command`).
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from longrm.bench.construct import FAMILIES, FORMATS, build_suite
from longrm.evaluate.api import EvalRun, evaluate
from longrm.evaluate.metrics import bucket_sort_key
from longrm.evaluate.predictions import Prediction
from longrm.evaluate.report import MISSING, write_report
from longrm.items import Item, write_items
from longrm.models import resolve_model_path
from longrm.options import RewardModelOptions, option_argv

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

#: the model every demo run judges with
DEMO_MODEL = "default"
DEMO_MODEL_NAME = "SmolLM2-135M"
#: the control: each item judged again with another item's context of the same length
CONTROL = "swap"


@dataclass(frozen=True)
class Cost:
    """What the default model costs on two idle CPU cores (measured; used for the estimate).

    `forward_s_per_token`: a prompt's forward pass (~5 s for 2K tokens); `order_s`: each
    further display order, which reuses the prompt's cache; `tokens_per_s`: a generating
    judge's decoding speed; `template_tokens` and `judge_prompt_tokens`: what the chat template
    and a response add to the item's text, and what a judge's rubric and second response add
    (prompts of 501 and 710 tokens for a 437-token item); `startup_s`: importing torch and
    transformers, the tokenizer, the suite, loading the model three times, the report.
    """

    forward_s_per_token: float = 5.0 / 2048
    order_s: float = 0.5
    tokens_per_s: float = 55.0
    template_tokens: int = 60
    judge_prompt_tokens: int = 210
    startup_s: float = 25.0


COST = Cost()


@dataclass(frozen=True)
class DemoStep:
    """One evaluation of the demo: a folder name, the reward model's kind and verdict mode,
    whether the control runs too, and which items (`lengths` and `limit`: all when None).
    """

    label: str
    kind: str
    verdict: str
    control: bool = True
    lengths: tuple[str, ...] | None = None
    limit: int | None = None

    @property
    def name(self) -> str:
        """Return the run's name in reports."""
        return f"{DEMO_MODEL_NAME} {self.label}"


@dataclass(frozen=True)
class DemoPlan:
    """What a demo builds and judges: the suite's lengths, whether Best-of-N items join the
    pairs (one Best-of-2/3/4 item each at 1K), and the steps.
    """

    lengths: str
    best_of_n: bool
    steps: tuple[DemoStep, ...]
    max_new_tokens: int = 48


QUICK = DemoPlan(
    lengths="512,1k,2k",
    best_of_n=False,
    steps=(
        DemoStep("likelihood", "likelihood", "generate"),
        DemoStep("judge-logprob", "judge", "logprob"),
        # a handful of records: a 135M judge rarely writes a parseable verdict, slowly
        DemoStep("judge-generate", "judge", "generate", control=False, lengths=("512",), limit=2),
    ),
)
FULL = DemoPlan(
    lengths="512,1k,2k,4k",
    best_of_n=True,
    steps=(
        DemoStep("likelihood", "likelihood", "generate"),
        DemoStep("judge-logprob", "judge", "logprob"),
        DemoStep("judge-generate", "judge", "generate"),
    ),
)


def demo_items(tokenizer: PreTrainedTokenizerBase, plan: DemoPlan) -> list[Item]:
    """Return the plan's suite: one pair per family and length (so families and lengths are
    not confounded) and, with `best_of_n`, one Best-of-2, -3 and -4 item at 1K.
    """
    formats = FORMATS if plan.best_of_n else ("pairwise",)
    grid = build_suite(tokenizer, lengths=plan.lengths, formats=formats, seed=0)
    return [
        i
        for i in grid
        if i.is_pairwise or (i.length_bucket == "1k" and FAMILIES.index(i.task) == i.n - 1)
    ]


def step_items(items: Sequence[Item], step: DemoStep) -> list[Item]:
    """Return the items a step judges, as `longrm.evaluate`'s filters pick them."""
    kept = [i for i in items if step.lengths is None or i.length_bucket in step.lengths]
    return kept[: step.limit]


def estimate_seconds(items: Sequence[Item], plan: DemoPlan, cost: Cost = COST) -> float:
    """Return the plan's expected wall time on two idle CPU cores, from `cost`.

    Per item and step: one forward over its prompt (the item's text, the template and a
    response; a judge's prompt is longer by `judge_prompt_tokens`), one cached step per further
    display order, and for a generating judge `max_new_tokens` decoding steps per order (an
    upper bound: a judge may stop sooner); twice with the control.
    """
    total = cost.startup_s
    for step in plan.steps:
        generating = step.kind == "judge" and step.verdict == "generate"
        extra = cost.template_tokens + (cost.judge_prompt_tokens if step.kind == "judge" else 0)
        for item in step_items(items, step):
            orders = 2  # both orders of a pair; two of a Best-of-N item's (longrm's default)
            seconds = (item.length + extra) * cost.forward_s_per_token + (orders - 1) * cost.order_s
            if generating:
                seconds += orders * plan.max_new_tokens / cost.tokens_per_s
            total += seconds * (2 if step.control else 1)
    return total


@dataclass
class DemoSuite:
    """The suite a demo judges, written to `bench` (a benchmark folder `longrm eval` reads)."""

    out: Path
    bench: Path
    items: list[Item]
    plan: DemoPlan
    estimate_s: float = 0.0
    model: str = DEMO_MODEL


def prepare_demo(out: str | Path, plan: DemoPlan = QUICK, model: str = DEMO_MODEL) -> DemoSuite:
    """Build the plan's suite with the model's tokenizer, write it to `out`/bench, and return it
    with its time estimate (the estimate is the default model's).
    """
    from transformers import AutoTokenizer

    folder = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(model))
    items = demo_items(tokenizer, plan)
    bench = folder / "bench"
    write_items(items, bench)
    return DemoSuite(folder, bench, items, plan, estimate_seconds(items, plan), model)


def step_options(step: DemoStep, plan: DemoPlan) -> RewardModelOptions:
    """Return the reward-model options of a step."""
    return RewardModelOptions(
        kind=step.kind, verdict=step.verdict, max_new_tokens=plan.max_new_tokens
    )


def run_step(
    suite: DemoSuite,
    step: DemoStep,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_record: Callable[[Prediction], None] | None = None,
) -> EvalRun:
    """Judge the suite for one step into `out`/label (resuming what is there); return the run."""
    return evaluate(
        suite.bench,
        suite.out / step.label,
        suite.model,
        step_options(step, suite.plan),
        lengths=step.lengths,
        limit=step.limit,
        ablate_context=CONTROL if step.control else None,
        name=step.name,
        on_start=on_start,
        on_record=on_record,
    )


def step_command(suite: DemoSuite, step: DemoStep, out: Path | None = None) -> str:
    """Return the `longrm eval` command that runs (or resumes) a step from the shell."""
    folder = out or suite.out / step.label
    argv = ["longrm", "eval", "--bench", str(suite.bench), "--out", str(folder)]
    argv += ["--model", suite.model] if suite.model != DEMO_MODEL else []
    argv += option_argv(step_options(step, suite.plan), step.kind)
    if step.lengths is not None:
        argv += ["--lengths", ",".join(step.lengths)]
    if step.limit is not None:
        argv += ["--limit", str(step.limit)]
    if step.control:
        argv += ["--ablate-context", CONTROL]
    return shlex.join(argv + ["--name", step.name])


@dataclass
class DemoReport:
    """The demo's report: results.md and the plot over every step, and the table by length."""

    md: Path
    plot: Path
    by_length: str
    runs: list[EvalRun] = field(default_factory=list)


def write_demo_report(suite: DemoSuite, runs: Sequence[EvalRun]) -> DemoReport:
    """Write the report over the runs into `out`/report; return it and the table by length."""
    md, plot = write_report([r.folder for r in runs], suite.out / "report")
    return DemoReport(md, plot, length_table(runs), list(runs))


def length_table(runs: Sequence[EvalRun]) -> str:
    """Return a markdown table of pairwise-and-Best-of-N accuracy by length bucket, with the
    context and with the control (`with / control`, in %), for the runs that ran the control.
    """
    blocks = {
        r.name: r.results.context_ablation for r in runs if r.results.context_ablation is not None
    }
    buckets = sorted(
        {b for block in blocks.values() for b in (block.get("by_length") or {})},
        key=bucket_sort_key,
    )
    header = ["Model", *buckets, "all"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, block in blocks.items():
        by_length: dict[str, Any] = block.get("by_length") or {}
        cells = [_with_without(by_length.get(b)) for b in buckets] + [_with_without(block)]
        lines.append("| " + " | ".join([name, *cells]) + " |")
    return "\n".join(lines)


def _with_without(entry: dict[str, Any] | None) -> str:
    """Return "with / control" accuracy of a reliance entry, in %."""
    if not entry:
        return MISSING

    def pct(value: float | None) -> str:
        return MISSING if value is None else f"{100 * value:.0f}"

    with_context = entry.get("accuracy_with_context")
    without = entry.get("accuracy_without_context")
    return f"{pct(with_context)} / {pct(without)}"

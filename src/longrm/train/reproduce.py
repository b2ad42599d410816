"""`longrm reproduce`: a track of training runs and held-out evaluations, resumable step by step.

A track (`reproduce_disrm`, `reproduce_judge`) is a plan: the data it builds, the `longrm train`
runs and the `longrm eval` runs, each in its own folder under the output folder:

    data/       the held-out suite and the training items (data.json: sizes and counts)
    models/X/   one trained model per training step
    runs/X/     one evaluation per run (predictions, results.json)
    reproduce.md, reproduce.json, report/   the tables, comparisons and goals

A finished step leaves a marker holding its command, so a rerun skips it; a folder holding the
result of another command is refused rather than mixed (change the sizes, change --out). The
commands are those the table prints beside each row: every number can be reproduced alone.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from longrm.bench.construct import FAMILIES, build_suite, parse_lengths
from longrm.evaluate.ablation import METHODS
from longrm.evaluate.intervals import IntervalSettings
from longrm.evaluate.predictions import Prediction
from longrm.items import Item
from longrm.options import RewardModelOptions
from longrm.train.goals import Goal
from longrm.train.heldout import overlap
from longrm.train.reproduce_cost import Costs, estimate_line, minutes
from longrm.train.reproduce_report import (
    Comparison,
    Row,
    RunRecords,
    build_report,
    markdown,
)

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from longrm.evaluate.api import EvalRun

MARKER = "reproduce-step.json"
DATA = "data.json"
PAIRWISE = ("pairwise",)
CONTROL_WORDS = {"swap": "swapped", "empty": "emptied"}

Log = Callable[[str], None]
#: judges one evaluation step: (step, held-out bench, track folder) -> the run
RunEval = Callable[["EvalStep", Path, Path], "EvalRun"]


class ReproError(RuntimeError):
    """A reproduction that cannot go on: overlapping data, or a folder another command made."""


@dataclass(frozen=True)
class TrainStep:
    """One `longrm train STAGE` run, its model saved in models/<label>."""

    label: str
    stage: str  # sft | align | disrm
    args: tuple[str, ...]  # the trainer's flags, --out left out

    def folder(self, out: Path) -> Path:
        """Return the folder the model is saved in."""
        return out / "models" / self.label

    def argv(self, out: Path) -> list[str]:
        """Return the trainer's flags, --out included."""
        return [*self.args, "--out", str(self.folder(out))]

    def command(self, out: Path) -> str:
        """Return the shell command that trains this model."""
        return f"longrm train {self.stage} " + shlex.join(self.argv(out))


@dataclass(frozen=True)
class EvalStep:
    """One `longrm eval` run on the held-out suite, written to runs/<label>."""

    label: str
    name: str  # how tables name it
    model: str
    kind: str  # scalar | likelihood | judge
    verdict: str = ""  # judge: logprob | generate
    ablate: str | None = None  # "swap,empty", "empty", ... (the context controls)
    max_new_tokens: int | None = None  # generating judges

    def folder(self, out: Path) -> Path:
        """Return the run's folder."""
        return out / "runs" / self.label

    def argv(self, bench: Path, out: Path) -> list[str]:
        """Return the `longrm eval` flags of this run."""
        argv = ["--bench", str(bench), "--out", str(self.folder(out)), "--model", self.model]
        argv += ["--kind", self.kind]
        if self.verdict:
            argv += ["--verdict", self.verdict]
        if self.max_new_tokens is not None:
            argv += ["--max-new-tokens", str(self.max_new_tokens)]
        if self.ablate:
            argv += ["--ablate-context", self.ablate]
        return argv

    def command(self, bench: Path, out: Path) -> str:
        """Return the shell command that makes this run."""
        return "longrm eval " + shlex.join(self.argv(bench, out))

    def options(self) -> RewardModelOptions:
        """Return the reward-model options its command's flags give (one call at a time, no
        retries: a local model, and an error is recorded and judged again on a rerun).
        """
        options = RewardModelOptions(kind=self.kind, concurrency=1, retries=0)
        if self.verdict:
            options = options.replace(verdict=self.verdict)
        if self.max_new_tokens is not None:
            options = options.replace(max_new_tokens=self.max_new_tokens)
        return options

    def run(
        self,
        bench: Path,
        out: Path,
        on_start: Callable[[int, int], None] | None = None,
        on_record: Callable[[Prediction], None] | None = None,
    ) -> EvalRun:
        """Return the run its command makes, made through `longrm.evaluate` (so the printed
        command and this run share one identity and resume each other).
        """
        from longrm.evaluate.api import evaluate

        return evaluate(
            bench, self.folder(out), self.model, self.options(), ablate_context=self.ablate,
            name=self.name, on_start=on_start, on_record=on_record,
        )  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """A track's steps: the held-out suite, then training, then evaluation."""

    bench: Path
    train: tuple[TrainStep, ...]
    evals: tuple[EvalStep, ...]


@dataclass(frozen=True)
class TrackSizes:
    """What every track sizes the same way: the held-out suite, the training seed and cells, the
    context controls, the optional untrained-judge row and the longest training sequence. A
    track subclasses it, may change a default by declaring the field again, and names in
    `DATA_KEYS` the sizes that define its data (a rerun with other values is refused) and in
    `LENGTH_KEYS` its length lists (checked when the track is made).
    """

    DATA_KEYS: ClassVar[tuple[str, ...]] = ("eval_lengths", "eval_per_cell", "eval_seed")
    LENGTH_KEYS: ClassVar[tuple[str, ...]] = ("eval_lengths",)

    eval_lengths: str = "512,1k,2k,4k"
    eval_per_cell: int = 12
    eval_seed: int = 0
    train_per_cell: int = 12
    train_seed: int = 1000
    controls: str = "empty"
    judge_baseline: bool = False  # the untrained judge (logprob verdicts) as a further row
    max_length: int = 4096

    def __post_init__(self) -> None:
        for flag, value in (("eval", self.eval_per_cell), ("train", self.train_per_cell)):
            if value < 1:
                raise ValueError(f"--{flag}-per-cell must be at least 1, got {value}")
        for key in self.LENGTH_KEYS:
            parse_lengths(getattr(self, key))
        check_controls(self.controls)

    def settings(self) -> dict[str, Any]:
        """Return every size and option of the track."""
        return asdict(self)

    def data_settings(self) -> dict[str, Any]:
        """Return what defines the data (a rerun with other values is refused)."""
        return {k: getattr(self, k) for k in self.DATA_KEYS}


class Track(Protocol):
    """What a track provides: its data, steps, table rows, comparisons and goals."""

    @property
    def name(self) -> str: ...

    @property
    def summary(self) -> str:
        """Return what the track shows, in a sentence or two."""
        ...

    def settings(self) -> dict[str, Any]:
        """Return every size and option of the track."""
        ...

    def data_settings(self) -> dict[str, Any]:
        """Return what defines the data (a rerun with other values is refused)."""
        ...

    def estimate(self, costs: Costs) -> dict[str, float]:
        """Return the seconds each step should take at these sizes."""
        ...

    def build(self, tokenizer: PreTrainedTokenizerBase, data: Path) -> dict[str, Any]:
        """Build and write the held-out suite and the training items; return their `counts`
        and a `description` line for the report."""
        ...

    def plan(self, out: Path, model: str) -> Plan:
        """Return the track's steps."""
        ...

    def rows(self, plan: Plan) -> list[Row]:
        """Return the length table's rows."""
        ...

    def comparisons(self, plan: Plan) -> list[Comparison]:
        """Return the paired comparisons to print."""
        ...

    def goals(self, runs: dict[str, RunRecords]) -> list[Goal]:
        """Return the goals measured on the runs' records (`reproduce_report.RunRecords`)."""
        ...


# ---------------------------------------------------------------------------------------------
# Data


def heldout_suite(
    tokenizer: PreTrainedTokenizerBase, lengths: str, per_cell: int, seed: int
) -> list[Item]:
    """Return the held-out pairwise suite: `per_cell` pairs per (length, family)."""
    return build_suite(
        tokenizer, lengths=lengths, items_per_cell=per_cell, formats=PAIRWISE, seed=seed
    )


def bucket_labels(spec: str) -> list[str]:
    """Return the bucket labels of a lengths flag ("512,1k" -> ["512", "1k"])."""
    return [label for label, _ in parse_lengths(spec)]


def pairs_per_bucket(per_cell: int) -> int:
    """Return the pairs a bucket holds with `per_cell` pairs per (length, family)."""
    return per_cell * len(FAMILIES)


def split_csv(value: str) -> list[str]:
    """Return the non-empty comma-separated parts of a flag's value."""
    return [part.strip() for part in value.split(",") if part.strip()]


def check_controls(controls: str) -> list[str]:
    """Return the context controls of a `--controls` value, or raise ValueError."""
    methods = split_csv(controls)
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown control(s) {bad} in --controls: choose from {METHODS}")
    return methods


def bucket_counts(items: Sequence[Item]) -> dict[str, int]:
    """Return how many items each length bucket holds, in first-seen order."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.length_bucket] = counts.get(item.length_bucket, 0) + 1
    return counts


def counts_text(counts: dict[str, int]) -> str:
    """Return "192 pairs (512: 48, 1k: 48, ...)"."""
    return (
        f"{sum(counts.values())} pairs (" + ", ".join(f"{b}: {n}" for b, n in counts.items()) + ")"
    )


def check_disjoint(train_items: Sequence[Item], eval_items: Sequence[Item]) -> dict[str, Any]:
    """Return the (empty) overlap of training and held-out items; raise ReproError if any."""
    shared = overlap(train_items, eval_items)
    if any(shared.values()):
        raise ReproError(f"training and held-out items overlap: {shared}")
    return shared


def prepare_data(
    track: Track, tokenizer: PreTrainedTokenizerBase, out: Path, log: Log
) -> dict[str, Any]:
    """Build the track's data into out/data once; reuse it when data.json has the same settings,
    refuse when it has others (the models and runs in `out` were made from those)."""
    folder = out / "data"
    settings = track.data_settings()
    record_path = folder / DATA
    if record_path.is_file():
        found = json.loads(record_path.read_text(encoding="utf-8"))
        if found.get("track") == track.name and found.get("settings") == settings:
            log(f"data: reusing {folder}")
            return dict(found)
        raise ReproError(
            f"{out} holds a reproduction of --track {found.get('track')} built with other "
            f"sizes ({found.get('settings')}); use another --out, or delete that folder to "
            "start over"
        )
    built = track.build(tokenizer, folder)
    record = {"track": track.name, "settings": settings, **built}
    folder.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


# ---------------------------------------------------------------------------------------------
# Steps


def finished(folder: Path, command: str) -> float | None:
    """Return the seconds `command` took when `folder` holds its finished result, else None;
    raise ReproError when the folder holds another command's."""
    marker = folder / MARKER
    if not marker.is_file():
        return None
    found = json.loads(marker.read_text(encoding="utf-8"))
    if found.get("command") == command:
        return float(found.get("seconds") or 0.0)
    found = found.get("command")
    raise ReproError(
        f"{folder} holds the result of another command:\n  {found}\nnot\n  {command}\n"
        "use another --out, or delete that folder to redo it"
    )


def mark(folder: Path, command: str, seconds: float) -> None:
    """Record that `folder` holds the finished result of `command`."""
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"command": command, "seconds": round(seconds, 1)}, indent=2)
    (folder / MARKER).write_text(text + "\n", encoding="utf-8")


def _loss(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def train(step: TrainStep, out: Path, log: Log) -> float:
    """Run a training step unless its model is there; return the seconds it took (when reused,
    those of the run that made it)."""
    from longrm.train.config import parse_config
    from longrm.train.stages import STAGES

    folder, command = step.folder(out), step.command(out)
    if (took := finished(folder, command)) is not None:
        log(f"{step.label}: reusing {folder}")
        return took
    log(f"{step.label}: {command}")
    start = time.perf_counter()
    config_cls, run = STAGES[step.stage]
    record = run(parse_config(config_cls, step.argv(out), prog=f"longrm train {step.stage}"))
    seconds = time.perf_counter() - start
    log(
        f"{step.label}: {record['steps']} steps, loss {_loss(record['first_loss'])} -> "
        f"{_loss(record['final_loss'])}, {seconds / 60:.1f} min"
    )
    mark(folder, command, seconds)
    return seconds


def evaluate(
    step: EvalStep,
    bench: Path,
    out: Path,
    run_eval: RunEval,
    log: Log,
) -> float:
    """Run an evaluation unless it finished; return the seconds it took (when reused, those
    of the run that made it).

    `run_eval(step, bench, out)` judges (`EvalStep.run`, through `longrm.evaluate`, with what
    progress display the caller adds). A run whose records ended in errors is left unmarked, so
    a rerun judges them again.
    """
    folder, command = step.folder(out), step.command(bench, out)
    if (took := finished(folder, command)) is not None:
        log(f"eval {step.label}: reusing {folder}")
        return took
    start = time.perf_counter()
    errors = run_eval(step, bench, out).errors
    seconds = time.perf_counter() - start
    if errors:
        log(f"eval {step.label}: {errors} records ended in an error; rerun to judge them again")
    else:
        mark(folder, command, seconds)
    return seconds


def run_plan(plan: Plan, out: Path, run_eval: RunEval, log: Log) -> dict[str, float]:
    """Run every step of the plan in order; return the seconds each took."""
    times = {step.label: train(step, out, log) for step in plan.train}
    for step in plan.evals:
        times[f"eval {step.label}"] = evaluate(step, plan.bench, out, run_eval, log)
    return times


# ---------------------------------------------------------------------------------------------
# The whole track


def _model_entry(step: TrainStep, out: Path, seconds: float) -> dict[str, Any]:
    from longrm.train.model_io import RECORD

    record_path = step.folder(out) / RECORD
    record = json.loads(record_path.read_text(encoding="utf-8")) if record_path.is_file() else {}
    return {
        "label": step.label,
        "command": step.command(out),
        "steps": record.get("steps"),
        "first_loss": _loss(record.get("first_loss")),
        "final_loss": _loss(record.get("final_loss")),
        "rows": (record.get("data") or {}).get("rows"),
        "minutes": round(seconds / 60, 1),
    }


def reproduce_track(
    track: Track,
    out: Path,
    model: str,
    tokenizer: PreTrainedTokenizerBase,
    run_eval: RunEval,
    log: Log,
    costs: Costs | None = None,
    ci: IntervalSettings | None = None,
) -> dict[str, Any]:
    """Run a track end to end (each finished step reused) and write out/reproduce.md, its JSON
    twin and out/report (the standard results table and plot of every run); return the report.
    """
    from longrm.evaluate.report import write_report

    ci = ci or IntervalSettings()
    estimate = minutes(track.estimate(costs or Costs()))
    log(estimate_line(estimate))
    start = time.perf_counter()
    data = prepare_data(track, tokenizer, out, log)
    times = {"data": time.perf_counter() - start}
    plan = track.plan(out, model)
    times.update(run_plan(plan, out, run_eval, log))
    runs = {s.label: RunRecords.read(s.folder(out)) for s in plan.evals}
    took = minutes(times)
    report = build_report(
        track=track.name,
        rows=track.rows(plan),
        comparisons=track.comparisons(plan),
        goals=track.goals(runs),
        runs=runs,
        names={s.label: s.name for s in plan.evals},
        commands={s.label: s.command(plan.bench, out) for s in plan.evals},
        ci=ci,
        extra={
            "summary": track.summary,
            "settings": track.settings(),
            "model": model,
            "data": data,
            "data_line": data.get("description", ""),
            "models": [_model_entry(s, out, times[s.label]) for s in plan.train],
            "estimate_minutes": estimate,
            "minutes": took,
            "time_line": (
                f"{estimate_line(estimate)}; took {took['total']:g} min here (minutes, "
                "reused steps counted as first run: "
                + ", ".join(f"{k} {v:g}" for k, v in took.items() if k != "total")
                + ")"
            ),
        },
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "reproduce.md").write_text(markdown(report), encoding="utf-8")
    write_report([s.folder(out) for s in plan.evals], out / "report", [s.name for s in plan.evals])
    return report

"""The micro reproduction of the paper's gain: data, stages and the goals it is judged by.

Training items and the held-out evaluation suite share no context paragraph and no invented
name (`judgments.training_suite`), are built from different seeds, and are checked for overlap
before anything trains. The goals are the issue's: a gain of at least 15 points at 1K-4K
tokens, under 5% parse failures when generating, at most 2 points lost on short items, and a
gain that disappears when the context is ablated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from transformers import PreTrainedTokenizerBase

from longrm.bench.construct import build_suite
from longrm.items import write_items
from longrm.rm.prompts import PromptSet
from longrm.train.heldout import overlap, training_suite
from longrm.train.judgments import (
    preference_examples,
    sft_examples,
    write_preference_jsonl,
    write_sft_jsonl,
)
from longrm.train.verdict_spans import best_slot_counts

SHORT_BUCKETS = ("512",)
LONG_BUCKETS = ("1k", "2k", "4k")


@dataclass(frozen=True)
class ReproSettings:
    """Sizes of the reproduction; the defaults fit the issue's hour on two CPU cores."""

    eval_lengths: str = "512,1k,2k,4k"
    eval_per_cell: int = 2
    eval_seed: int = 0
    train_lengths: str = "512,1k"
    train_per_cell: int = 6
    #: formats of the training items: pairwise only (a pairwise judge learns from pair
    #: verdicts; Best-of-N rankings were two thirds of the rows and taught it little of them)
    train_formats: str = "pairwise"
    train_seed: int = 1000
    negatives: int = 2
    sft_steps: int = 90
    sft_lr: float = 5e-5
    align_steps: int = 40
    align_lr: float = 5e-6
    max_length: int = 4096
    max_new_tokens: int = 32
    generate_lengths: str = "512,1k"


@dataclass(frozen=True)
class ReproData:
    """Where the prepared files are, and what they hold."""

    bench: Path
    sft_rows: Path
    preference_rows: Path
    counts: dict[str, int]
    overlap: dict[str, list[str]]


def prepare_data(
    out: Path, tokenizer: PreTrainedTokenizerBase, settings: ReproSettings
) -> ReproData:
    """Build the held-out suite (pairwise items), the disjoint training items (of
    `settings.train_formats`, each in every display order), and write the Stage I judgments and
    Stage II preference rows; refuse to go on if the two overlap.
    """
    eval_items = build_suite(
        tokenizer, lengths=settings.eval_lengths, items_per_cell=settings.eval_per_cell,
        formats=("pairwise",), seed=settings.eval_seed,
    )  # fmt: skip
    train_items = training_suite(
        tokenizer, lengths=settings.train_lengths, seed=settings.train_seed,
        held_out=eval_items, items_per_cell=settings.train_per_cell,
        formats=tuple(f.strip() for f in settings.train_formats.split(",") if f.strip()),
    )  # fmt: skip
    shared = overlap(train_items, eval_items)
    if any(shared.values()):
        raise RuntimeError(f"training and evaluation items overlap: {shared}")
    out.mkdir(parents=True, exist_ok=True)
    bench = out / "eval-bench"
    write_items(eval_items, bench)
    prompts = PromptSet.load()
    sft = sft_examples(train_items, prompts, seed=settings.train_seed)
    prefs = preference_examples(
        train_items, prompts, negatives=settings.negatives, seed=settings.train_seed
    )
    sft_rows = write_sft_jsonl(sft, out / "stage1-sft.jsonl")
    pref_rows = write_preference_jsonl(prefs, out / "stage2-preferences.jsonl")
    counts = {
        "eval_items": len(eval_items),
        "train_items": len(train_items),
        "sft_rows": len(sft),
        "preference_rows": len(prefs),
        **{f"sft_gold_{k}": v for k, v in best_slot_counts(ex.target for ex in sft).items()},
    }
    data = ReproData(bench, sft_rows, pref_rows, counts, shared)
    (out / "data.json").write_text(
        json.dumps({**asdict(data), "settings": asdict(settings)}, indent=2, default=str) + "\n"
    )
    return data


@dataclass(frozen=True)
class JudgeRun:
    """One evaluation in the reproduction: which judge, how it gives its verdict, on what."""

    judge: str  # untrained | stage1 | stage2
    verdict: str  # logprob | generate
    ablate: bool  # also judge every item with another item's context (the goals' control)
    lengths: str | None  # buckets judged; None: all of them

    @property
    def label(self) -> str:
        """Return the run's folder name and key, e.g. `stage2-logprob`."""
        return f"{self.judge}-{self.verdict}"


def judge_runs(settings: ReproSettings) -> list[JudgeRun]:
    """Return the evaluations that fit the hour.

    Logprob verdicts cover every bucket for all three judges; the context-swap control runs for
    the untrained and the final judge, whose comparison the goals are about. Generating costs a
    forward pass per written token, so trained judges generate on `generate_lengths` only and
    the untrained one on the short bucket, enough to measure its parse failures.
    """
    return [
        JudgeRun("untrained", "logprob", ablate=True, lengths=None),
        JudgeRun("untrained", "generate", ablate=False, lengths=",".join(SHORT_BUCKETS)),
        JudgeRun("stage1", "logprob", ablate=False, lengths=None),
        JudgeRun("stage1", "generate", ablate=False, lengths=settings.generate_lengths),
        JudgeRun("stage2", "logprob", ablate=True, lengths=None),
        JudgeRun("stage2", "generate", ablate=False, lengths=settings.generate_lengths),
    ]


@dataclass(frozen=True)
class Goal:
    """One of the issue's goals, what was measured, and whether it holds."""

    name: str
    measured: str
    met: bool


def accuracy_over(
    results: dict[str, Any], buckets: tuple[str, ...], ablated: bool = False
) -> float | None:
    """Return the mean pairwise accuracy over length buckets (context ablated if asked)."""
    if ablated:
        block = (results.get("context_ablation") or {}).get("by_length") or {}
        values = [block[b].get("accuracy_without_context") for b in buckets if b in block]
    else:
        by_length = results["pairwise"]["by_length"]
        values = [by_length[b] for b in buckets if b in by_length]
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _pts(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} pts"


def check_goals(
    untrained: dict[str, Any], trained: dict[str, Any], trained_generate: dict[str, Any]
) -> list[Goal]:
    """Return the issue's goals measured on results.json of the untrained and trained judges
    (logprob verdicts, context ablated by swapping) and of the trained judge generating.
    """
    long_gain = _diff(accuracy_over(trained, LONG_BUCKETS), accuracy_over(untrained, LONG_BUCKETS))
    short_change = _diff(
        accuracy_over(trained, SHORT_BUCKETS), accuracy_over(untrained, SHORT_BUCKETS)
    )
    blind_gain = _diff(
        accuracy_over(trained, LONG_BUCKETS, ablated=True),
        accuracy_over(untrained, LONG_BUCKETS, ablated=True),
    )
    blind = "not run for this judge" if "context_ablation" not in trained else _pts(blind_gain)
    failures = trained_generate.get("parse_failure_rate")
    errors = trained_generate.get("error_rate") or 0.0
    return [
        Goal("accuracy gain at 1K-4K >= 15 pts", _pts(long_gain),
             long_gain is not None and long_gain >= 0.15),
        Goal("parse failures when generating < 5%",
             "n/a" if failures is None else f"{100 * failures:.1f}% (errors {100 * errors:.1f}%)",
             failures is not None and failures < 0.05 and errors == 0),
        Goal("short (512) accuracy drops <= 2 pts", _pts(short_change),
             short_change is not None and short_change >= -0.02),
        Goal("gain disappears with the context swapped (<= 5 pts)", blind,
             blind_gain is not None and long_gain is not None and blind_gain <= 0.05),
    ]  # fmt: skip


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b

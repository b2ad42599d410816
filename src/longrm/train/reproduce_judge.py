"""The judge track: the paper's two stages, trained so that the decision is what is learned.

Stage I fine-tunes the default model to write the verdict alone (`verdict_only`: every target
token is the decision), Stage II starts from it and prefers the right verdict over the wrong one
with the loss summed over the verdict tokens (`score_tokens verdict`, not length-normalised), on
pairwise items only, each pair in both display orders in one optimiser step. The judge is read
two ways on the held-out suite: verdict log-probabilities, scored by the order-debiased accuracy
(a constant preference for slot A cannot hide a signal, nor fake one), and generated verdicts,
whose parse failures show whether it still answers in the format.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from longrm.bench.construct import FAMILIES
from longrm.evaluate.intervals import IntervalSettings
from longrm.items import write_items
from longrm.train import goals as g
from longrm.train.heldout import training_suite
from longrm.train.reproduce import (
    CONTROL_WORDS,
    PAIRWISE,
    EvalStep,
    Plan,
    TrackSizes,
    TrainStep,
    bucket_counts,
    bucket_labels,
    check_controls,
    check_disjoint,
    counts_text,
    heldout_suite,
    pairs_per_bucket,
)
from longrm.train.reproduce_cost import JUDGE_EXTRA, Costs, eval_s, train_s
from longrm.train.reproduce_report import Comparison, Row, RunRecords, pooled

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

STAGE1 = "stage1"
STAGE2 = "stage2"
LOGPROB = "stage2-logprob"
GENERATE = "stage2-generate"
UNTRAINED = "judge"
NAMES = {
    LOGPROB: "Stage II judge (logprob)",
    GENERATE: "Stage II judge (generating)",
    UNTRAINED: "untrained judge (logprob)",
}
LONG_BUCKETS = ("1k", "2k", "4k")


@dataclass(frozen=True)
class JudgeTrack(TrackSizes):
    """Sizes of the judge track. The defaults hold 48 held-out pairs per bucket at 512-4K and
    train each stage on 112 pairs at 448-2K tokens (7 per length and family), each pair in both
    display orders: see `estimate` for what that costs."""

    DATA_KEYS: ClassVar[tuple[str, ...]] = (
        *TrackSizes.DATA_KEYS, "train_lengths", "train_per_cell", "train_seed",
    )  # fmt: skip
    LENGTH_KEYS: ClassVar[tuple[str, ...]] = ("eval_lengths", "train_lengths")

    train_lengths: str = "448,512,1k,2k"
    train_per_cell: int = 7
    #: LoRA (rank 16, alpha 32) as for the DisRM, which learned at these rates on this model
    sft_lr: float = 2e-4
    align_lr: float = 5e-5
    #: a verdict-only judge writes "[[A]]" and stops; the cap bounds one that does not
    max_new_tokens: int = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_new_tokens < 1:
            raise ValueError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")

    @property
    def name(self) -> str:
        return "judge"

    @property
    def summary(self) -> str:
        return (
            "Stage I (verdict-only SFT) then Stage II from it (verdict tokens, summed), on "
            "pairwise items in both display orders; the Stage II judge read by verdict "
            "log-probabilities (order-debiased accuracy) and by generating (parse failures)."
        )

    def estimate(self, costs: Costs) -> dict[str, float]:
        mix = {b: self.train_per_cell * len(FAMILIES) for b in bucket_labels(self.train_lengths)}
        buckets = bucket_labels(self.eval_lengths)
        pairs = pairs_per_bucket(self.eval_per_cell)
        controls = check_controls(self.controls)
        out = {"data": 10.0}
        # both stages: a pair in its two display orders; Stage II scores the verdicts on one
        # shared prompt, so it costs about what Stage I does
        out[STAGE1] = train_s(costs, mix, JUDGE_EXTRA, 2, judge=True)
        out[STAGE2] = train_s(costs, mix, JUDGE_EXTRA, 2, judge=True)
        out[f"eval {LOGPROB}"] = eval_s(costs, buckets, pairs, JUDGE_EXTRA, controls)
        out[f"eval {GENERATE}"] = eval_s(
            costs, buckets, pairs, JUDGE_EXTRA, generate_tokens=self.max_new_tokens
        )
        if self.judge_baseline:
            out[f"eval {UNTRAINED}"] = eval_s(costs, buckets, pairs, JUDGE_EXTRA)
        return out

    def build(self, tokenizer: PreTrainedTokenizerBase, data: Path) -> dict[str, Any]:
        held_out = heldout_suite(tokenizer, self.eval_lengths, self.eval_per_cell, self.eval_seed)
        train = training_suite(
            tokenizer, lengths=self.train_lengths, seed=self.train_seed, held_out=held_out,
            items_per_cell=self.train_per_cell, formats=PAIRWISE,
        )  # fmt: skip
        overlap = check_disjoint(train, held_out)
        write_items(held_out, data / "heldout")
        write_items(train, data / "train")
        counts = {"heldout": bucket_counts(held_out), "train": bucket_counts(train)}
        description = (
            f"Held-out: {counts_text(counts['heldout'])}, seed {self.eval_seed}. Training "
            f"(seed {self.train_seed}, both stages): {counts_text(counts['train'])}, each in "
            "both display orders. Shared with the held-out suite: "
            f"{len(overlap['paragraphs'])} context paragraphs, {len(overlap['invented'])} "
            "invented names."
        )
        return {"counts": counts, "overlap": overlap, "description": description}

    def plan(self, out: Path, model: str) -> Plan:
        data = out / "data"
        common = ("--data", str(data / "train"), "--judgment_layout", "verdict_only",
                  "--pairwise_only", "--lora", "--lora_r", "16", "--lora_alpha", "32",
                  "--num_train_epochs", "1", "--max_length", str(self.max_length),
                  "--save_strategy", "no", "--seed", "0",
                  "--no_activation_checkpointing")  # fmt: skip
        stage1 = TrainStep(STAGE1, "sft", ("--model", model, *common,
                                           "--learning_rate", str(self.sft_lr)))  # fmt: skip
        stage2 = TrainStep(
            STAGE2, "align",
            ("--from", str(stage1.folder(out)), *common, "--negatives", "1", "--score_tokens",
             "verdict", "--no_length_normalize", "--learning_rate", str(self.align_lr)),
        )  # fmt: skip
        judge = str(stage2.folder(out))
        controls = ",".join(check_controls(self.controls)) or None
        evals = [
            EvalStep(LOGPROB, NAMES[LOGPROB], judge, "judge", "logprob", ablate=controls),
            EvalStep(GENERATE, NAMES[GENERATE], judge, "judge", "generate",
                     max_new_tokens=self.max_new_tokens),
        ]  # fmt: skip
        if self.judge_baseline:
            evals.append(EvalStep(UNTRAINED, NAMES[UNTRAINED], model, "judge", "logprob"))
        return Plan(data / "heldout", (stage1, stage2), tuple(evals))

    def rows(self, plan: Plan) -> list[Row]:
        rows = [Row(NAMES[LOGPROB], LOGPROB, "debiased"), Row(NAMES[LOGPROB], LOGPROB)]
        rows += [Row(NAMES[LOGPROB], LOGPROB, "debiased", c) for c in check_controls(self.controls)]
        rows += [Row(NAMES[GENERATE], GENERATE), Row(NAMES[GENERATE], GENERATE, "parse_failures")]
        if self.judge_baseline:
            rows += [Row(NAMES[UNTRAINED], UNTRAINED, "debiased"), Row(NAMES[UNTRAINED], UNTRAINED)]
        return rows

    def _long(self) -> tuple[str, ...]:
        have = set(bucket_labels(self.eval_lengths))
        return tuple(b for b in LONG_BUCKETS if b in have)

    def comparisons(self, plan: Plan) -> list[Comparison]:
        if not self.judge_baseline:
            return []
        return [Comparison(LOGPROB, UNTRAINED, "debiased", (("1K-4K", self._long()),))]

    def goals(self, runs: dict[str, RunRecords]) -> list[g.Goal]:
        return judge_goals(runs, self._long(), check_controls(self.controls), IntervalSettings())


def judge_goals(
    runs: dict[str, RunRecords],
    long_buckets: tuple[str, ...],
    controls: Sequence[str],
    ci: IntervalSettings,
) -> list[g.Goal]:
    """Return the judge track's goals, each decided by its interval (see `goals`):

    - at 1K-4K the Stage II judge's order-debiased accuracy (logprob verdicts) is at least 65%
      with its interval above 50%;
    - generating, its parse failures at 1K-4K stay under 5% (the interval's high end);
    - with the context ablated (each control run) its order-debiased accuracy interval holds 50%.
    """
    a = pooled(runs[LOGPROB], "debiased", "context", long_buckets, ci)
    f = pooled(runs[GENERATE], "parse_failures", "context", long_buckets, ci)
    out = [
        g.reaches(f"{NAMES[LOGPROB]} at 1K-4K: order-debiased accuracy >= 65%, interval above "
                  "50%", a[0], a[1], 0.65, 0.5, a[2]),
        g.below(f"{NAMES[GENERATE]} at 1K-4K: parse-failure interval below 5%", f[0], f[1],
                0.05, f[2]),
    ]  # fmt: skip
    for control in controls:
        value, interval, n = pooled(runs[LOGPROB], "debiased", control, None, ci)
        name = (
            f"{NAMES[LOGPROB]}, context {CONTROL_WORDS[control]}: order-debiased accuracy "
            "interval contains 50%"
        )
        out.append(g.contains(name, value, interval, 0.5, n))
    return out

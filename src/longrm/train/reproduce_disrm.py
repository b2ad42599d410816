"""The DisRM track: does training on long pairs move the boundary where a reward model reads?

Two discriminative RMs start from the same untrained weights and train with the same budget
(as many pairs, so as many steps): one on short pairs only, one on short and long pairs. Both,
and the untrained model's likelihood reward (its strongest zero-shot reading), are judged by
length on a held-out suite that shares no paragraph and no invented name with the training
items, each trained model also with its context swapped for another pair's and emptied: a model
that reads the context falls to chance without it, one that rewards style does not.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from longrm.bench.construct import FAMILIES, parse_lengths
from longrm.evaluate.intervals import IntervalSettings
from longrm.items import Item, write_items
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
from longrm.train.reproduce_cost import (
    JUDGE_EXTRA,
    SECOND_ANSWER,
    SEQUENCE_EXTRA,
    Costs,
    eval_s,
    train_s,
)
from longrm.train.reproduce_report import Comparison, Row, RunRecords, paired, pooled

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

SHORT = "disrm-short"
LONG = "disrm-long"
LIKELIHOOD = "likelihood"
JUDGE = "judge"
NAMES = {
    LIKELIHOOD: "untrained likelihood",
    SHORT: "DisRM short-only",
    LONG: "DisRM short+long",
    JUDGE: "untrained judge (logprob)",
}


def round_robin(cells: Sequence[Sequence[Item]], needed: int) -> list[Item]:
    """Return `needed` items taking the first item of every cell, then the second, and so on,
    so that every (length, family) cell contributes evenly."""
    out: list[Item] = []
    depth = max((len(c) for c in cells), default=0)
    for j in range(depth):
        for cell in cells:
            if len(out) < needed and j < len(cell):
                out.append(cell[j])
    if len(out) < needed:
        raise ValueError(f"only {len(out)} items to take {needed} from")
    return out


def by_cell(items: Sequence[Item]) -> list[list[Item]]:
    """Return the items grouped by (length bucket, family), in build order."""
    cells: dict[tuple[str, str], list[Item]] = {}
    for item in items:
        cells.setdefault((item.length_bucket, item.task), []).append(item)
    return list(cells.values())


@dataclass(frozen=True)
class DisrmTrack(TrackSizes):
    """Sizes of the DisRM track. The defaults hold 48 held-out pairs per bucket at 512-4K (12
    per length and family) and train each DisRM on 192 pairs (48 steps of 4 pairs): see
    `estimate` for what that costs."""

    DATA_KEYS: ClassVar[tuple[str, ...]] = (
        *TrackSizes.DATA_KEYS, "short_lengths", "long_lengths", "train_per_cell", "train_seed",
    )  # fmt: skip
    LENGTH_KEYS: ClassVar[tuple[str, ...]] = ("eval_lengths", "short_lengths", "long_lengths")

    #: the short pairs (the builder's 80-95% of 448 and 512 tokens: about 360-490 tokens;
    #: 384 is too small for the counting family's question and planted facts)
    short_lengths: str = "448,512"
    long_lengths: str = "1k,2k"
    #: short-only pairs per (short length, family); the short+long DisRM takes half of them and
    #: as many long pairs, so both see the same number of pairs in the same number of steps
    train_per_cell: int = 24
    controls: str = "swap,empty"
    baseline_controls: bool = False  # the untrained likelihood with the controls too
    curriculum: str = "none"  # none | length (short pairs first)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.curriculum not in ("none", "length"):
            raise ValueError(f"--curriculum must be none or length, got {self.curriculum!r}")

    @property
    def name(self) -> str:
        return "disrm"

    @property
    def summary(self) -> str:
        return (
            "A DisRM trained on short pairs only against one trained with the same budget on "
            "short and long pairs, both from the untrained weights whose likelihood reward is "
            "the baseline; held-out pairs by length, each trained model also with the context "
            "swapped and emptied."
        )

    # --- sizes ---------------------------------------------------------------------------

    def train_mix(self) -> dict[str, dict[str, int]]:
        """Return the pairs per bucket of each DisRM's training set (what `build` writes)."""
        families = len(FAMILIES)
        short = {b: self.train_per_cell * families for b in bucket_labels(self.short_lengths)}
        kept = {b: (self.train_per_cell // 2) * families for b in short}
        needed = sum(short.values()) - sum(kept.values())
        long_buckets = bucket_labels(self.long_lengths)
        cells = [b for b in long_buckets for _ in range(families)]
        rounds, rest = divmod(needed, len(cells))
        extra = {b: rounds * families for b in long_buckets}
        for b in cells[:rest]:
            extra[b] += 1
        return {SHORT: short, LONG: {**kept, **extra}}

    def estimate(self, costs: Costs) -> dict[str, float]:
        mix = self.train_mix()
        buckets = bucket_labels(self.eval_lengths)
        pairs = pairs_per_bucket(self.eval_per_cell)
        controls = check_controls(self.controls)
        out = {"data": 15.0}
        packed = SEQUENCE_EXTRA + SECOND_ANSWER  # both answers after one copy of the prompt
        out.update({label: train_s(costs, mix[label], packed, 1) for label in mix})
        base_controls = controls if self.baseline_controls else []
        out[f"eval {LIKELIHOOD}"] = eval_s(costs, buckets, pairs, SEQUENCE_EXTRA, base_controls)
        for label in (SHORT, LONG):
            out[f"eval {label}"] = eval_s(costs, buckets, pairs, SEQUENCE_EXTRA, controls)
        if self.judge_baseline:
            out[f"eval {JUDGE}"] = eval_s(costs, buckets, pairs, JUDGE_EXTRA)
        return out

    # --- data ----------------------------------------------------------------------------

    def build(self, tokenizer: PreTrainedTokenizerBase, data: Path) -> dict[str, Any]:
        held_out = heldout_suite(tokenizer, self.eval_lengths, self.eval_per_cell, self.eval_seed)
        short = training_suite(
            tokenizer, lengths=self.short_lengths, seed=self.train_seed, held_out=held_out,
            items_per_cell=self.train_per_cell, formats=PAIRWISE,
        )  # fmt: skip
        kept = [i for cell in by_cell(short) for i in cell[: self.train_per_cell // 2]]
        needed = len(short) - len(kept)
        cells = len(FAMILIES) * len(parse_lengths(self.long_lengths))
        long_pool = training_suite(
            tokenizer, lengths=self.long_lengths, seed=self.train_seed + 1, held_out=held_out,
            items_per_cell=math.ceil(needed / cells), formats=PAIRWISE,
        )  # fmt: skip
        long_items = [
            dataclasses.replace(i, id=f"long-{i.id}")  # ids unique within the training set
            for i in round_robin(by_cell(long_pool), needed)
        ]
        overlap = check_disjoint(short + long_items, held_out)
        write_items(held_out, data / "heldout")
        write_items(short, data / "train-short")
        write_items(kept + long_items, data / "train-long")
        counts = {
            "heldout": bucket_counts(held_out),
            SHORT: bucket_counts(short),
            LONG: bucket_counts(kept + long_items),
        }
        description = (
            f"Held-out: {counts_text(counts['heldout'])}, seed {self.eval_seed}. Training "
            f"(seed {self.train_seed}): {NAMES[SHORT]} {counts_text(counts[SHORT])}; "
            f"{NAMES[LONG]} {counts_text(counts[LONG])}. Shared with the held-out suite: "
            f"{len(overlap['paragraphs'])} context paragraphs, {len(overlap['invented'])} "
            "invented names."
        )
        return {"counts": counts, "overlap": overlap, "description": description}

    # --- steps ---------------------------------------------------------------------------

    def plan(self, out: Path, model: str) -> Plan:
        data = out / "data"
        common: tuple[str, ...] = ("--pairwise_only", "--max_length", str(self.max_length),
                                   "--save_strategy", "no", "--seed", "0")  # fmt: skip
        if self.curriculum != "none":
            common += ("--curriculum", self.curriculum)
        train = tuple(
            TrainStep(label, "disrm", ("--model", model, "--data", str(data / folder), *common))
            for label, folder in ((SHORT, "train-short"), (LONG, "train-long"))
        )
        controls = ",".join(check_controls(self.controls)) or None
        evals = [
            EvalStep(LIKELIHOOD, NAMES[LIKELIHOOD], model, "likelihood",
                     ablate=controls if self.baseline_controls else None),
            *(EvalStep(s.label, NAMES[s.label], str(s.folder(out)), "scalar", ablate=controls)
              for s in train),
        ]  # fmt: skip
        if self.judge_baseline:
            evals.append(EvalStep(JUDGE, NAMES[JUDGE], model, "judge", verdict="logprob"))
        return Plan(data / "heldout", train, tuple(evals))

    def rows(self, plan: Plan) -> list[Row]:
        controls = check_controls(self.controls)
        rows = []
        for label in (LIKELIHOOD, SHORT, LONG):
            rows.append(Row(NAMES[label], label))
            if label != LIKELIHOOD or self.baseline_controls:
                rows += [Row(NAMES[label], label, condition=c) for c in controls]
        if self.judge_baseline:
            rows += [Row(NAMES[JUDGE], JUDGE), Row(NAMES[JUDGE], JUDGE, "debiased")]
        return rows

    def _groups(self) -> dict[str, tuple[str, ...]]:
        """Return the goals' pooled buckets, kept to those the held-out suite has."""
        have = set(bucket_labels(self.eval_lengths))
        wanted = {"512": ("512",), "1K-4K": ("1k", "2k", "4k"), "2K-4K": ("2k", "4k")}
        return {k: tuple(b for b in v if b in have) for k, v in wanted.items()}

    def comparisons(self, plan: Plan) -> list[Comparison]:
        groups = self._groups()
        return [
            Comparison(LONG, LIKELIHOOD, groups=(("1K-4K", groups["1K-4K"]),)),
            Comparison(LONG, SHORT, groups=(("2K-4K", groups["2K-4K"]),)),
            Comparison(SHORT, LIKELIHOOD, groups=(("1K-4K", groups["1K-4K"]),)),
        ]

    def goals(self, runs: dict[str, RunRecords]) -> list[g.Goal]:
        return disrm_goals(runs, self._groups(), check_controls(self.controls), IntervalSettings())


def _paired(
    runs: dict[str, RunRecords], a: str, b: str, buckets: Sequence[str], ci: IntervalSettings
) -> tuple[float | None, list[float] | None, int]:
    d = paired(runs[a], runs[b], "accuracy", buckets, ci)
    return d["difference"], d["difference_ci"], d["n_items"]


def disrm_goals(
    runs: dict[str, RunRecords],
    groups: dict[str, tuple[str, ...]],
    controls: Sequence[str],
    ci: IntervalSettings,
) -> list[g.Goal]:
    """Return the DisRM track's goals, each decided by its interval (see `goals`):

    - the short+long DisRM beats the untrained likelihood at 1K-4K by at least 10 points, its
      paired interval above 0;
    - it beats the short-only DisRM at 2K-4K, paired interval above 0, and loses no more than 2
      points at 512 (the paired interval's low end at -2 or above);
    - with the context swapped and emptied, every trained DisRM's accuracy interval holds 50%.
    """
    vs_base = _paired(runs, LONG, LIKELIHOOD, groups["1K-4K"], ci)
    vs_short = _paired(runs, LONG, SHORT, groups["2K-4K"], ci)
    at_512 = _paired(runs, LONG, SHORT, groups["512"], ci)
    out = [
        g.gain(f"{NAMES[LONG]} - {NAMES[LIKELIHOOD]} at 1K-4K >= +10 pts, paired interval "
               "above 0", vs_base[0], vs_base[1], 0.10, vs_base[2]),
        g.above(f"{NAMES[LONG]} - {NAMES[SHORT]} at 2K-4K: paired interval above 0",
                vs_short[0], vs_short[1], 0.0, vs_short[2]),
        g.at_least(f"{NAMES[LONG]} - {NAMES[SHORT]} at 512: paired interval low end >= -2 pts",
                   at_512[0], at_512[1], -0.02, at_512[2], signed=True),
    ]  # fmt: skip
    for label in (SHORT, LONG):
        for control in controls:
            value, interval, n = pooled(runs[label], "accuracy", control, None, ci)
            name = f"{NAMES[label]}, context {CONTROL_WORDS[control]}: interval contains 50%"
            out.append(g.contains(name, value, interval, 0.5, n))
    return out

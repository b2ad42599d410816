"""Items as (better, worse) candidate pairs: the unit every context-blind control judges.

A pairwise item is one pair. A Best-of-N item is decomposed into every pair of candidates whose
gold order is known: all i < j when the item carries no gold scores (candidates are stored best
first), else only the pairs whose gold scores differ (tied candidates are no pair). The pairs of
one item share a `group` (the item's key): cross-fitting never trains on one pair of an item and
tests on another, and the audit scores an item by the mean of its pairs' outcomes, so that
correlated pairs do not pass for independent evidence. `best_of_n="skip"` leaves Best-of-N items
out (counted) instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from longrm.items import Item

BestOfN = Literal["pairs", "skip"]
#: fields a pair's outcomes can be broken down by (see `Pair.field`)
GROUP_FIELDS = ("task", "subtask", "subtype", "length_bucket", "format", "ranks")


@dataclass(frozen=True)
class Pair:
    """Two candidates of one item, `better` before `worse` by the item's gold order."""

    item: Item
    better: int
    worse: int

    @property
    def key(self) -> str:
        """Return the pair's identity: the item key, plus the ranks for a Best-of-N pair."""
        if self.item.is_pairwise:
            return self.item.key
        return f"{self.item.key}#{self.better + 1}>{self.worse + 1}"

    @property
    def group(self) -> str:
        """Return the item's key: pairs that share it share a cross-fitting fold."""
        return self.item.key

    @property
    def texts(self) -> tuple[str, str]:
        """Return (better candidate, worse candidate)."""
        return self.item.candidates[self.better], self.item.candidates[self.worse]

    def field(self, name: str) -> str:
        """Return the pair's value of a breakdown field (one of GROUP_FIELDS).

        `subtask` of a Best-of-N pair whose item's subtask lists one label per candidate joined
        by ">" (built suites: the tiers) is the pair's two labels, e.g. "grounded>wrong".
        `format` is "pairwise" or "best-of-N"; `ranks` the two gold ranks, e.g. "1>3".
        """
        item = self.item
        if name == "format":
            return "pairwise" if item.is_pairwise else f"best-of-{item.n}"
        if name == "ranks":
            return f"{self.better + 1}>{self.worse + 1}"
        if name == "subtask" and not item.is_pairwise:
            labels = item.subtask.split(">")
            if len(labels) == item.n:
                return f"{labels[self.better]}>{labels[self.worse]}"
        if name not in GROUP_FIELDS:
            raise ValueError(f"unknown breakdown {name!r}: choose from {', '.join(GROUP_FIELDS)}")
        return str(getattr(item, name))


def ordered_pairs(item: Item) -> list[tuple[int, int]]:
    """Return the (better, worse) candidate indices whose gold order the item states."""
    scores = item.candidate_scores
    return [
        (i, j)
        for i in range(item.n)
        for j in range(i + 1, item.n)
        if scores is None or scores[i] > scores[j]
    ]


@dataclass
class PairSet:
    """The pairs of a benchmark and the Best-of-N items left out (`best_of_n="skip"`)."""

    pairs: list[Pair]
    skipped_best_of_n: int = 0

    @property
    def n_items(self) -> int:
        """Return how many items the pairs come from."""
        return len({p.group for p in self.pairs})


def item_pairs(items: Iterable[Item], best_of_n: BestOfN = "pairs") -> PairSet:
    """Return the pairs of `items`: pairwise items as they are, Best-of-N items decomposed or
    skipped (counted).
    """
    if best_of_n not in ("pairs", "skip"):
        raise ValueError(f"best_of_n must be 'pairs' or 'skip', got {best_of_n!r}")
    out = PairSet(pairs=[])
    for item in items:
        if not item.is_pairwise and best_of_n == "skip":
            out.skipped_best_of_n += 1
            continue
        out.pairs.extend(Pair(item, i, j) for i, j in ordered_pairs(item))
    return out


def pair_outcome(better_score: float, worse_score: float) -> float:
    """Return 1 when the better candidate scores higher, 0 when lower, 0.5 on a tie.

    A tie must not be broken by position: candidates are stored best first, so any tie-break by
    index would read the gold order. A NaN score (nothing could be scored) counts as a tie.
    """
    if math.isnan(better_score) or math.isnan(worse_score):
        return 0.5
    if better_score > worse_score:
        return 1.0
    return 0.5 if better_score == worse_score else 0.0


def items_of(pairs: Sequence[Pair]) -> list[Item]:
    """Return the distinct items of `pairs`, in first-seen order."""
    seen: dict[str, Item] = {}
    for pair in pairs:
        seen.setdefault(pair.group, pair.item)
    return list(seen.values())

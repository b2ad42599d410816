"""The benchmark audit: run controls on a benchmark's pairs, and say whether any context-blind
one beats (or loses to) chance.

Each control gives per-pair outcomes (1 right, 0.5 tie, 0 wrong). Items are the unit of an
accuracy: an item's score is the mean outcome of its pairs (of those in the breakdown cell), and
the accuracy is the mean item score with a Wilson interval over items (successes = the sum of
item scores, so a tie counts half). The pairs of a Best-of-N item share its candidates and its
context; counting them as independent would narrow the interval with no new evidence. A blind
control whose interval excludes 50% is a leak: the labels can be read, or are inverted, without
the context. Many controls are run at once, so on a clean benchmark one of them excludes 50% now
and then by chance (each about 5% of the time at level 0.95; mirrored controls exclude together).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from longrm.bench.controls import Control, ControlUnavailable, heuristic_controls, learned_controls
from longrm.bench.pairs import GROUP_FIELDS, BestOfN, Pair, PairSet, item_pairs
from longrm.evaluate.intervals import paired_bootstrap_interval, wilson_interval
from longrm.evaluate.metrics import bucket_sort_key
from longrm.items import Item

CHANCE = 0.5


@dataclass(frozen=True)
class Accuracy:
    """The mean of n outcomes and its Wilson interval at `level`."""

    n: int
    wins: float
    level: float
    lo: float
    hi: float

    @classmethod
    def of(cls, outcomes: Iterable[float], level: float) -> Accuracy:
        """Return the accuracy of outcomes in [0, 1] (ties already 0.5)."""
        values = list(outcomes)
        wins = math.fsum(values)
        lo, hi = wilson_interval(wins, len(values), level)
        return cls(len(values), wins, level, lo, hi)

    @property
    def value(self) -> float:
        """Return the accuracy (nan when there are no outcomes)."""
        return self.wins / self.n if self.n else math.nan

    @property
    def excludes_chance(self) -> bool:
        """Return True when the interval lies wholly above or below 50%."""
        return self.n > 0 and (self.lo > CHANCE or self.hi < CHANCE)

    def text(self) -> str:
        """Return "71.0% [63.1, 77.9]"."""
        return f"{100 * self.value:.1f}% [{100 * self.lo:.1f}, {100 * self.hi:.1f}]"

    def to_dict(self) -> dict[str, Any]:
        """Return the accuracy as JSON-ready numbers."""
        return {
            "n": self.n,
            "accuracy": self.value if self.n else None,
            "interval": [self.lo, self.hi],
            "excludes_chance": self.excludes_chance,
        }


@dataclass
class ControlResult:
    """One control's outcomes on the audited pairs, or why it could not run."""

    name: str
    blind: bool
    outcomes: dict[str, float]
    notes: list[str] = field(default_factory=list)
    unavailable: str | None = None


@dataclass
class AuditResult:
    """Every control's outcomes on one benchmark's pairs, summarised on demand."""

    pairs: PairSet
    controls: list[ControlResult]
    level: float = 0.95

    def control(self, name: str) -> ControlResult:
        """Return the result of the control called `name`."""
        for result in self.controls:
            if result.name == name:
                return result
        raise KeyError(f"no control {name!r}: {', '.join(c.name for c in self.controls)}")

    def item_scores(self, name: str, pairs: Sequence[Pair] | None = None) -> dict[str, float]:
        """Return item key -> the mean outcome of its `pairs` (default: all) the control judged."""
        outcomes = self.control(name).outcomes
        by_item: dict[str, list[float]] = {}
        for pair in self.pairs.pairs if pairs is None else pairs:
            if pair.key in outcomes:
                by_item.setdefault(pair.group, []).append(outcomes[pair.key])
        return {key: math.fsum(values) / len(values) for key, values in by_item.items()}

    def accuracy(self, name: str, pairs: Sequence[Pair] | None = None) -> Accuracy:
        """Return a control's accuracy over the items of `pairs` (default: all)."""
        return Accuracy.of(self.item_scores(name, pairs).values(), self.level)

    def groups(self, by: str) -> dict[str, list[Pair]]:
        """Return the pairs grouped by a breakdown field (see `Pair.field`), groups sorted."""
        found: dict[str, list[Pair]] = {}
        for pair in self.pairs.pairs:
            found.setdefault(pair.field(by), []).append(pair)
        key = bucket_sort_key if by == "length_bucket" else (lambda v: (0.0, v))
        return {value: found[value] for value in sorted(found, key=key)}

    def breakdown(self, name: str, by: str) -> dict[str, Accuracy]:
        """Return a control's accuracy per value of a breakdown field."""
        return {value: self.accuracy(name, pairs) for value, pairs in self.groups(by).items()}

    def leaks(self) -> list[tuple[str, Accuracy]]:
        """Return (name, accuracy) of every blind control whose interval excludes 50%, the
        farthest from chance first.
        """
        found = [
            (c.name, self.accuracy(c.name))
            for c in self.controls
            if c.blind and c.unavailable is None
        ]
        leaks = [(name, acc) for name, acc in found if acc.excludes_chance]
        return sorted(leaks, key=lambda x: -abs(x[1].value - CHANCE))

    def verdict(self) -> str:
        """Return the one-line verdict: LEAK naming every such control, else clean."""
        leaks = self.leaks()
        if leaks:
            named = ", ".join(f"{name} {acc.text()}" for name, acc in leaks)
            verb = "excludes" if len(leaks) == 1 else "exclude"
            return f"verdict: LEAK - {named} {verb} chance"
        pct = f"{100 * self.level:g}%"
        return (
            f"verdict: clean - no context-blind control's {pct} interval excludes 50% "
            f"(n={self.pairs.n_items})"
        )

    def difference(
        self, first: str, second: str, n_resamples: int = 1000, seed: int = 0
    ) -> tuple[float, tuple[float, float], int]:
        """Return (mean difference, paired-bootstrap interval, n) of two controls' item scores on
        the items both judged: e.g. a model with the context minus the same model without it.
        """
        a, b = self.item_scores(first), self.item_scores(second)
        keys = [k for k in a if k in b]
        if not keys:
            raise ValueError(f"{first!r} and {second!r} judged no item in common")
        xs, ys = [a[k] for k in keys], [b[k] for k in keys]
        diff = math.fsum(xs) / len(keys) - math.fsum(ys) / len(keys)
        interval = paired_bootstrap_interval(xs, ys, n_resamples, self.level, seed)
        return diff, interval, len(keys)

    def to_dict(self, by: Sequence[str] = GROUP_FIELDS) -> dict[str, Any]:
        """Return everything as JSON-ready data: per control its accuracy, breakdowns by `by`,
        notes and per-pair outcomes; the pairs' fields; the leaks and the verdict.
        """
        controls = []
        for c in self.controls:
            entry: dict[str, Any] = {"name": c.name, "blind": c.blind, "notes": c.notes}
            if c.unavailable is not None:
                entry["unavailable"] = c.unavailable
            else:
                entry.update(self.accuracy(c.name).to_dict())
                entry["by"] = {
                    f: {v: a.to_dict() for v, a in self.breakdown(c.name, f).items()} for f in by
                }
                entry["outcomes"] = c.outcomes
            controls.append(entry)
        return {
            "level": self.level,
            "n_pairs": len(self.pairs.pairs),
            "n_items": self.pairs.n_items,
            "skipped_best_of_n": self.pairs.skipped_best_of_n,
            "pairs": {p.key: {f: p.field(f) for f in GROUP_FIELDS} for p in self.pairs.pairs},
            "controls": controls,
            "leaks": [name for name, _ in self.leaks()],
            "verdict": self.verdict(),
        }


def default_controls(folds: int = 5, seed: int = 0) -> list[Control]:
    """Return the model-free controls: the heuristics (each with its reverse) and the
    cross-fitted bag-of-words learners.
    """
    return [*heuristic_controls(), *learned_controls(folds, seed)]


def run_audit(
    items: Iterable[Item],
    controls: Sequence[Control] | None = None,
    *,
    level: float = 0.95,
    best_of_n: BestOfN = "pairs",
) -> AuditResult:
    """Return every control's outcomes on the items' pairs (`default_controls()` if none given).

    A control that raises ControlUnavailable is kept with the reason, and no outcomes.
    """
    pairs = item_pairs(items, best_of_n)
    if not pairs.pairs:
        raise ValueError("no pairs to audit: the benchmark holds no item with an ordered pair")
    results = []
    for control in default_controls() if controls is None else controls:
        try:
            outcomes = control.outcomes(pairs.pairs)
            unavailable = None
        except ControlUnavailable as err:
            outcomes, unavailable = {}, str(err)
        results.append(
            ControlResult(control.name, control.blind, outcomes, list(control.notes), unavailable)
        )
    return AuditResult(pairs, results, level)

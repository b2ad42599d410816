"""Confidence intervals and paired tests for accuracies over items.

A 32-pair suite cannot tell 60% from 50%; every accuracy longrm reports carries an interval so
a reader can see that for themselves. Items are the unit of resampling: an item's score is
already the mean over its display orders (see `metrics.item_scores`), so resampling item scores
keeps both orders of an item together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

Interval = tuple[float, float]

# Resamples drawn per numpy call: bounds memory at _CHUNK * n floats for large suites.
_CHUNK = 256
METHOD = (
    "percentile bootstrap over items (an item's display orders resampled together); Wilson "
    "score interval when --bootstrap is 0 or every item scores the same"
)


@dataclass(frozen=True)
class IntervalSettings:
    """How intervals are drawn: confidence level, bootstrap resamples (0: Wilson only), seed."""

    level: float = 0.95
    n_resamples: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        z_value(self.level)  # validates the level
        if self.n_resamples < 0:
            raise ValueError(f"--bootstrap must be >= 0, got {self.n_resamples}")

    def as_dict(self) -> dict[str, Any]:
        """Return the settings as results.json's `ci` block records them."""
        return {
            "level": self.level,
            "bootstrap": self.n_resamples,
            "seed": self.seed,
            "method": METHOD,
        }


def z_value(level: float) -> float:
    """Return the two-sided standard normal quantile z = Phi^-1((1 + level) / 2)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson_interval(successes: float, n: int, level: float = 0.95) -> Interval:
    """Return the Wilson score interval for a proportion successes / n.

    With p = successes / n and z = Phi^-1((1 + level) / 2):
    centre = (p + z^2 / 2n) / (1 + z^2 / n),
    half = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2), clipped to [0, 1].
    Unlike the Wald interval it neither collapses to a point at 0% or 100% nor leaves [0, 1].
    Fractional successes are allowed (a tie or an item split between its orders counts half);
    since a score in [0, 1] with mean p has variance at most p (1 - p), the interval is then
    conservative. n = 0 gives (0, 1): nothing is known.
    """
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return (0.0, 1.0)
    z = z_value(level)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_means(values: Sequence[float], n_resamples: int, seed: int = 0) -> np.ndarray:
    """Return n_resamples means of `values` resampled with replacement (numpy's PCG64, `seed`)."""
    data = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    for start in range(0, n_resamples, _CHUNK):
        size = min(_CHUNK, n_resamples - start)
        means[start : start + size] = data[rng.integers(0, len(data), (size, len(data)))].mean(1)
    return means


def bootstrap_interval(
    values: Sequence[float], n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Return the percentile-bootstrap interval of the mean of `values` (one value per item).

    Draw B resamples of the n values with replacement, take each resample's mean m_b, and return
    the (1 - level) / 2 and (1 + level) / 2 quantiles of {m_b} (linear interpolation). Seeded, so
    the same values give the same interval.
    """
    if not values:
        raise ValueError("cannot bootstrap an empty sample")
    if n_resamples < 1:
        raise ValueError(f"need at least one resample, got {n_resamples}")
    z_value(level)  # validates level
    means = bootstrap_means(values, n_resamples, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def accuracy_interval(
    item_scores: Sequence[float], n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Return the interval of a mean item score in [0, 1]: bootstrap over items, else Wilson.

    Wilson (with successes = sum of item scores) is used when n_resamples is 0 (no resampling)
    or when every item scores the same: a bootstrap of identical values has zero width and would
    claim certainty from a handful of items, where Wilson stays honest.
    """
    if not item_scores:
        raise ValueError("no items")
    if n_resamples == 0 or min(item_scores) == max(item_scores):
        return wilson_interval(math.fsum(item_scores), len(item_scores), level)
    return bootstrap_interval(item_scores, n_resamples, level, seed)


def stratified_bootstrap_interval(
    groups: Sequence[Sequence[float]], n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Return the percentile-bootstrap interval of the mean of group means (a macro average).

    Each resample draws every group's values again within that group, so each group keeps its
    size and weight: m_b = (1/G) sum_g mean(resample_b(group g)); the interval is the
    (1 - level) / 2 and (1 + level) / 2 quantiles of {m_b}. Group g uses seed + g.
    """
    if not groups or any(len(g) == 0 for g in groups):
        raise ValueError("every group needs at least one value")
    if n_resamples < 1:
        raise ValueError(f"need at least one resample, got {n_resamples}")
    z_value(level)
    means = np.mean(
        [bootstrap_means(g, n_resamples, seed + i) for i, g in enumerate(groups)], axis=0
    )
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return (float(lo), float(hi))


def paired_bootstrap_interval(
    a: Sequence[float],
    b: Sequence[float],
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Interval:
    """Return the percentile-bootstrap interval of mean(a) - mean(b) over paired items.

    a[i] and b[i] are two scores of the same item (two runs, or one run with and without the
    context). Each resample draws items, not scores, so it keeps a pair together:
    d_b = (1/n) sum_{i in resample b} (a_i - b_i); the interval is the (1 - level) / 2 and
    (1 + level) / 2 quantiles of {d_b}. Pairing removes the item-difficulty variance two
    independent intervals would carry. All differences equal gives the zero-width (d, d).
    """
    if len(a) != len(b):
        raise ValueError(f"paired samples differ in length: {len(a)} vs {len(b)}")
    return bootstrap_interval([x - y for x, y in zip(a, b, strict=True)], n_resamples, level, seed)


def mcnemar_exact(b: int, c: int) -> float:
    """Return McNemar's exact two-sided p-value for b vs c discordant pairs.

    b = items only the first run got right, c = items only the second got right. Under the null
    (equal accuracy) each discordant item is a fair coin, so with n = b + c and k = min(b, c):
    p = min(1, 2 * sum_{i=0}^{k} C(n, i) / 2^n). No discordant items gives p = 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"counts must be non-negative, got {b}, {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)

"""Interval and paired-test functions against hand-computed, statsmodels and scipy values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from longrm.evaluate.intervals import (
    IntervalSettings,
    accuracy_interval,
    bootstrap_interval,
    bootstrap_means,
    mcnemar_exact,
    paired_bootstrap_interval,
    stratified_bootstrap_interval,
    wilson_interval,
    z_value,
)


def test_z_value_is_the_normal_quantile() -> None:
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_value(0.90) == pytest.approx(stats.norm.ppf(0.95))
    with pytest.raises(ValueError):
        z_value(1.0)


def test_wilson_by_hand() -> None:
    z2 = z_value(0.95) ** 2
    # 0 of 10: [0, z^2 / (n + z^2)]; n of n: [n / (n + z^2), 1]
    assert wilson_interval(0, 10) == pytest.approx((0.0, z2 / (10 + z2)))
    assert wilson_interval(10, 10) == pytest.approx((10 / (10 + z2), 1.0))
    # half of n is centred on 1/2: centre (p + z^2/2n) / (1 + z^2/n) = 1/2
    lo, hi = wilson_interval(12, 24)
    assert (lo + hi) / 2 == pytest.approx(0.5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize("level", [0.8, 0.9, 0.95, 0.99])
@pytest.mark.parametrize(("successes", "n"), [(0, 1), (1, 1), (7, 20), (19, 31), (57.5, 96)])
def test_wilson_matches_statsmodels(successes: float, n: int, level: float) -> None:
    expected = proportion_confint(successes, n, alpha=1 - level, method="wilson")
    assert wilson_interval(successes, n, level) == pytest.approx(expected, abs=1e-12)


def test_mcnemar_by_hand() -> None:
    # 19 pairs only A got right, 12 only B (the numbers): p = 2 P(X <= 12), X ~ Bin(31, 1/2)
    assert mcnemar_exact(19, 12) == pytest.approx(0.2810415, abs=1e-6)
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 32)  # 2 * (1/2)^5
    assert mcnemar_exact(5, 0) == mcnemar_exact(0, 5)
    assert mcnemar_exact(3, 3) == 1.0  # 2 * P(X <= 3) > 1, clipped
    assert mcnemar_exact(0, 0) == 1.0  # no discordant items: no evidence either way
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


@pytest.mark.parametrize(("b", "c"), [(0, 1), (1, 9), (19, 12), (40, 25), (100, 130), (7, 7)])
def test_mcnemar_matches_statsmodels_and_scipy(b: int, c: int) -> None:
    expected = mcnemar([[10, b], [c, 10]], exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)
    assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue, rel=1e-9)


def test_bootstrap_is_seeded_and_percentile() -> None:
    values = [0.0, 1.0, 1.0, 0.5, 1.0, 0.0, 1.0, 1.0]
    first = bootstrap_interval(values, 500, 0.9, seed=3)
    assert first == bootstrap_interval(values, 500, 0.9, seed=3)
    assert not np.array_equal(bootstrap_means(values, 50, 3), bootstrap_means(values, 50, 4))
    # the same draws by hand: resample with numpy's generator, take the 5% and 95% quantiles
    rng = np.random.default_rng(3)
    data = np.asarray(values)
    means = data[rng.integers(0, len(data), (500, len(data)))].mean(1)
    assert first == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))
    assert bootstrap_interval([0.25] * 5) == (0.25, 0.25)  # nothing varies: zero width


def test_bootstrap_agrees_with_scipy_on_a_large_sample() -> None:
    values = np.random.default_rng(0).binomial(1, 0.62, 400).astype(float)
    ours = bootstrap_interval(list(values), 4000, 0.95, seed=1)
    theirs = stats.bootstrap(
        (values,), np.mean, n_resamples=4000, confidence_level=0.95, method="percentile",
        random_state=np.random.default_rng(2),
    ).confidence_interval  # fmt: skip
    assert ours == pytest.approx((theirs.low, theirs.high), abs=0.01)
    # and with the normal approximation p +- z sqrt(p (1 - p) / n)
    p, se = values.mean(), values.std() / np.sqrt(len(values))
    assert ours == pytest.approx((p - 1.96 * se, p + 1.96 * se), abs=0.01)


def test_accuracy_interval_falls_back_to_wilson() -> None:
    # every item the same: Wilson, not a zero-width bootstrap
    assert accuracy_interval([1.0] * 6) == wilson_interval(6, 6)
    # no resampling: Wilson with fractional successes (an item split between its orders: 1/2)
    scores = [1.0, 0.5, 0.0, 1.0]
    assert accuracy_interval(scores, n_resamples=0) == wilson_interval(2.5, 4)
    assert accuracy_interval(scores, 300, seed=5) == bootstrap_interval(scores, 300, seed=5)
    with pytest.raises(ValueError):
        accuracy_interval([])


def test_stratified_bootstrap_keeps_each_group() -> None:
    # constant groups: every resample gives the mean of group means, (1 + 0 + 0.5) / 3
    assert stratified_bootstrap_interval([[1.0] * 3, [0.0], [0.5, 0.5]]) == pytest.approx(
        (0.5, 0.5)
    )
    # by hand: group g resampled with seed + g, then the groups' means averaged
    groups = [[0.0, 1.0, 1.0], [1.0, 0.0]]
    got = stratified_bootstrap_interval(groups, 200, 0.8, seed=7)
    per_group = []
    for g, vals in enumerate(groups):
        rng = np.random.default_rng(7 + g)
        data = np.asarray(vals)
        per_group.append(data[rng.integers(0, len(data), (200, len(data)))].mean(1))
    expected = np.quantile(np.mean(per_group, axis=0), [0.1, 0.9])
    assert got == pytest.approx(tuple(expected))


def test_paired_bootstrap_is_the_bootstrap_of_differences() -> None:
    a = [1.0, 1.0, 0.0, 1.0, 0.5, 1.0]
    b = [1.0, 0.0, 0.0, 0.0, 0.5, 1.0]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    assert paired_bootstrap_interval(a, b, 300, seed=2) == bootstrap_interval(diffs, 300, seed=2)
    with pytest.raises(ValueError):
        paired_bootstrap_interval([1.0], [1.0, 0.0])


def test_pairing_removes_item_difficulty() -> None:
    # B is A plus a small per-item gain on items of widely varying difficulty: the paired
    # interval of the gain is much narrower than the two runs' own intervals
    rng = np.random.default_rng(0)
    difficulty = rng.uniform(0, 0.9, 200)
    a = list(difficulty)
    b = list(difficulty + rng.uniform(0.0, 0.1, 200))
    lo, hi = paired_bootstrap_interval(b, a, 1000)
    assert 0.0 < lo < 0.05 < hi < 0.1
    a_lo, a_hi = bootstrap_interval(a, 1000)
    assert hi - lo < (a_hi - a_lo) / 5


def test_settings_validate_and_record_themselves() -> None:
    assert IntervalSettings().as_dict()["level"] == 0.95
    assert IntervalSettings(0.9, 200, 3).as_dict()["bootstrap"] == 200
    with pytest.raises(ValueError):
        IntervalSettings(level=95)
    with pytest.raises(ValueError):
        IntervalSettings(n_resamples=-1)

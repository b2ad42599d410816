"""Paired comparison of two runs on the items both judged: is a difference in accuracy real?

Two accuracies with overlapping intervals can still differ reliably when measured on the same
items, and two that look apart can be noise. Pairing by item removes item difficulty from the
comparison: the difference gets a paired-bootstrap interval and McNemar's exact test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from longrm.evaluate.intervals import IntervalSettings, mcnemar_exact
from longrm.evaluate.metrics import (
    bucket_sort_key,
    debiased_item_scores,
    group_by_item,
    item_scores,
    latest_records,
    mean_or_none,
    paired_interval,
)
from longrm.evaluate.predictions import Prediction


def item_right(score: float) -> bool:
    """Return whether an item counts as right for McNemar's test: score > 0.5.

    An item's score is the mean over its display orders, so a pair is right when it is right in
    both orders (one order of two, a verdict that follows the position, is not right); a
    Best-of-N item when it earns more than half its rank-match credit.
    """
    return score > 0.5


def paired_difference(
    scores_a: dict[str, float], scores_b: dict[str, float], ci: IntervalSettings
) -> dict[str, Any]:
    """Return run A against run B on the items both scored.

    difference = mean_i a_i - mean_i b_i over the shared items i, `difference_ci` its paired
    bootstrap (items resampled, both runs' scores of an item together); only_a / only_b the
    items right (`item_right`) in A only / B only, and `mcnemar_p` McNemar's exact two-sided
    p-value on those counts.
    """
    keys = [k for k in scores_a if k in scores_b]
    a, b = [scores_a[k] for k in keys], [scores_b[k] for k in keys]
    acc_a, acc_b = mean_or_none(a), mean_or_none(b)
    only_a = sum(item_right(x) and not item_right(y) for x, y in zip(a, b, strict=True))
    only_b = sum(item_right(y) and not item_right(x) for x, y in zip(a, b, strict=True))
    return {
        "n_items": len(keys),
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "difference": None if acc_a is None or acc_b is None else acc_a - acc_b,
        "difference_ci": paired_interval(a, b, ci),
        "only_a": only_a,
        "only_b": only_b,
        "mcnemar_p": mcnemar_exact(only_a, only_b),
    }


def _with_lengths(
    scores_a: dict[str, float],
    scores_b: dict[str, float],
    bucket_of: dict[str, str],
    ci: IntervalSettings,
) -> dict[str, Any]:
    buckets: dict[str, list[str]] = defaultdict(list)
    for key in scores_a:
        if key in scores_b:
            buckets[bucket_of[key]].append(key)
    return {
        **paired_difference(scores_a, scores_b, ci),
        "by_length": {
            bucket: paired_difference(
                {k: scores_a[k] for k in buckets[bucket]},
                {k: scores_b[k] for k in buckets[bucket]},
                ci,
            )
            for bucket in sorted(buckets, key=bucket_sort_key)
        },
    }


def compare_runs(
    predictions_a: Iterable[Prediction],
    predictions_b: Iterable[Prediction],
    ci: IntervalSettings | None = None,
) -> dict[str, Any]:
    """Return run A against run B (`paired_difference`), overall and by length bucket.

    Scores are the paper's item scores (pairwise correctness, Best-of-N rank match, each the
    mean over an item's orders). `debiased` repeats the comparison for the order-debiased
    accuracy of pairwise items when both runs carry verdict scores, else it is None.
    """
    ci = ci or IntervalSettings()
    a, b = latest_records(predictions_a), latest_records(predictions_b)
    bucket_of = {key: recs[0].length_bucket for key, recs in group_by_item(a).items()}
    out = _with_lengths(item_scores(a), item_scores(b), bucket_of, ci)
    debiased_a, debiased_b = debiased_item_scores(a), debiased_item_scores(b)
    out["debiased"] = (
        None
        if debiased_a is None or debiased_b is None
        else _with_lengths(debiased_a, debiased_b, bucket_of, ci)
    )
    return out

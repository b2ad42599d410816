"""Long-RewardBench metrics: small pure functions over `Prediction` records.

A record is one judged item-order. An item's score is the mean over its orders and every aggregate
is a mean over items, so judging an item in more orders does not give it more weight.

Every accuracy in `compute_results` has a sibling `<name>_ci`: its interval [lo, hi] at the level
of the `ci` block (see `intervals`), shaped like the value (a map of intervals for a map of
accuracies), None where the value is None.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from statistics import fmean
from typing import Any

from longrm.evaluate.intervals import (
    IntervalSettings,
    accuracy_interval,
    paired_bootstrap_interval,
    stratified_bootstrap_interval,
)
from longrm.evaluate.predictions import Prediction

RecordMetric = Callable[[Prediction], float]
ItemField = Callable[[Prediction], str]
CI = list[float] | None  # an interval [lo, hi] as results.json stores it


# --- per-record metrics -------------------------------------------------------------------------


def top1(pred: Prediction) -> float:
    """Return 1.0 if the gold best (candidate 0) is ranked first, else 0.0 (0 on parse failure).

    score = 1[order[ranking[0]] == 0]
    """
    ranks = pred.slot_ranks()
    return 1.0 if any(rank == 0 and pred.order[slot] == 0 for slot, rank in ranks.items()) else 0.0


def pairwise_correct(pred: Prediction) -> float:
    """Return the authors' pairwise score: 1.0 if the chosen response (candidate 0) wins, else 0.0.

    score = 1[order[ranking[0]] == 0]. A parse failure scores 0 and stays in the denominator,
    which is why weak judges fall below the 50% chance line.
    """
    return top1(pred)


def rank_match(pred: Prediction) -> float:
    """Return the Best-of-N rank-match ratio: the fraction of slots given their gold rank.

    score = |{s : predicted_rank(s) == order[s]}| / n, 0 on parse failure. Slot s shows
    candidate order[s], whose gold rank is order[s] itself (candidate 0 is best). A slot the
    ranking leaves out earns nothing, so a partial ranking `[[A>B>C]]` of four can earn 3/4
    (the authors' partial credit).
    """
    if pred.n == 0:
        return 0.0
    ranks = pred.slot_ranks()
    return sum(1 for slot, rank in ranks.items() if pred.order[slot] == rank) / pred.n


def exact_match(pred: Prediction) -> float:
    """Return 1.0 if every slot gets its gold rank, else 0.0.

    score = 1[predicted_rank(s) == order[s] for all s]; the paper's random baselines (1/N!)
    fit this.
    """
    return 1.0 if rank_match(pred) == 1.0 else 0.0


def record_score(pred: Prediction) -> float:
    """Return the paper's per-record score: pairwise correctness, or rank match for Best-of-N."""
    return pairwise_correct(pred) if pred.is_pairwise else rank_match(pred)


def debiased_pair_score(records: Sequence[Prediction]) -> float:
    """Return a pairwise item's order-debiased correctness from its per-slot verdict scores.

    With s_o(c) the score record o gives candidate c (scores re-indexed by candidate, 0 = gold),
    g = mean_o s_o(0) and r = mean_o s_o(1): 1 if g > r, 0.5 if g == r, else 0. A judge that
    adds a constant to slot A in every order adds it to both means, so a signal smaller than its
    position bias still shows, where the argmax verdict (always A) is right in exactly one order
    of two. A record without finite scores (an error) makes the item score 0, like a parse
    failure in the argmax accuracy.
    """
    by_candidate = [r.candidate_scores() for r in records]
    rows = [s for s in by_candidate if s is not None and all(map(math.isfinite, s))]
    if not rows or len(rows) < len(records):
        return 0.0
    gold, other = fmean(s[0] for s in rows), fmean(s[1] for s in rows)
    if math.isclose(gold, other, rel_tol=1e-9, abs_tol=1e-12):
        return 0.5
    return 1.0 if gold > other else 0.0


def debiased_item_scores(predictions: Iterable[Prediction]) -> dict[str, float] | None:
    """Return each pairwise item's `debiased_pair_score`; None when no pairwise record has scores
    (a generating judge), so "no scores" never reads as 0%.
    """
    pairwise = [p for p in predictions if p.is_pairwise]
    if not any(p.scores is not None for p in pairwise):
        return None
    return {key: debiased_pair_score(recs) for key, recs in group_by_item(pairwise).items()}


# --- grouping -----------------------------------------------------------------------------------


def latest_records(predictions: Iterable[Prediction]) -> list[Prediction]:
    """Return one record per (key, order_index), the last one seen.

    A resumed or repeated run can append a record that was already judged; counting both would
    weigh that order twice within its item.
    """
    latest: dict[tuple[str, int], Prediction] = {}
    for pred in predictions:
        latest[(pred.key, pred.order_index)] = pred
    return list(latest.values())


def group_by_item(predictions: Iterable[Prediction]) -> dict[str, list[Prediction]]:
    """Return the records of each item (by key), in input order."""
    items: dict[str, list[Prediction]] = defaultdict(list)
    for pred in predictions:
        items[pred.key].append(pred)
    return dict(items)


def mean_or_none(values: Iterable[float]) -> float | None:
    """Return the arithmetic mean, or None for no values (so "no items" never reads as 0%)."""
    vals = list(values)
    return fmean(vals) if vals else None


def item_scores(
    predictions: Iterable[Prediction], metric: RecordMetric = record_score
) -> dict[str, float]:
    """Return each item's score: the mean of `metric` over that item's orders."""
    return {key: fmean(metric(r) for r in recs) for key, recs in group_by_item(predictions).items()}


def item_average(
    predictions: Iterable[Prediction], metric: RecordMetric = record_score
) -> float | None:
    """Return the mean item score: (1/|items|) * sum_i mean_{orders o of i} metric(i, o)."""
    return mean_or_none(item_scores(predictions, metric).values())


def macro_average(
    predictions: Iterable[Prediction], metric: RecordMetric = record_score
) -> float | None:
    """Return the mean over tasks of each task's mean item score, so small tasks weigh equally."""
    return mean_or_none(
        v for v in breakdown(predictions, lambda p: p.task, metric).values() if v is not None
    )


def breakdown(
    predictions: Iterable[Prediction],
    field: ItemField,
    metric: RecordMetric = record_score,
    sort_key: Callable[[str], Any] | None = None,
) -> dict[str, float | None]:
    """Return the mean item score per value of `field` (read from each item's first record)."""
    groups = group_by_field(predictions, field, sort_key)
    return {name: item_average(recs, metric) for name, recs in groups.items()}


def group_by_field(
    predictions: Iterable[Prediction],
    field: ItemField,
    sort_key: Callable[[str], Any] | None = None,
) -> dict[str, list[Prediction]]:
    """Return the records grouped by `field` of each item's first record, groups sorted."""
    groups: dict[str, list[Prediction]] = defaultdict(list)
    for recs in group_by_item(predictions).values():
        groups[field(recs[0])].extend(recs)
    return {name: groups[name] for name in sorted(groups, key=sort_key)}


def bucket_tokens(bucket: str) -> float:
    """Return a length bucket's size in tokens ("512" -> 512, "4k" -> 4096, "1m" -> 2**20).

    Unparseable buckets give inf so they sort after every real one.
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmM]?)\s*", bucket)
    if m is None:
        return math.inf
    return float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2}[m.group(2).lower()]


def bucket_sort_key(bucket: str) -> tuple[float, str]:
    """Return a sort key that orders length buckets by size, not alphabetically ("4k" < "16k")."""
    return (bucket_tokens(bucket), bucket)


def pairwise_subtype(pred: Prediction) -> str:
    """Return "same-model" for subtype "same", else "cross-model" (the dataset's two halves)."""
    return "same-model" if pred.subtype == "same" else "cross-model"


# --- intervals ----------------------------------------------------------------------------------


def interval(scores: Iterable[float], ci: IntervalSettings) -> CI:
    """Return [lo, hi] for the mean of item scores (`intervals.accuracy_interval`), None if none."""
    values = list(scores)
    if not values:
        return None
    return list(accuracy_interval(values, ci.n_resamples, ci.level, ci.seed))


def item_interval(
    predictions: Iterable[Prediction], ci: IntervalSettings, metric: RecordMetric = record_score
) -> CI:
    """Return the interval of `item_average(predictions, metric)`: items resampled whole."""
    return interval(item_scores(predictions, metric).values(), ci)


def breakdown_ci(
    predictions: Iterable[Prediction],
    field: ItemField,
    ci: IntervalSettings,
    metric: RecordMetric = record_score,
    sort_key: Callable[[str], Any] | None = None,
) -> dict[str, CI]:
    """Return the interval of each `breakdown` value, same keys in the same order."""
    groups = group_by_field(predictions, field, sort_key)
    return {name: item_interval(recs, ci, metric) for name, recs in groups.items()}


def group_mean_interval(groups: Sequence[Sequence[float]], ci: IntervalSettings) -> CI:
    """Return the interval of a mean of group means (macro, length mean): items resampled within
    each group (`intervals.stratified_bootstrap_interval`). None without groups or resamples.
    """
    groups = [g for g in groups if g]
    if not groups or ci.n_resamples == 0:
        return None
    return list(stratified_bootstrap_interval(groups, ci.n_resamples, ci.level, ci.seed))


def paired_interval(a: Sequence[float], b: Sequence[float], ci: IntervalSettings) -> CI:
    """Return the paired-bootstrap interval of mean(a) - mean(b) over the same items; None
    without items or resamples (a difference has no Wilson fallback).
    """
    if not a or ci.n_resamples == 0:
        return None
    return list(paired_bootstrap_interval(a, b, ci.n_resamples, ci.level, ci.seed))


def _field_scores(
    predictions: Iterable[Prediction],
    field: ItemField,
    metric: RecordMetric = record_score,
    sort_key: Callable[[str], Any] | None = None,
) -> list[list[float]]:
    """Return the item scores of each group of `field` (for `group_mean_interval`)."""
    groups = group_by_field(predictions, field, sort_key)
    return [list(item_scores(recs, metric).values()) for recs in groups.values()]


# --- robustness ---------------------------------------------------------------------------------


def error_rate(predictions: Iterable[Prediction]) -> float | None:
    """Return the fraction of records whose call failed: |{r : error is not None}| / |records|.

    Errors (out of memory, timeouts, HTTP failures, prompts over the window) say nothing about
    the judge's format, so they are counted here and not as parse failures.
    """
    return mean_or_none(0.0 if p.error is None else 1.0 for p in predictions)


def parse_failure_rate(predictions: Iterable[Prediction]) -> float | None:
    """Return the fraction of answered records without a usable verdict.

    rate = |{r : error is None and ranking is None}| / |{r : error is None}|; None when every
    record errored.
    """
    return mean_or_none(0.0 if p.parsed else 1.0 for p in predictions if p.error is None)


def _judged_in_several_orders(recs: Sequence[Prediction]) -> bool:
    return len({r.order_index for r in recs}) >= 2


def position_consistency(predictions: Iterable[Prediction]) -> float | None:
    """Return the fraction of multi-order items whose gold-space ranking is the same in every order.

    consistency = |{i : predicted_order(i, o) identical for all o}| / |{i : i has >= 2 orders}|.
    An item with any parse failure counts as inconsistent. None when no item has two orders.
    """
    flags: list[float] = []
    for recs in group_by_item(predictions).values():
        if not _judged_in_several_orders(recs):
            continue
        orders = [r.predicted_order() for r in recs]
        same = orders[0] is not None and all(o == orders[0] for o in orders)
        flags.append(1.0 if same else 0.0)
    return mean_or_none(flags)


def position_bias_failures(predictions: Iterable[Prediction]) -> int:
    """Return the number of pairwise items whose parsed verdicts name different winners.

    A winner that flips when the display order flips shows a verdict driven by position, not
    content. Orders that failed to parse are left out (they show up in the parse-failure rate).
    """
    count = 0
    for recs in group_by_item(predictions).values():
        if not recs[0].is_pairwise:
            continue
        winners = {order[0] for r in recs if (order := r.predicted_order())}
        count += len(winners) > 1
    return count


# --- AUC ----------------------------------------------------------------------------------------


def score_pairs(pred: Prediction) -> list[tuple[float, int]]:
    """Return (margin, label) for every slot pair i < j of a scored record.

    margin = scores[i] - scores[j]; label = 1 if slot i shows the better candidate
    (order[i] < order[j]). For a pairwise record this is the single pair (A, B) with label 1 when
    the chosen response is in slot A. Non-finite margins are dropped since they cannot be ranked.
    """
    if pred.scores is None:
        return []
    s, order = pred.scores, pred.order
    return [
        (s[i] - s[j], int(order[i] < order[j]))
        for i in range(len(order))
        for j in range(i + 1, len(order))
        if math.isfinite(s[i] - s[j])
    ]


def mann_whitney_auc(positives: Sequence[float], negatives: Sequence[float]) -> float | None:
    """Return P(pos > neg) + 0.5 * P(pos == neg); None when either class is empty.

    Computed from mid-ranks of the pooled values, AUC = (R_pos - n_pos(n_pos+1)/2) / (n_pos n_neg),
    which is O(n log n) instead of comparing every pair.
    """
    if not positives or not negatives:
        return None
    pooled = sorted([(v, 1) for v in positives] + [(v, 0) for v in negatives])
    rank_sum = 0.0
    i = 0
    while i < len(pooled):
        j = i
        while j < len(pooled) and pooled[j][0] == pooled[i][0]:
            j += 1
        mid_rank = (i + 1 + j) / 2  # mean of the tied 1-based ranks i+1 .. j
        rank_sum += mid_rank * sum(label for _, label in pooled[i:j])
        i = j
    n_pos, n_neg = len(positives), len(negatives)
    return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def auc(predictions: Iterable[Prediction]) -> float | None:
    """Return the AUC of score margins over all scored candidate pairs (see `score_pairs`).

    AUC = P(margin of a label-1 pair > margin of a label-0 pair), ties 0.5: how well the score
    gap alone separates "first slot better" from "second slot better".
    Best-of-N records contribute every (better, worse) pair, pairwise records their one pair.
    None when no record has scores or one label is absent (e.g. chosen always shown first).
    """
    pairs = [pair for p in predictions for pair in score_pairs(p)]
    return mann_whitney_auc([m for m, y in pairs if y], [m for m, y in pairs if not y])


def robustness(predictions: Sequence[Prediction]) -> dict[str, Any]:
    """Return parse-failure rate, position consistency and AUC of a group of records.

    Broken down by length, these show where a judge stops following its format or starts
    following positions: the paper's first failure mode.
    """
    return {
        "parse_failure_rate": parse_failure_rate(predictions),
        "error_rate": error_rate(predictions),
        "position_consistency": position_consistency(predictions),
        "auc": auc(predictions),
        "n_records": len(predictions),
    }


# --- all together -------------------------------------------------------------------------------


def _bon_summary(predictions: list[Prediction], ci: IntervalSettings) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, metric in (("rank_match", rank_match), ("exact_match", exact_match), ("top1", top1)):
        out[name] = item_average(predictions, metric)
        out[f"{name}_ci"] = item_interval(predictions, ci, metric)
    out["n_items"] = len(group_by_item(predictions))
    return out


def _debiased(
    pairwise: list[Prediction], ci: IntervalSettings, length: ItemField
) -> dict[str, Any]:
    """Return the order-debiased accuracy of the pairwise items, overall and by length."""
    scores = debiased_item_scores(pairwise)
    if scores is None:
        return dict.fromkeys(
            ("debiased_accuracy", "debiased_accuracy_ci", "debiased_by_length",
             "debiased_by_length_ci")
        )  # fmt: skip
    groups = group_by_field(pairwise, length, bucket_sort_key)
    by_length = {k: [scores[key] for key in group_by_item(v)] for k, v in groups.items()}
    return {
        "debiased_accuracy": mean_or_none(scores.values()),
        "debiased_accuracy_ci": interval(scores.values(), ci),
        "debiased_by_length": {k: mean_or_none(v) for k, v in by_length.items()},
        "debiased_by_length_ci": {k: interval(v, ci) for k, v in by_length.items()},
    }


def compute_results(
    predictions: Iterable[Prediction],
    truncated_items: int | None = None,
    ci: IntervalSettings | None = None,
) -> dict[str, Any]:
    """Return every Long-RewardBench metric as a JSON-able dict (fractions in [0, 1] or None).

    `truncated_items` overrides the count of items with a truncated record, for callers that
    know it from prompt building rather than from the records. Each accuracy `x` comes with
    `x_ci` (see the module docstring), drawn as `ci` says (default: 95%, 1000 resamples, seed
    0), recorded in the `ci` block.
    """
    ci = ci or IntervalSettings()
    preds = latest_records(predictions)
    pairwise = [p for p in preds if p.is_pairwise]
    bon = [p for p in preds if not p.is_pairwise]
    items = group_by_item(preds)
    if truncated_items is None:
        truncated_items = sum(any(r.truncated for r in recs) for recs in items.values())
    by_n: dict[int, list[Prediction]] = defaultdict(list)
    for p in bon:
        by_n[p.n].append(p)

    def task(p: Prediction) -> str:
        return p.task

    def length(p: Prediction) -> str:
        return p.length_bucket

    def subtask(p: Prediction) -> str:
        return p.subtask

    pairwise_by_length = breakdown(pairwise, length, pairwise_correct, bucket_sort_key)

    return {
        "overall": item_average(preds),
        "overall_ci": item_interval(preds, ci),
        "macro": macro_average(preds),
        "macro_ci": group_mean_interval(_field_scores(preds, task), ci),
        "n_items": len(items),
        "n_records": len(preds),
        "truncated_items": truncated_items,
        "errors": sum(p.error is not None for p in preds),
        "error_rate": error_rate(preds),
        "parse_failure_rate": parse_failure_rate(preds),
        "position_consistency": position_consistency(preds),
        "position_bias_failures": position_bias_failures(preds),
        "auc": auc(preds),
        "by_task": breakdown(preds, task),
        "by_task_ci": breakdown_ci(preds, task, ci),
        "by_length": breakdown(preds, length, sort_key=bucket_sort_key),
        "by_length_ci": breakdown_ci(preds, length, ci, sort_key=bucket_sort_key),
        "robustness": {
            "by_length": {
                k: robustness(v) for k, v in group_by_field(preds, length, bucket_sort_key).items()
            },
            "by_task": {k: robustness(v) for k, v in group_by_field(preds, task).items()},
        },
        "pairwise": {
            "accuracy": item_average(pairwise, pairwise_correct),
            "accuracy_ci": item_interval(pairwise, ci, pairwise_correct),
            **_debiased(pairwise, ci, length),
            "auc": auc(pairwise),
            "n_items": len(group_by_item(pairwise)),
            "by_task": breakdown(pairwise, task, pairwise_correct),
            "by_task_ci": breakdown_ci(pairwise, task, ci, pairwise_correct),
            "by_subtask": breakdown(pairwise, subtask, pairwise_correct),
            "by_subtask_ci": breakdown_ci(pairwise, subtask, ci, pairwise_correct),
            "by_length": pairwise_by_length,
            "by_length_ci": breakdown_ci(pairwise, length, ci, pairwise_correct, bucket_sort_key),
            "length_mean": mean_or_none(v for v in pairwise_by_length.values() if v is not None),
            "length_mean_ci": group_mean_interval(
                _field_scores(pairwise, length, pairwise_correct), ci
            ),
            "by_subtype": breakdown(pairwise, pairwise_subtype, pairwise_correct),
            "by_subtype_ci": breakdown_ci(pairwise, pairwise_subtype, ci, pairwise_correct),
        },
        "bon": {
            **_bon_summary(bon, ci),
            "auc": auc(bon),
            "by_n": {str(n): _bon_summary(by_n[n], ci) for n in sorted(by_n)},
            "by_task": breakdown(bon, task, rank_match),
            "by_task_ci": breakdown_ci(bon, task, ci, rank_match),
            "by_length": breakdown(bon, length, rank_match, bucket_sort_key),
            "by_length_ci": breakdown_ci(bon, length, ci, rank_match, bucket_sort_key),
        },
        "ci": ci.as_dict(),
    }


# --- context ablation ---------------------------------------------------------------------------


def _reliance(
    with_context: list[Prediction], without_context: list[Prediction], ci: IntervalSettings
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for prefix, shown, blind in (
        ("", item_scores(with_context), item_scores(without_context)),
        ("debiased_", debiased_item_scores(with_context), debiased_item_scores(without_context)),
    ):
        if shown is None or blind is None:
            out.update(
                dict.fromkeys(
                    f"{prefix}{name}{suffix}"
                    for name in ("accuracy_with_context", "accuracy_without_context", "reliance")
                    for suffix in ("", "_ci")
                )
            )
            continue
        a, b = mean_or_none(shown.values()), mean_or_none(blind.values())
        keys = [k for k in shown if k in blind]
        out[f"{prefix}accuracy_with_context"] = a
        out[f"{prefix}accuracy_with_context_ci"] = interval(shown.values(), ci)
        out[f"{prefix}accuracy_without_context"] = b
        out[f"{prefix}accuracy_without_context_ci"] = interval(blind.values(), ci)
        out[f"{prefix}reliance"] = None if a is None or b is None else a - b
        out[f"{prefix}reliance_ci"] = paired_interval(
            [shown[k] for k in keys], [blind[k] for k in keys], ci
        )
    out["n_items"] = len(group_by_item(with_context))
    return out


def context_reliance(
    with_context: Iterable[Prediction],
    without_context: Iterable[Prediction],
    ci: IntervalSettings | None = None,
) -> dict[str, Any]:
    """Return how much a reward model's accuracy depends on reading the context.

    reliance = accuracy(items, context shown) - accuracy(same items, context ablated), with
    accuracy the paper's mean item score (pairwise correctness, Best-of-N rank match), over the
    items judged both ways; overall and by task and length. A reliance near 0 on items whose
    labels need the context means the model (or the benchmark) rewards style, not grounding.
    `reliance_ci` is the paired bootstrap over items of (score with - score without), so item
    difficulty cancels. The `debiased_` keys repeat all this for the order-debiased accuracy of
    pairwise items (None when the records carry no scores).
    """
    ci = ci or IntervalSettings()
    ablated = latest_records(without_context)
    keys = {p.key for p in ablated}
    shown = [p for p in latest_records(with_context) if p.key in keys]
    keys &= {p.key for p in shown}
    ablated = [p for p in ablated if p.key in keys]

    def split(field: ItemField, sort_key: Callable[[str], Any] | None = None) -> dict[str, Any]:
        groups_with = group_by_field(shown, field, sort_key)
        groups_without = group_by_field(ablated, field, sort_key)
        return {k: _reliance(v, groups_without.get(k, []), ci) for k, v in groups_with.items()}

    return {
        **_reliance(shown, ablated, ci),
        "by_task": split(lambda p: p.task),
        "by_length": split(lambda p: p.length_bucket, bucket_sort_key),
    }


def context_ablation(
    predictions: Iterable[Prediction],
    ablated_by_method: dict[str, list[Prediction]],
    ci: IntervalSettings | None = None,
) -> dict[str, Any]:
    """Return results.json's `context_ablation` block: one `context_reliance` entry per method.

    `by_method[m]` holds method m's entry (with its "method" and "errors", the records whose
    call failed). The block's top level repeats the first method's entry, so readers of a
    single-method run keep working, except `errors`, which counts every method's failures.
    Reliance against two controls (another item's context, and none) shows whether a control
    is itself biased: a swapped context that favours the worse answer inflates reliance.
    """
    preds = latest_records(predictions)
    by_method = {
        method: {
            "method": method,
            **context_reliance(preds, recs, ci),
            "errors": sum(p.error is not None for p in latest_records(recs)),
        }
        for method, recs in ablated_by_method.items()
    }
    if not by_method:
        raise ValueError("no ablation method given")
    first = next(iter(by_method.values()))
    return {
        **first,
        "errors": sum(block["errors"] for block in by_method.values()),
        "by_method": by_method,
    }

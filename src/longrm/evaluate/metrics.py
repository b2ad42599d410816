"""Long-RewardBench metrics: small pure functions over `Prediction` records.

A record is one judged item-order. An item's score is the mean over its orders and every aggregate
is a mean over items, so judging an item in more orders does not give it more weight.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from statistics import fmean
from typing import Any

from longrm.evaluate.predictions import Prediction

RecordMetric = Callable[[Prediction], float]
ItemField = Callable[[Prediction], str]


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


def _bon_summary(predictions: list[Prediction]) -> dict[str, Any]:
    return {
        "rank_match": item_average(predictions, rank_match),
        "exact_match": item_average(predictions, exact_match),
        "top1": item_average(predictions, top1),
        "n_items": len(group_by_item(predictions)),
    }


def compute_results(
    predictions: Iterable[Prediction], truncated_items: int | None = None
) -> dict[str, Any]:
    """Return every Long-RewardBench metric as a JSON-able dict (fractions in [0, 1] or None).

    `truncated_items` overrides the count of items with a truncated record, for callers that
    know it from prompt building rather than from the records.
    """
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

    pairwise_by_length = breakdown(pairwise, length, pairwise_correct, bucket_sort_key)

    return {
        "overall": item_average(preds),
        "macro": macro_average(preds),
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
        "by_length": breakdown(preds, length, sort_key=bucket_sort_key),
        "robustness": {
            "by_length": {
                k: robustness(v) for k, v in group_by_field(preds, length, bucket_sort_key).items()
            },
            "by_task": {k: robustness(v) for k, v in group_by_field(preds, task).items()},
        },
        "pairwise": {
            "accuracy": item_average(pairwise, pairwise_correct),
            "auc": auc(pairwise),
            "n_items": len(group_by_item(pairwise)),
            "by_task": breakdown(pairwise, task, pairwise_correct),
            "by_subtask": breakdown(pairwise, lambda p: p.subtask, pairwise_correct),
            "by_length": pairwise_by_length,
            "length_mean": mean_or_none(v for v in pairwise_by_length.values() if v is not None),
            "by_subtype": breakdown(pairwise, pairwise_subtype, pairwise_correct),
        },
        "bon": {
            **_bon_summary(bon),
            "auc": auc(bon),
            "by_n": {str(n): _bon_summary(by_n[n]) for n in sorted(by_n)},
            "by_task": breakdown(bon, task, rank_match),
            "by_length": breakdown(bon, length, rank_match, bucket_sort_key),
        },
    }


# --- context ablation ---------------------------------------------------------------------------


def _reliance(with_context: list[Prediction], without_context: list[Prediction]) -> dict[str, Any]:
    a, b = item_average(with_context), item_average(without_context)
    return {
        "accuracy_with_context": a,
        "accuracy_without_context": b,
        "reliance": None if a is None or b is None else a - b,
        "n_items": len(group_by_item(with_context)),
    }


def context_reliance(
    with_context: Iterable[Prediction], without_context: Iterable[Prediction]
) -> dict[str, Any]:
    """Return how much a reward model's accuracy depends on reading the context.

    reliance = accuracy(items, context shown) - accuracy(same items, context ablated), with
    accuracy the paper's mean item score (pairwise correctness, Best-of-N rank match), over the
    items judged both ways; overall and by task and length. A reliance near 0 on items whose
    labels need the context means the model (or the benchmark) rewards style, not grounding.
    """
    ablated = latest_records(without_context)
    keys = {p.key for p in ablated}
    shown = [p for p in latest_records(with_context) if p.key in keys]
    keys &= {p.key for p in shown}
    ablated = [p for p in ablated if p.key in keys]

    def split(field: ItemField, sort_key: Callable[[str], Any] | None = None) -> dict[str, Any]:
        groups_with = group_by_field(shown, field, sort_key)
        groups_without = group_by_field(ablated, field, sort_key)
        return {k: _reliance(v, groups_without.get(k, [])) for k, v in groups_with.items()}

    return {
        **_reliance(shown, ablated),
        "by_task": split(lambda p: p.task),
        "by_length": split(lambda p: p.length_bucket, bucket_sort_key),
    }

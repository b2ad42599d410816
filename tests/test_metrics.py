"""Metric tests against values worked out by hand in the comments."""

from __future__ import annotations

import json
import math

import pytest

from longrm.evaluate.metrics import (
    auc,
    bucket_sort_key,
    compute_results,
    exact_match,
    item_average,
    macro_average,
    mann_whitney_auc,
    pairwise_correct,
    parse_failure_rate,
    position_bias_failures,
    position_consistency,
    rank_match,
    score_pairs,
    top1,
)
from longrm.evaluate.predictions import Prediction

SWAP = [1, 0]  # slot A shows the rejected response, slot B the chosen


def pw(
    key: str,
    order: list[int],
    ranking: list[int] | None,
    order_index: int = 0,
    **kw: object,
) -> Prediction:
    """A pairwise record; `ranking` lists display slots best first."""
    fields: dict[str, object] = {"task": "LongQA", "length_bucket": "4k", "subtype": "same"}
    fields.update(kw)
    return Prediction.model_validate(
        {
            "key": key,
            "tasktype": "PairWise",
            "n": 2,
            "order_index": order_index,
            "order": order,
            "ranking": ranking,
            **fields,
        }
    )


def bon(
    key: str,
    order: list[int],
    ranking: list[int] | None,
    order_index: int = 0,
    **kw: object,
) -> Prediction:
    """A Best-of-N record with n = len(order)."""
    fields: dict[str, object] = {"task": "Summ", "length_bucket": "8k", "subtype": str(len(order))}
    fields.update(kw)
    return Prediction.model_validate(
        {
            "key": key,
            "tasktype": "BestOfN",
            "n": len(order),
            "order_index": order_index,
            "order": order,
            "ranking": ranking,
            **fields,
        }
    )


def three_pairwise_items_both_orders() -> list[Prediction]:
    """a: right in both orders; b: always picks slot A (flips); c: unparsed once, then right."""
    return [
        pw("a", [0, 1], [0, 1], 0),  # predicted order [0, 1] -> 1
        pw("a", SWAP, [1, 0], 1),  # slot 1 shows cand 0 -> [0, 1] -> 1
        pw("b", [0, 1], [0, 1], 0),  # [0, 1] -> 1
        pw("b", SWAP, [0, 1], 1),  # slot 0 shows cand 1 -> [1, 0] -> 0   (winner flipped)
        pw("c", [0, 1], None, 0),  # parse failure -> 0
        pw("c", SWAP, [1, 0], 1),  # [0, 1] -> 1
    ]


def test_pairwise_accuracy_consistency_and_bias_by_hand() -> None:
    preds = three_pairwise_items_both_orders()
    # item scores: a = (1+1)/2 = 1, b = (1+0)/2 = 0.5, c = (0+1)/2 = 0.5 -> mean 2/3
    assert item_average(preds, pairwise_correct) == pytest.approx(2 / 3)
    # 1 of 6 records has no ranking
    assert parse_failure_rate(preds) == pytest.approx(1 / 6)
    # only a is identical in both orders; b flips, c has a parse failure -> 1/3
    assert position_consistency(preds) == pytest.approx(1 / 3)
    # only b names two winners; c's unparsed order is not a flip
    assert position_bias_failures(preds) == 1

    results = compute_results(preds)
    assert results["pairwise"]["accuracy"] == pytest.approx(2 / 3)
    assert results["overall"] == pytest.approx(2 / 3)
    assert results["position_consistency"] == pytest.approx(1 / 3)
    assert results["position_bias_failures"] == 1
    assert results["n_items"] == 3
    assert results["n_records"] == 6
    assert results["pairwise"]["n_items"] == 3
    assert results["bon"]["n_items"] == 0
    assert results["bon"]["rank_match"] is None


def test_failures_stay_in_denominator_and_errors_are_not_parse_failures() -> None:
    # three single-order items: one right, one unparsed, one errored -> 1/3, not 1/1
    preds = [
        pw("x", [0, 1], [0, 1]),
        pw("y", [0, 1], None),
        pw("z", [0, 1], None, error="timeout"),
    ]
    results = compute_results(preds)
    assert results["pairwise"]["accuracy"] == pytest.approx(1 / 3)
    assert results["parse_failure_rate"] == pytest.approx(0.5)  # 1 of the 2 answered records
    assert results["error_rate"] == pytest.approx(1 / 3)  # 1 of 3 records
    assert results["errors"] == 1
    # single-order items say nothing about position consistency
    assert results["position_consistency"] is None


def test_bon4_two_of_four_slots_right() -> None:
    # slots show candidates [2, 0, 3, 1]; ranking slots [1, 3, 2, 0] -> candidates [0, 1, 3, 2]
    # ranks 0 and 1 hold their gold candidate, ranks 2 and 3 are swapped -> 2/4
    pred = bon("k", [2, 0, 3, 1], [1, 3, 2, 0])
    assert pred.predicted_order() == [0, 1, 3, 2]
    assert rank_match(pred) == 0.5
    assert top1(pred) == 1.0
    assert exact_match(pred) == 0.0
    # ranking [1, 3, 0, 2] -> candidates [0, 1, 2, 3]: everything right
    perfect = bon("k", [2, 0, 3, 1], [1, 3, 0, 2])
    assert (rank_match(perfect), exact_match(perfect), top1(perfect)) == (1.0, 1.0, 1.0)
    # reversed -> candidates [3, 2, 1, 0]: no rank right, best not first
    worst = bon("k", [2, 0, 3, 1], [2, 0, 3, 1])
    assert (rank_match(worst), exact_match(worst), top1(worst)) == (0.0, 0.0, 0.0)
    failed = bon("k", [2, 0, 3, 1], None)
    assert (rank_match(failed), exact_match(failed), top1(failed)) == (0.0, 0.0, 0.0)


def test_bon_by_n() -> None:
    preds = [
        bon("n2", [1, 0], [1, 0]),  # candidates [0, 1]: rank 1, exact 1, top1 1
        bon("n3", [0, 1, 2], [0, 2, 1]),  # [0, 2, 1]: rank 1/3, exact 0, top1 1
        bon("n4", [2, 0, 3, 1], [1, 3, 2, 0]),  # [0, 1, 3, 2]: rank 1/2, exact 0, top1 1
    ]
    results = compute_results(preds)
    by_n = results["bon"]["by_n"]
    assert list(by_n) == ["2", "3", "4"]
    assert {k: v for k, v in by_n["2"].items() if not k.endswith("_ci")} == {
        "rank_match": 1.0, "exact_match": 1.0, "top1": 1.0, "n_items": 1,
    }  # fmt: skip
    # one item scoring 1, nothing to resample: Wilson's interval for n of n is [n / (n + z^2), 1]
    assert by_n["2"]["top1_ci"] == pytest.approx([1 / (1 + 1.96**2), 1.0], abs=1e-4)
    assert by_n["3"]["rank_match"] == pytest.approx(1 / 3)
    assert by_n["4"]["rank_match"] == pytest.approx(0.5)
    # (1 + 1/3 + 1/2) / 3 = 11/18
    assert results["bon"]["rank_match"] == pytest.approx(11 / 18)
    assert results["bon"]["exact_match"] == pytest.approx(1 / 3)
    assert results["bon"]["top1"] == 1.0


def test_overall_is_mean_over_items_and_macro_is_mean_over_tasks() -> None:
    preds = [
        pw("p1", [0, 1], [0, 1], task="Safety"),  # 1
        pw("p2", SWAP, [1, 0], task="Safety"),  # 1
        pw("p3", [0, 1], [1, 0], task="Safety"),  # 0
        bon("b1", [2, 0, 3, 1], [1, 3, 2, 0], task="Summ"),  # rank match 0.5
    ]
    # overall: (1 + 1 + 0 + 0.5) / 4 = 0.625
    assert item_average(preds) == pytest.approx(0.625)
    # macro: Safety 2/3, Summ 1/2 -> (2/3 + 1/2) / 2 = 7/12
    assert macro_average(preds) == pytest.approx(7 / 12)
    results = compute_results(preds)
    assert results["overall"] == pytest.approx(0.625)
    assert results["macro"] == pytest.approx(7 / 12)
    assert results["by_task"] == {"Safety": pytest.approx(2 / 3), "Summ": 0.5}


def test_item_score_is_mean_over_its_orders_not_records() -> None:
    # item a judged twice (both right), item b once (wrong): items (1 + 0) / 2 = 0.5,
    # while a record mean would give 2/3
    preds = [pw("a", [0, 1], [0, 1], 0), pw("a", SWAP, [1, 0], 1), pw("b", [0, 1], [1, 0])]
    assert compute_results(preds)["overall"] == pytest.approx(0.5)


def test_rejudged_record_replaces_the_earlier_one() -> None:
    preds = [pw("a", [0, 1], None, 0), pw("a", [0, 1], [0, 1], 0)]
    results = compute_results(preds)
    assert results["n_records"] == 1
    assert results["overall"] == 1.0


def test_auc_by_hand() -> None:
    preds = [
        pw("r1", [0, 1], [0, 1], scores=[2.0, 1.0]),  # y=1, margin  1.0
        pw("r2", [0, 1], [1, 0], scores=[0.0, 0.5]),  # y=1, margin -0.5
        pw("r3", SWAP, [1, 0], scores=[0.0, 1.0]),  # y=0, margin -1.0
        pw("r4", SWAP, [1, 0], scores=[1.0, 1.5]),  # y=0, margin -0.5
    ]
    # pos {1.0, -0.5} vs neg {-1.0, -0.5}:
    # 1.0>-1.0: 1, 1.0>-0.5: 1, -0.5>-1.0: 1, -0.5==-0.5: 0.5 -> 3.5 / 4 = 0.875
    assert auc(preds) == pytest.approx(0.875)
    assert compute_results(preds)["pairwise"]["auc"] == pytest.approx(0.875)
    # only y=1 records -> one class absent
    assert auc(preds[:2]) is None
    # no scores at all
    assert auc([pw("x", [0, 1], [0, 1]), pw("y", SWAP, [0, 1])]) is None


def test_mann_whitney_matches_pair_counting() -> None:
    pos, neg = [0.3, 0.3, 0.9, -1.0], [0.3, 0.1, 0.1]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert mann_whitney_auc(pos, neg) == pytest.approx(wins / (len(pos) * len(neg)))
    assert mann_whitney_auc([1.0], []) is None


def test_bon_auc_uses_every_candidate_pair() -> None:
    # slots show candidates [2, 0, 1] with scores [0.1, 0.9, 0.5] (perfectly ordered)
    # pairs (0,1): 2 vs 0 -> y=0, margin -0.8; (0,2): 2 vs 1 -> y=0, -0.4; (1,2): 0 vs 1 -> y=1, 0.4
    pred = bon("b", [2, 0, 1], [1, 2, 0], scores=[0.1, 0.9, 0.5])
    assert score_pairs(pred) == [
        (pytest.approx(-0.8), 0),
        (pytest.approx(-0.4), 0),
        (pytest.approx(0.4), 1),
    ]
    assert auc([pred]) == 1.0
    # flip the scores -> every margin points the wrong way
    assert auc([bon("b", [2, 0, 1], [0, 2, 1], scores=[0.9, 0.1, 0.5])]) == 0.0


def test_length_buckets_sort_numerically() -> None:
    assert sorted(["128k", "4k", "512", "1k", "16k"], key=bucket_sort_key) == [
        "512",
        "1k",
        "4k",
        "16k",
        "128k",
    ]
    preds = [
        pw("a", [0, 1], [0, 1], length_bucket="128k"),
        pw("b", [0, 1], [1, 0], length_bucket="4k"),
        pw("c", [0, 1], [0, 1], length_bucket="512"),
    ]
    by_length = compute_results(preds)["pairwise"]["by_length"]
    assert list(by_length.items()) == [("512", 1.0), ("4k", 0.0), ("128k", 1.0)]


def test_breakdowns_by_subtype_and_subtask() -> None:
    preds = [
        pw("s", [0, 1], [0, 1], subtype="same", subtask="qa"),
        pw("c", [0, 1], [1, 0], subtype="gpt-4o vs llama", subtask="qa"),
        pw("d", [0, 1], [0, 1], subtype="", subtask="multi"),
    ]
    pairwise = compute_results(preds)["pairwise"]
    # cross-model: c = 0, d = 1 -> 0.5
    assert pairwise["by_subtype"] == {"cross-model": 0.5, "same-model": 1.0}
    assert pairwise["by_subtask"] == {"multi": 1.0, "qa": 0.5}


def test_truncated_items_counted_or_overridden() -> None:
    preds = [
        pw("a", [0, 1], [0, 1], 0, truncated=True),
        pw("a", SWAP, [1, 0], 1, truncated=True),
        pw("b", [0, 1], [0, 1]),
    ]
    assert compute_results(preds)["truncated_items"] == 1
    assert compute_results(preds, truncated_items=7)["truncated_items"] == 7


def test_results_are_json_and_empty_input_gives_none() -> None:
    preds = three_pairwise_items_both_orders() + [bon("b", [1, 0, 2], [1, 0, 2], scores=[1, 2, 0])]
    results = compute_results(preds)
    assert json.loads(json.dumps(results)) == results
    accuracies = {"overall", "macro", "by_task", "by_length"}
    assert set(results) == {
        "n_items", "n_records", "truncated_items", "errors", "error_rate",
        "parse_failure_rate", "position_consistency", "position_bias_failures", "auc",
        "robustness", "pairwise", "bon", "ci",
    } | accuracies | {f"{k}_ci" for k in accuracies}  # fmt: skip
    accuracies = {
        "accuracy", "debiased_accuracy", "by_task", "by_subtask", "by_length", "length_mean",
        "debiased_by_length", "by_subtype",
    }  # fmt: skip
    assert set(results["pairwise"]) == {"auc", "n_items"} | accuracies | {
        f"{k}_ci" for k in accuracies
    }
    accuracies = {"rank_match", "exact_match", "top1", "by_task", "by_length"}
    assert set(results["bon"]) == {"auc", "n_items", "by_n"} | accuracies | {
        f"{k}_ci" for k in accuracies
    }
    assert results["ci"]["level"] == 0.95 and results["ci"]["bootstrap"] == 1000
    empty = compute_results([])
    assert empty["overall"] is None and empty["overall_ci"] is None and empty["macro_ci"] is None
    assert empty["pairwise"]["accuracy"] is None
    assert empty["parse_failure_rate"] is None
    assert empty["n_items"] == 0
    assert not math.isnan(results["overall"])


def test_item_unparsed_in_every_order_is_inconsistent() -> None:
    # two identical "None" verdicts are not agreement; the right item keeps 1 of 2 -> 0.5
    preds = [
        pw("d", [0, 1], None, 0),
        pw("d", SWAP, None, 1),
        pw("e", [0, 1], [0, 1], 0),
        pw("e", SWAP, [1, 0], 1),
    ]
    assert position_consistency(preds) == 0.5
    assert position_bias_failures(preds) == 0


def test_robustness_breakdown_by_length() -> None:
    from longrm.evaluate.metrics import compute_results
    from longrm.evaluate.predictions import Prediction

    def rec(key: str, bucket: str, index: int, order: list[int], ranking: list[int] | None):
        return Prediction(
            key=key, task="t", tasktype="PairWise", length_bucket=bucket, n=2,
            order_index=index, order=order, ranking=ranking,
        )  # fmt: skip

    preds = [
        rec("a", "4k", 0, [0, 1], [0, 1]),  # consistent, correct in both orders
        rec("a", "4k", 1, [1, 0], [1, 0]),
        rec("b", "16k", 0, [0, 1], None),  # one parse failure out of two records at 16k
        rec("b", "16k", 1, [1, 0], [1, 0]),
    ]
    rob = compute_results(preds)["robustness"]["by_length"]
    assert list(rob) == ["4k", "16k"]
    assert rob["4k"]["parse_failure_rate"] == 0.0 and rob["4k"]["position_consistency"] == 1.0
    assert rob["16k"]["parse_failure_rate"] == 0.5 and rob["16k"]["position_consistency"] == 0.0
    assert rob["16k"]["n_records"] == 2 and rob["4k"]["auc"] is None


# --- intervals and the order-debiased accuracy ----------------------------------------------------


def test_intervals_resample_items_not_records() -> None:
    from longrm.evaluate.intervals import IntervalSettings, wilson_interval

    # two items, each right in one order of two: item scores 0.5 and 0.5. Resampling items
    # gives 0.5 every time, so the Wilson fallback applies (1 success in 2); resampling the four
    # records would have given a wide bootstrap interval instead.
    preds = [
        pw("a", [0, 1], [0, 1], 0),
        pw("a", SWAP, [0, 1], 1),
        pw("b", [0, 1], [0, 1], 0),
        pw("b", SWAP, [0, 1], 1),
    ]
    results = compute_results(preds)
    assert results["overall"] == 0.5
    assert results["overall_ci"] == pytest.approx(list(wilson_interval(1.0, 2)))
    assert results["pairwise"]["by_length_ci"] == {"4k": results["overall_ci"]}
    level90 = compute_results(preds, ci=IntervalSettings(level=0.9))
    assert level90["overall_ci"] == pytest.approx(list(wilson_interval(1.0, 2, 0.9)))
    assert level90["ci"]["level"] == 0.9


def test_every_accuracy_map_has_a_matching_interval_map() -> None:
    preds = three_pairwise_items_both_orders() + [
        pw("d", [0, 1], [1, 0], length_bucket="512", task="Cite"),
        bon("n3", [0, 1, 2], [0, 2, 1]),
        bon("n4", [2, 0, 3, 1], [1, 3, 2, 0]),
    ]
    results = compute_results(preds)
    for block in (results, results["pairwise"], results["bon"], results["bon"]["by_n"]["3"]):
        for key, value in block.items():
            if key.endswith("_ci") and value is not None:
                point = block[key[: -len("_ci")]]
                cis = value if isinstance(value, dict) else {"": value}
                points = point if isinstance(point, dict) else {"": point}
                assert list(cis) == list(points)
                for name, (lo, hi) in cis.items():
                    assert 0.0 <= lo <= points[name] <= hi <= 1.0, (key, name)
    # macro: tasks LongQA (a 1, b 0.5, c 0.5), Cite (d 0), Summ (1/3, 1/2)
    assert results["macro_ci"][0] <= results["macro"] <= results["macro_ci"][1]


def always_a(
    key: str, gold_in_a_prob: float, gold_in_b_prob: float, **kw: object
) -> list[Prediction]:
    """A judge that always says "A", its verdict probability P(A) still carrying a signal."""
    return [
        pw(key, [0, 1], [0, 1], 0, scores=[gold_in_a_prob, 1 - gold_in_a_prob], **kw),
        pw(key, SWAP, [0, 1], 1, scores=[gold_in_b_prob, 1 - gold_in_b_prob], **kw),
    ]


def test_order_debiased_accuracy_sees_past_a_constant_position_bias() -> None:
    from longrm.evaluate.metrics import debiased_item_scores

    # P(A) = 0.8 + signal when the gold is in A, 0.8 - signal when it is in B: argmax is always
    # A. The gold's mean probability over both orders: (0.8 + s + 1 - (0.8 - s)) / 2 = 0.5 + s.
    preds = (
        always_a("right1", 0.85, 0.75)  # s = +0.05 -> gold 0.55 > 0.45: right
        + always_a("right2", 0.90, 0.70, length_bucket="512")  # s = +0.1: right
        + always_a("wrong", 0.78, 0.82)  # s = -0.02: wrong
        + always_a("tie", 0.8, 0.8, length_bucket="512")  # no signal: tie, half
    )
    results = compute_results(preds)
    pairwise = results["pairwise"]
    assert pairwise["accuracy"] == 0.5  # every item right in exactly one order
    assert pairwise["by_length"] == {"512": 0.5, "4k": 0.5}
    assert debiased_item_scores(preds) == {"right1": 1.0, "right2": 1.0, "wrong": 0.0, "tie": 0.5}
    assert pairwise["debiased_accuracy"] == pytest.approx((1 + 1 + 0 + 0.5) / 4)
    assert pairwise["debiased_by_length"] == {"512": 0.75, "4k": 0.5}
    lo, hi = pairwise["debiased_accuracy_ci"]
    assert 0.0 <= lo < 0.625 < hi <= 1.0
    assert list(pairwise["debiased_by_length_ci"]) == ["512", "4k"]


def test_order_debiased_accuracy_without_scores_or_with_errors() -> None:
    from longrm.evaluate.metrics import debiased_pair_score

    # a generating judge carries no scores: no debiased accuracy, not 0%
    pairwise = compute_results(three_pairwise_items_both_orders())["pairwise"]
    assert pairwise["debiased_accuracy"] is None and pairwise["debiased_by_length"] is None
    # an order that errored (no scores) makes the item score 0, like a parse failure
    good, bad = always_a("x", 0.9, 0.7)
    assert debiased_pair_score([good, bad]) == 1.0
    failed = bad.model_copy(update={"scores": None, "ranking": None, "error": "OOM"})
    assert debiased_pair_score([good, failed]) == 0.0
    # one order only: that order's comparison
    assert debiased_pair_score([good]) == 1.0


def test_context_ablation_holds_each_method_and_mirrors_the_first() -> None:
    from longrm.evaluate.metrics import context_ablation

    shown = [pw(k, [0, 1], [0, 1]) for k in "abcd"]  # all right
    swapped = [pw(k, [0, 1], [1, 0]) for k in "abc"] + [pw("d", [0, 1], [0, 1])]  # 1 of 4
    emptied = [pw(k, [0, 1], [0, 1]) for k in "ab"] + [
        pw("c", [0, 1], [1, 0]),
        pw("d", [0, 1], None, error="timeout"),
    ]  # 2 of 4, one error
    block = context_ablation(shown, {"swap": swapped, "empty": emptied})
    assert list(block["by_method"]) == ["swap", "empty"]
    swap, empty = block["by_method"]["swap"], block["by_method"]["empty"]
    assert swap["reliance"] == 0.75 and empty["reliance"] == 0.5
    assert block["method"] == "swap" and block["reliance"] == 0.75  # the first method's
    assert block["errors"] == 1 and swap["errors"] == 0 and empty["errors"] == 1
    # reliance's interval: paired bootstrap of the per-item differences [1, 1, 1, 0]
    lo, hi = swap["reliance_ci"]
    assert 0.0 <= lo < 0.75 < hi <= 1.0
    assert swap["accuracy_with_context_ci"] is not None
    assert swap["by_length"]["4k"]["reliance_ci"] == swap["reliance_ci"]
    assert swap["debiased_reliance"] is None  # no verdict scores

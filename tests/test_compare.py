"""Paired comparison of two runs, and reports that redraw intervals from predictions files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from statsmodels.stats.contingency_tables import mcnemar
from typer.testing import CliRunner

from longrm.cli import app
from longrm.evaluate.compare import compare_runs, item_right, paired_difference
from longrm.evaluate.intervals import IntervalSettings, paired_bootstrap_interval
from longrm.evaluate.predictions import Prediction, append_predictions
from longrm.evaluate.report import load_results, write_report
from longrm.evaluate.runner import PREDICTIONS_ABLATED, run_results

SWAP = [1, 0]


def pair(key: str, bucket: str, right: tuple[bool, bool], scores: bool = False) -> list[Prediction]:
    """A pair judged in both orders, right or wrong in each; with verdict scores if asked."""
    out = []
    for index, (order, ok) in enumerate(zip(([0, 1], SWAP), right, strict=True)):
        gold_slot = order.index(0)
        winner = gold_slot if ok else 1 - gold_slot
        fields: dict[str, object] = {
            "key": key, "task": "LongQA", "tasktype": "PairWise", "length_bucket": bucket,
            "n": 2, "order_index": index, "order": order, "ranking": [winner, 1 - winner],
        }  # fmt: skip
        if scores:
            fields["scores"] = [0.9, 0.1] if winner == 0 else [0.1, 0.9]
        out.append(Prediction.model_validate(fields))
    return out


def run_a() -> list[Prediction]:
    """512: 3 right, 1 split; 4k: 2 right, 2 wrong; plus an item run B never judged."""
    both, split, none = (True, True), (True, False), (False, False)
    items = [("a1", "512", both), ("a2", "512", both), ("a3", "512", both)]
    items += [("a4", "512", split), ("b1", "4k", both), ("b2", "4k", both)]
    items += [("b3", "4k", none), ("b4", "4k", none), ("extra", "4k", both)]
    return [p for key, bucket, right in items for p in pair(key, bucket, right)]


def run_b() -> list[Prediction]:
    """512: 1 right, 3 wrong; 4k: 2 right, 2 wrong (on other items than A's)."""
    both, none = (True, True), (False, False)
    items = [("a1", "512", both), ("a2", "512", none), ("a3", "512", none)]
    items += [("a4", "512", none), ("b1", "4k", none), ("b2", "4k", none)]
    items += [("b3", "4k", both), ("b4", "4k", both)]
    return [p for key, bucket, right in items for p in pair(key, bucket, right)]


def test_item_right_needs_more_than_half() -> None:
    assert item_right(1.0) and not item_right(0.5) and not item_right(0.0)


def test_paired_difference_by_hand() -> None:
    a = {"x": 1.0, "y": 1.0, "z": 0.5, "w": 0.0, "only_in_a": 1.0}
    b = {"x": 0.0, "y": 1.0, "z": 0.0, "w": 1.0}
    ci = IntervalSettings(n_resamples=400, seed=1)
    got = paired_difference(a, b, ci)
    # shared items x y z w: A 2.5 / 4, B 2 / 4; right in A only: x (z at 0.5 is not right);
    # in B only: w
    assert got["n_items"] == 4
    assert got["accuracy_a"] == 0.625 and got["accuracy_b"] == 0.5
    assert got["difference"] == pytest.approx(0.125)
    assert (got["only_a"], got["only_b"]) == (1, 1)
    assert got["mcnemar_p"] == 1.0
    expected = paired_bootstrap_interval([1.0, 1.0, 0.5, 0.0], [0.0, 1.0, 0.0, 1.0], 400, seed=1)
    assert got["difference_ci"] == pytest.approx(list(expected))


def test_compare_runs_overall_and_by_length() -> None:
    cmp = compare_runs(run_a(), run_b(), IntervalSettings(n_resamples=500))
    # shared: a1-a4, b1-b4. A: 1 1 1 .5 | 1 1 0 0 = 5.5 / 8; B: 1 0 0 0 | 0 0 1 1 = 3 / 8
    assert cmp["n_items"] == 8
    assert cmp["difference"] == pytest.approx(2.5 / 8)
    # right in A only: a2 a3 b1 b2 (a4 is split, not right); in B only: b3 b4
    assert (cmp["only_a"], cmp["only_b"]) == (4, 2)
    table = [[0, 4], [2, 0]]
    assert cmp["mcnemar_p"] == pytest.approx(mcnemar(table, exact=True).pvalue)
    lo, hi = cmp["difference_ci"]
    assert lo < 2.5 / 8 < hi
    assert list(cmp["by_length"]) == ["512", "4k"]
    short, long = cmp["by_length"]["512"], cmp["by_length"]["4k"]
    assert short["difference"] == pytest.approx((3.5 - 1) / 4) and short["only_a"] == 2
    assert long["difference"] == 0.0 and (long["only_a"], long["only_b"]) == (2, 2)
    assert cmp["debiased"] is None  # no verdict scores


def test_compare_runs_debiased_when_both_have_scores() -> None:
    a = pair("x", "1k", (True, False), scores=True) + pair("y", "1k", (True, True), scores=True)
    b = pair("x", "1k", (False, False), scores=True) + pair("y", "1k", (True, True), scores=True)
    debiased = compare_runs(a, b)["debiased"]
    # A's x: gold 0.9 then 0.1 -> mean 0.5 against 0.5: a tie, half; B's x: 0.1 and 0.1: wrong
    assert debiased["accuracy_a"] == 0.75 and debiased["accuracy_b"] == 0.5
    assert list(debiased["by_length"]) == ["1k"]


def make_run(root: Path, name: str, preds: list[Prediction], ablated: bool = False) -> Path:
    """A run folder as longrm eval leaves it: predictions, run.json and results.json."""
    folder = root / name
    folder.mkdir()
    append_predictions(folder / "predictions.jsonl", preds)
    by_method = {}
    if ablated:
        blind = [p.model_copy(update={"ranking": [0, 1]}) for p in preds]
        append_predictions(folder / PREDICTIONS_ABLATED, blind)
        by_method["swap"] = blind
    settings = {"name": name, "bench_hash": "same", "ablate_context": "swap" if ablated else None}
    (folder / "run.json").write_text(json.dumps(settings))
    ci = IntervalSettings(n_resamples=50)
    (folder / "results.json").write_text(json.dumps(run_results(preds, by_method, ci)))
    return folder


def test_report_redraws_intervals_from_the_predictions(tmp_path: Path) -> None:
    run = make_run(tmp_path, "a", run_a(), ablated=True)
    stored = load_results(run)  # no ci asked: as written, 50 resamples
    assert stored["ci"]["bootstrap"] == 50
    ci = IntervalSettings(level=0.9, n_resamples=300, seed=2)
    fresh = load_results(run, ci)
    assert fresh["ci"] == ci.as_dict()
    assert fresh["overall"] == stored["overall"]
    assert fresh["overall_ci"] == run_results(run_a(), {}, ci)["overall_ci"]
    assert fresh["context_ablation"]["by_method"]["swap"]["reliance_ci"] is not None
    # a predictions file that holds more than results.json counted cannot be redrawn from
    append_predictions(run / "predictions.jsonl", pair("new", "4k", (True, True)))
    with pytest.raises(ValueError, match="rerun longrm eval"):
        load_results(run, ci)
    assert load_results(run, IntervalSettings(n_resamples=50))["n_items"] == 9  # as written


def test_report_of_two_runs_compares_them(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "A", run_a()), make_run(tmp_path, "B", run_b())
    md = write_report([a, b], tmp_path / "report")[0].read_text()
    assert "### A (A) against B (B)" in md
    # overall row: 8 shared items, 68.8 against 37.5, 4 right in A only and 2 in B only
    line = next(x for x in md.splitlines() if x.startswith("| all | 8 |"))
    assert "| 68.8 | 37.5 | +31.2 [" in line and "| 4 / 2 | 0.688 |" in line
    assert "| 512 | 4 |" in md and "| 4k | 4 |" in md
    # one run: no comparison; --no-compare: none either
    assert "Paired comparison" not in write_report([a], tmp_path / "one")[0].read_text()
    no = write_report([a, b], tmp_path / "no", compare=False)[0].read_text()
    assert "Paired comparison" not in no


def test_report_command_flags(tmp_path: Path) -> None:
    a, b = make_run(tmp_path, "A", run_a()), make_run(tmp_path, "B", run_b())
    c = make_run(tmp_path, "C", run_b())
    args = ["report", str(a), str(b), "--out", str(tmp_path / "r"), "--bootstrap", "200"]
    result = CliRunner().invoke(app, [*args, "--ci-level", "0.9", "--ci-seed", "1"])
    assert result.exit_code == 0, result.output
    assert "### A (A) against B (B)" in result.output and "90%" in result.output
    three = CliRunner().invoke(app, ["report", str(a), str(b), str(c), "--compare", "--out",
                                     str(tmp_path / "r3")])  # fmt: skip
    assert three.exit_code == 0, three.output
    assert "### A (A) against B (B)" in three.output and "### A (A) against C (B)" in three.output
    bad = CliRunner().invoke(app, ["report", str(a), "--ci-level", "95"])
    assert bad.exit_code != 0 and "--ci-level" in bad.output

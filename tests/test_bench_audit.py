"""`longrm bench audit`: planted leaks are named, a clean built suite passes, any source runs."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import pytest
from conftest import OFFICIAL, RELEASE
from statsmodels.stats.proportion import proportion_confint
from typer.testing import CliRunner

from longrm.bench.audit import Accuracy, run_audit
from longrm.bench.bow import fit_pairwise_logistic
from longrm.bench.construct import build_suite
from longrm.bench.controls import (
    HEURISTICS,
    CrossFitControl,
    ScorerControl,
    fold_of_groups,
    heuristic_controls,
    learned_controls,
)
from longrm.bench.pairs import item_pairs
from longrm.bench.release_items import load_audit_items
from longrm.cli import app
from longrm.items import BEST_OF_N, PAIRWISE, Item, write_items

LEARNED = {c.name for c in learned_controls()}
PROBE = "trained blind probe"
# Eleven controls (five mirrored pairs) look at a clean suite at once: at a 95% level one of them
# excludes 50% now and then by chance; at 99% that is rare enough for a fixed-seed guard.
STRICT_LEVEL = 0.99


@pytest.fixture(scope="module")
def suite(tokenizer: Any) -> list[Item]:
    return build_suite(
        tokenizer, lengths="512,1k", items_per_cell=8, formats=("pairwise",), seed=303
    )


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def _pairwise(i: int, chosen: str, rejected: str, **fields: Any) -> Item:
    return Item(
        id=i,
        task=fields.get("task", "t"),
        subtask="",
        tasktype=PAIRWISE,
        subtype="",
        length_bucket="",
        length=0,
        prompt=[{"role": "user", "content": "<context>\nx\n</context>\nQ?"}],
        question=fields.get("question", "Q?"),
        candidates=[chosen, rejected],
    )


# ---------------------------------------------------------------------------------------------
# Verdicts


def test_a_clean_built_suite_passes(suite: list[Item]) -> None:
    result = run_audit(suite, level=STRICT_LEVEL)
    assert result.leaks() == [], result.verdict()
    assert result.verdict() == (
        "verdict: clean - no context-blind control's 99% interval excludes 50% (n=64)"
    )
    assert {c.name for c in result.controls} == set(HEURISTICS) | LEARNED
    assert all(result.accuracy(c.name).n == 64 for c in result.controls)


def test_a_planted_length_leak_is_named(suite: list[Item]) -> None:
    # The better candidate says its sentence twice: longer, with no word of its own.
    leaky = [
        dataclasses.replace(i, candidates=[f"{i.candidates[0]} {i.candidates[0]}", i.candidates[1]])
        for i in suite
    ]
    result = run_audit(leaky, level=STRICT_LEVEL)
    named = {name for name, _ in result.leaks()}
    assert {"longer wins", "shorter wins", "more words wins", "fewer words wins"} <= named
    assert result.accuracy("longer wins").value == 1.0
    assert result.verdict().startswith("verdict: LEAK - ")
    assert "longer wins 100.0% [" in result.verdict()


def test_a_planted_word_leak_is_found_by_the_learners_only(suite: list[Item]) -> None:
    # Words of the same length and count: the heuristics see no change, the learners see all.
    leaky = [
        dataclasses.replace(
            i, candidates=[i.candidates[0] + " Surely.", i.candidates[1] + " Indeed."]
        )
        for i in suite
    ]
    clean = run_audit(suite, heuristic_controls(), level=STRICT_LEVEL)
    result = run_audit(leaky, level=STRICT_LEVEL)
    for name in HEURISTICS:
        assert result.control(name).outcomes == clean.control(name).outcomes, name
    assert {name for name, _ in result.leaks()} == LEARNED
    assert all(result.accuracy(name).value > 0.95 for name in LEARNED)


def test_a_leak_in_one_family_shows_in_the_breakdown(suite: list[Item]) -> None:
    leaky = [
        dataclasses.replace(i, candidates=[f"{i.candidates[0]} {i.candidates[0]}", i.candidates[1]])
        if i.task == "counting"
        else i
        for i in suite
    ]
    by_task = run_audit(leaky, heuristic_controls(), level=STRICT_LEVEL).breakdown(
        "longer wins", "task"
    )
    assert list(by_task) == ["citation", "counting", "multi_hop", "single_fact"]
    assert by_task["counting"].value == 1.0 and by_task["counting"].excludes_chance
    assert all(not by_task[t].excludes_chance for t in by_task if t != "counting")


# ---------------------------------------------------------------------------------------------
# Outcomes, intervals, pairs


def test_ties_count_half_and_the_interval_is_wilson() -> None:
    items = [_pairwise(0, "aaa", "bb"), _pairwise(1, "bb", "aaa"), _pairwise(2, "cc", "dd")]
    result = run_audit(items, [ScorerControl("longer wins", HEURISTICS["longer wins"])])
    assert result.control("longer wins").outcomes == {"t:0": 1.0, "t:1": 0.0, "t:2": 0.5}
    acc = result.accuracy("longer wins")
    assert (acc.n, acc.wins, acc.value) == (3, 1.5, 0.5)
    assert (acc.lo, acc.hi) == pytest.approx(proportion_confint(1.5, 3, 0.05, method="wilson"))


def test_best_of_n_items_become_their_ordered_pairs() -> None:
    item = Item(
        id=7,
        task="t",
        subtask="good>fair>poor",
        tasktype=BEST_OF_N,
        subtype="3",
        length_bucket="4k",
        length=0,
        prompt=[{"role": "user", "content": "Q?"}],
        question="Q?",
        candidates=["a", "b", "c"],
        candidate_scores=[2.0, 1.0, 1.0],  # the last two tie: no pair
    )
    pairs = item_pairs([item]).pairs
    assert [(p.better, p.worse) for p in pairs] == [(0, 1), (0, 2)]
    assert [p.key for p in pairs] == ["t:7#1>2", "t:7#1>3"]
    assert [p.field("subtask") for p in pairs] == ["good>fair", "good>poor"]
    assert {p.group for p in pairs} == {"t:7"}
    assert item_pairs([item], "skip").skipped_best_of_n == 1


def test_an_item_scores_the_mean_of_its_pairs() -> None:
    item = Item(
        id=1,
        task="t",
        subtask="",
        tasktype=BEST_OF_N,
        subtype="3",
        length_bucket="",
        length=0,
        prompt=[],
        question="",
        candidates=["cc", "ccc", "c"],  # longer wins: 1>2 wrong, 1>3 right, 2>3 right
    )
    result = run_audit([item], [ScorerControl("longer wins", HEURISTICS["longer wins"])])
    assert result.item_scores("longer wins") == {"t:1": pytest.approx(2 / 3)}
    assert result.accuracy("longer wins").n == 1


def test_folds_keep_an_item_whole_and_follow_the_seed() -> None:
    groups = [f"item{i // 3}" for i in range(60)]  # 20 items, 3 pairs each
    folds = fold_of_groups(groups, 5, seed=1)
    for g in set(groups):
        assert len({folds[i] for i, h in enumerate(groups) if h == g}) == 1
    assert sorted(list(folds).count(f) for f in range(5)) == [12] * 5
    assert (fold_of_groups(groups, 5, seed=1) == folds).all()
    assert any((fold_of_groups(groups, 5, seed=s) != folds).any() for s in range(2, 5))


def test_cross_fitting_never_learns_an_item_from_itself() -> None:
    # Every candidate's words are its own: nothing carries over between items, so a learner that
    # never trained on the test item's pairs scores every pair a tie. Had a fold split an item,
    # its best candidate (in two of its three pairs) would be learned as "better".
    rng = random.Random(0)
    items = [
        Item(
            id=i,
            task="t",
            subtask="",
            tasktype=BEST_OF_N,
            subtype="3",
            length_bucket="",
            length=0,
            prompt=[],
            question="",
            candidates=[" ".join(f"w{rng.randrange(10**9)}" for _ in range(3)) for _ in range(3)],
        )
        for i in range(12)
    ]
    control = CrossFitControl("logistic", fit_pairwise_logistic, folds=4)
    assert set(control.outcomes(item_pairs(items).pairs).values()) == {0.5}


def test_accuracy_text_and_chance() -> None:
    acc = Accuracy.of([1.0] * 71 + [0.0] * 29, 0.95)
    assert acc.text().startswith("71.0% [") and acc.excludes_chance
    assert not Accuracy.of([1.0, 0.0], 0.95).excludes_chance


# ---------------------------------------------------------------------------------------------
# Sources, through the command line


def test_cli_on_official_rows(tmp_path: Path) -> None:
    out = tmp_path / "audit.json"
    text = _run("bench", "audit", str(OFFICIAL), "--by", "task,format", "--json", str(out))
    assert "6 pairs from 4 items" in text and "verdict: clean" in text and "by format" in text
    data = json.loads(out.read_text())
    assert (data["n_pairs"], data["n_items"]) == (6, 4)
    longer = next(c for c in data["controls"] if c["name"] == "longer wins")
    # Cite 0: 56 > 42 chars; Cite 1: a tie; LongQA 0: 64 > 58; LongQA 1: 1>2, 1>3 right, 2>3 wrong
    assert longer["accuracy"] == pytest.approx((1 + 0.5 + 1 + 2 / 3) / 4)
    assert longer["by"]["task"]["Cite"]["accuracy"] == pytest.approx(0.75)
    assert longer["outcomes"]["LongQA:1#2>3"] == 0.0
    assert data["verdict"].startswith("verdict: clean")
    skipped = _run("bench", "audit", str(OFFICIAL), "--best-of-n", "skip")
    assert "2 pairs from 2 items, 2 Best-of-N items skipped" in skipped


def test_cli_on_trl_rows_names_a_length_leak_and_strict_fails(tmp_path: Path) -> None:
    rows = [
        {
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"A full answer to question {i}, kept."}],
            "rejected": [{"role": "assistant", "content": f"No {i}."}],
        }
        for i in range(12)
    ]
    path = tmp_path / "trl.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    text = _run("bench", "audit", str(path))
    assert "12 pairs from 12 items" in text and "verdict: LEAK - " in text
    assert "longer wins 100.0% [" in text
    _run("bench", "audit", str(path), "--strict", code=1)


def test_cli_rejects_bad_flags() -> None:
    assert "--by: unknown colour" in _run("bench", "audit", str(OFFICIAL), "--by", "colour", code=2)
    assert "--kind" in _run("bench", "audit", str(OFFICIAL), "--kind", "judge", code=2)
    assert "--folds" in _run("bench", "audit", str(OFFICIAL), "--folds", "1", code=2)


def test_cli_with_a_model_adds_the_reference_and_both_ablations(
    suite: list[Item], tiny_causal: str, tmp_path: Path
) -> None:
    bench, out = tmp_path / "bench", tmp_path / "audit.json"
    write_items([i for i in suite if i.length_bucket == "512"][:6], bench)
    text = _run("bench", "audit", str(bench), "--model", tiny_causal, "--json", str(out))
    assert text.count("context bought over") == 2
    data = json.loads(out.read_text())
    scored = [c for c in data["controls"] if c["name"].startswith(f"likelihood of {tiny_causal}")]
    assert [(c["name"].split(tiny_causal)[1], c["blind"], c["n"]) for c in scored] == [
        (" with the context", False, 6),
        (", context emptied", True, 6),
        (", context swapped", True, 6),
    ]
    assert [r["minus"] for r in data["reliance"]] == [c["name"] for c in scored[1:]]
    with_context = scored[0]["accuracy"]
    assert data["reliance"][0]["difference"] == pytest.approx(with_context - scored[1]["accuracy"])


def test_cli_trained_probe_cross_fitted_and_from_another_benchmark(
    suite: list[Item], tokenizer: Any, tiny_causal: str, tmp_path: Path
) -> None:
    bench, other, out = tmp_path / "bench", tmp_path / "other", str(tmp_path / "audit.json")
    write_items([i for i in suite if i.length_bucket == "512"][:8], bench)
    probe = ["--trained-probe", "--probe-model", tiny_causal, "--probe-epochs", "1"]
    _run("bench", "audit", str(bench), *probe, "--probe-dir", str(tmp_path / "cf"), "--json", out)
    crossfit = next(c for c in json.loads(Path(out).read_text())["controls"] if c["name"] == PROBE)
    assert crossfit["n"] == 8 and crossfit["notes"][-1] == "cross-fitted over 2 folds of items"
    assert sorted(p.name for p in (tmp_path / "cf").iterdir()) == ["probe-fold0", "probe-fold1"]

    other_items = build_suite(
        tokenizer, lengths="512", items_per_cell=2, formats=("pairwise",), seed=909
    )
    write_items(other_items, other)
    args = [*probe, "--probe-train", str(other), "--probe-dir", str(tmp_path / "pt")]
    _run("bench", "audit", str(bench), *args, "--json", out)
    data = json.loads(Path(out).read_text())
    probe_result = next(c for c in data["controls"] if c["name"] == PROBE)
    assert probe_result["blind"] and probe_result["n"] == 8
    assert "trained on 8 pairs of another benchmark" in probe_result["notes"][0]
    again = _run("bench", "audit", str(bench), *args)  # the trained probe is reused
    assert "reusing the blind probe" in again
    # A training benchmark that holds the audited pairs is refused, not silently used.
    _run("bench", "audit", str(bench), *probe, "--probe-train", str(bench), "--json", out)
    refused = next(c for c in json.loads(Path(out).read_text())["controls"] if c["name"] == PROBE)
    assert "holds 8 of the audited pairs" in refused["unavailable"]


@pytest.mark.skipif(not RELEASE.exists(), reason="the release sample rows are not on this machine")
def test_release_preference_rows_become_consensus_pairs() -> None:
    loaded = load_audit_items(RELEASE)
    assert len(loaded.items) == 20 and getattr(loaded, "pointwise", 0) == 4
    item = loaded.items[0]
    assert item.candidate_scores == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert [p.field("subtask").split(">")[0] for p in item_pairs([item]).pairs] == ["consensus"] * 4
    text = _run("bench", "audit", str(RELEASE), "--by", "subtask")
    assert "80 pairs from 20 items" in text and "passed over 4 Stage I rows" in text


# ---------------------------------------------------------------------------------------------
# A model, with and without the context


@pytest.mark.integration
def test_default_model_likelihood_with_and_without_the_context(suite: list[Item]) -> None:
    from longrm.bench.controls import model_controls
    from longrm.rm.load import RewardModelOptions, load_reward_model

    items = [i for i in suite if i.length_bucket == "512"][:4]
    rm = load_reward_model("default", RewardModelOptions(kind="likelihood"))
    calls: list[int] = []
    try:
        controls = model_controls(rm, "likelihood", progress=calls.append)
        result = run_audit(items, controls)
    finally:
        rm.close()
    assert len(calls) == 3 * len(items)
    assert [(c.name, c.blind) for c in result.controls] == [
        ("likelihood with the context", False),
        ("likelihood, context emptied", True),
        ("likelihood, context swapped", True),
    ]
    for c in result.controls:
        assert set(c.outcomes) == {i.key for i in items} and c.unavailable is None
        assert set(c.outcomes.values()) <= {0.0, 0.5, 1.0}
    # A reference control is never a leak, whatever its accuracy.
    assert "with the context" not in result.verdict()

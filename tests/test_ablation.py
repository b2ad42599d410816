"""Context ablation: the items with their context taken away, and the reliance it measures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from longrm.evaluate.ablation import AblationError, ablate_context, context_text
from longrm.evaluate.runner import EvalSettings, RunMismatchError, evaluate
from longrm.items import PAIRWISE, Item, Messages
from longrm.rm.base import RewardModel, Verdict


def _item(i: int, bucket: str = "1k", planted: str | None = None) -> Item:
    fact = planted or f"The code of vault {i} is K{i:03d}."
    filler = " ".join(f"word{i}x{j}" for j in range(40))
    content = (
        f"<context>\n{filler} {fact} {filler}\n</context>\n\n"
        f"Question: What is the code of vault {i}?\nAnswer from the context."
    )
    return Item(
        id=i,
        task="single_fact" if i % 2 else "counting",
        subtask="",
        tasktype=PAIRWISE,
        subtype="same",
        length_bucket=bucket,
        length=100,
        prompt=[{"role": "user", "content": content}],
        question=f"What is the code of vault {i}?",
        candidates=[f"K{i:03d}", f"K{i + 500:03d}"],
        extra={"invented": [f"K{i:03d}", f"K{i + 500:03d}"]},
    )


def test_empty_removes_only_the_context() -> None:
    item = _item(1)
    (ablated,) = ablate_context([item], "empty")
    assert ablated.key == item.key and ablated.candidates == item.candidates
    assert context_text(ablated) == ""
    assert ablated.prompt[0]["content"].endswith("Answer from the context.")
    assert "<context>" in ablated.prompt[0]["content"]


def test_swap_takes_other_contexts_of_the_same_bucket() -> None:
    items = [_item(i) for i in range(4)] + [_item(i, bucket="2k") for i in range(4, 7)]
    ablated = ablate_context(items, "swap")
    assert [a.key for a in ablated] == [i.key for i in items]
    for before, after in zip(items, ablated, strict=True):
        text = context_text(after)
        assert text != context_text(before)
        assert not any(term in text for term in before.extra["invented"])
        assert abs(len(text) - len(context_text(before))) <= 20  # the same size, near enough
        donors = after.extra["ablation_donors"]
        assert donors and before.key not in donors
        bucket = {i.key: i.length_bucket for i in items}
        assert {bucket[d] for d in donors} == {before.length_bucket}
    assert ablate_context(items, "swap") == ablated  # reproducible


def test_swap_passes_over_donors_holding_planted_strings() -> None:
    a = _item(1)
    b = _item(2, planted="The code of vault 1 is K001.")  # holds item 1's answer
    c = _item(3)
    ablated = {x.key: x for x in ablate_context([a, b, c], "swap")}
    assert "K001" not in context_text(ablated[a.key])
    assert b.key not in ablated[a.key].extra["ablation_donors"]


def test_nothing_to_swap_is_an_error() -> None:
    with pytest.raises(AblationError, match="no other item"):
        ablate_context([_item(1)], "swap")
    with pytest.raises(AblationError, match="unknown ablation"):
        ablate_context([_item(1)], "shuffle")


class ReadsTheContext(RewardModel):
    """Picks the response the prompt quotes; with nothing quoted, display slot 0."""

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        text = prompt[0]["content"]
        found = [i for i, r in enumerate(responses) if r in text]
        first = found[0] if found else 0
        return Verdict(ranking=[first] + [i for i in range(len(responses)) if i != first])

    def score(self, prompt: Messages, response: str) -> float:
        return 0.0


def test_reliance_is_accuracy_with_minus_without(tmp_path: Path) -> None:
    items = [_item(i) for i in range(6)]
    settings = EvalSettings(model="stub", kind="judge", ablate_context="swap")
    outcome = evaluate(
        ReadsTheContext(), items, tmp_path, settings, ablated_items=ablate_context(items)
    )
    block = outcome.results["context_ablation"]
    # with the context it always finds the answer; without, slot 0 wins one order of two
    assert block["accuracy_with_context"] == 1.0
    assert block["accuracy_without_context"] == 0.5
    assert block["reliance"] == 0.5 and block["n_items"] == 6 and block["method"] == "swap"
    assert block["by_task"]["counting"]["reliance"] == 0.5
    assert block["by_length"]["1k"]["accuracy_without_context"] == 0.5
    assert len((tmp_path / "predictions_ablated.jsonl").read_text().splitlines()) == 12
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["context_ablation"]["reliance"] == 0.5
    # the plain results are those of the items as they are
    assert outcome.results["overall"] == 1.0 and outcome.results["n_records"] == 12


def test_ablation_resumes_and_is_part_of_the_run_identity(tmp_path: Path) -> None:
    items = [_item(i) for i in range(4)]
    settings = EvalSettings(model="stub", kind="judge", ablate_context="empty")
    ablated = ablate_context(items, "empty")
    evaluate(ReadsTheContext(), items, tmp_path, settings, ablated_items=ablated)
    again = evaluate(ReadsTheContext(), items, tmp_path, settings, ablated_items=ablated)
    assert again.judged == 0 and again.resumed == 16
    with pytest.raises(RunMismatchError, match="ablate_context"):
        evaluate(ReadsTheContext(), items, tmp_path, EvalSettings(model="stub", kind="judge"))


def test_both_controls_each_get_an_entry_and_a_file(tmp_path: Path) -> None:
    items = [_item(i) for i in range(6)]
    settings = EvalSettings(model="stub", kind="judge", ablate_context="swap,empty")
    ablated = {m: ablate_context(items, m) for m in ("swap", "empty")}
    outcome = evaluate(ReadsTheContext(), items, tmp_path, settings, ablated_items=ablated)
    block = outcome.results["context_ablation"]
    assert list(block["by_method"]) == ["swap", "empty"]
    for method in ("swap", "empty"):
        entry = block["by_method"][method]
        assert entry["method"] == method and entry["reliance"] == 0.5 and entry["errors"] == 0
        # every item scores 1 with the context and 0.5 without: the differences are all 0.5
        assert entry["reliance_ci"] == [0.5, 0.5]
        assert entry["accuracy_with_context_ci"][1] == 1.0
    # the top level is the first method's, as a single-method run writes it
    assert block["method"] == "swap" and block["reliance"] == 0.5
    assert len((tmp_path / "predictions_ablated.jsonl").read_text().splitlines()) == 12
    assert len((tmp_path / "predictions_ablated_empty.jsonl").read_text().splitlines()) == 12
    assert list(outcome.ablated_by_method) == ["swap", "empty"]
    assert outcome.results["throughput"]["records"] == 36
    again = evaluate(ReadsTheContext(), items, tmp_path, settings, ablated_items=ablated)
    assert again.judged == 0 and again.resumed == 36


def test_eval_command_takes_both_controls(tiny_causal: str, tmp_path: Path) -> None:
    from conftest import OFFICIAL
    from typer.testing import CliRunner

    from longrm.cli import app

    out = tmp_path / "run"
    args = [
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(OFFICIAL),
        "--out", str(out), "--ablate-context", "swap,empty", "--bootstrap", "100",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "context ablation (swap)" in result.output
    assert "context ablation (empty)" in result.output
    assert "--ablate-context swap,empty --bootstrap 100" in result.output  # the reproduce line
    results = json.loads((out / "results.json").read_text())
    assert set(results["context_ablation"]["by_method"]) == {"swap", "empty"}
    assert results["ci"]["bootstrap"] == 100
    assert (out / "predictions_ablated_empty.jsonl").is_file()
    md = (out / "results.md").read_text()
    assert "| swap |" in md and "| empty |" in md
    bad = CliRunner().invoke(app, [*args[:-4], "--ablate-context", "swap,shuffle"])
    assert bad.exit_code != 0 and "unknown ablation 'shuffle'" in bad.output

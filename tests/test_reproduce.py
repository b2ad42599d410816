"""`longrm reproduce` end to end on the tiny model (a few steps per stage), and its goal checks
on results computed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from longrm.cli import app
from longrm.train.reproduce import accuracy_over, check_goals


def _results(
    by_length: dict[str, float], blind: dict[str, float], failures: float = 0.0
) -> dict[str, Any]:
    return {
        "pairwise": {"by_length": by_length},
        "context_ablation": {
            "by_length": {b: {"accuracy_without_context": v} for b, v in blind.items()}
        },
        "parse_failure_rate": failures,
        "error_rate": 0.0,
    }


def test_goals_from_hand_made_results() -> None:
    untrained = _results(
        {"512": 0.5, "1k": 0.5, "2k": 0.5, "4k": 0.4}, {"1k": 0.5, "2k": 0.5, "4k": 0.5}
    )
    trained = _results(
        {"512": 0.49, "1k": 0.75, "2k": 0.7, "4k": 0.5}, {"1k": 0.5, "2k": 0.6, "4k": 0.5}
    )
    assert accuracy_over(trained, ("1k", "2k", "4k")) == 0.65
    goals = {g.name: g for g in check_goals(untrained, trained, _results({}, {}, failures=0.04))}
    gain = goals["accuracy gain at 1K-4K >= 15 pts"]
    assert gain.met and gain.measured == "+18.3 pts"  # 0.65 - 0.4667
    assert goals["short (512) accuracy drops <= 2 pts"].met  # -1 point
    blind = goals["gain disappears with the context swapped (<= 5 pts)"]
    assert blind.met and blind.measured == "+3.3 pts"
    assert goals["parse failures when generating < 5%"].met
    worse = check_goals(untrained, trained, _results({}, {}, failures=0.2))
    assert not worse[1].met and worse[1].measured.startswith("20.0%")


def test_reproduce_end_to_end_on_the_tiny_model(tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "repro"
    args = [
        "reproduce", "--out", str(out), "--model", tiny_causal, "--eval-lengths", "512",
        "--eval-per-cell", "1", "--train-lengths", "512", "--train-per-cell", "1",
        "--sft-steps", "2", "--align-steps", "2", "--max-new-tokens", "4",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    data = json.loads((out / "data.json").read_text())
    assert data["overlap"] == {"invented": [], "paragraphs": []}
    assert data["counts"]["eval_items"] == 4 and data["counts"]["sft_rows"] > 0
    # pairwise training items only, each in both orders: as many gold A rows as gold B rows
    assert data["settings"]["train_formats"] == "pairwise"
    assert data["counts"]["sft_rows"] == 2 * data["counts"]["train_items"]
    assert data["counts"]["sft_gold_A"] == data["counts"]["sft_gold_B"] > 0
    stage1 = json.loads((out / "stage1" / "longrm-train.json").read_text())
    assert stage1["data"]["gold_best_slot"]["A"] == stage1["data"]["gold_best_slot"]["B"]
    assert stage1["data"]["row_order"]["split_groups"] == 0
    stage2 = json.loads((out / "stage2" / "longrm-train.json").read_text())
    assert stage2["started_from"]["model"] == str(out / "stage1")
    assert stage2["started_from"]["record"]["stage"] == "sft"
    for run in ("untrained-logprob", "stage1-generate", "stage2-logprob"):
        assert (out / run / "results.json").is_file()
    assert "context_ablation" in json.loads((out / "stage2-logprob" / "results.json").read_text())
    assert (out / "report" / "results.md").is_file()
    assert "goals: stage2 against the untrained judge" in result.output
    assert "gain disappears with the context swapped" in result.output
    # a rerun reuses the trained stages and the finished runs
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "stage1: reusing" in again.output

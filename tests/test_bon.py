"""`longrm bon`: Best-of-N picks on a tiny scalar RM, resume, input errors, failed prompts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from longrm.cli import app
from longrm.rm.base import ranking_from_scores
from longrm.rm.load import RewardModelOptions, load_reward_model

ROWS: list[dict[str, Any]] = [
    {"id": "p0", "prompt": "Where is the mill?", "responses": ["By the river.", "No idea.", "Up."]},
    {
        "id": 7,
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "What colour is the rail?"},
        ],
        "responses": ["Green.", "The rail was repainted green that week.", "Blue."],
    },
    {"prompt": "Name a fruit.", "responses": ["Quince.", "Pear.", "Rye."]},
]


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == code, result.output + repr(result.exception)
    return result.output


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _picks(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_picks_are_the_best_by_score_and_sft_ready(tiny_scalar: str, tmp_path: Path) -> None:
    rollouts = _write(tmp_path / "rollouts.jsonl", ROWS)
    out = tmp_path / "picks.jsonl"
    text = _run("bon", "--model", tiny_scalar, "--in", str(rollouts), "--out", str(out))
    assert "picks: 3 now, 0 from an earlier run, 0 failed" in text
    rm = load_reward_model(tiny_scalar, RewardModelOptions(kind="scalar"))
    picks = _picks(out)
    assert [p["id"] for p in picks[:2]] == ["p0", "7"] and picks[2]["id"].startswith("sha1:")
    for row, pick in zip(ROWS, picks, strict=True):
        prompt = row.get("messages") or [{"role": "user", "content": row["prompt"]}]
        scores = [rm.score(prompt, r) for r in row["responses"]]
        assert pick["ranking"] == ranking_from_scores(scores)
        assert pick["scores"] == pytest.approx(scores, abs=1e-4)
        best = pick["ranking"][0]
        assert pick["best"] == best
        assert pick["messages"] == [
            *prompt,
            {"role": "assistant", "content": row["responses"][best]},
        ]
    rm.close()


def test_rerun_resumes_and_a_torn_line_is_redone(tiny_scalar: str, tmp_path: Path) -> None:
    rollouts = _write(tmp_path / "rollouts.jsonl", ROWS)
    out = tmp_path / "picks.jsonl"
    args = ("bon", "--model", tiny_scalar, "--in", str(rollouts), "--out", str(out))
    _run(*args)
    first = out.read_text()
    assert "0 now, 3 from an earlier run" in _run(*args)
    assert out.read_text() == first
    lines = first.splitlines(keepends=True)
    out.write_text(lines[0] + lines[1] + lines[2][:20])  # a crash mid-write of the last pick
    assert "1 now, 2 from an earlier run" in _run(*args)
    again, before = _picks(out), [json.loads(line) for line in first.splitlines()]
    assert [(p["id"], p["ranking"], p["messages"]) for p in again] == [
        (p["id"], p["ranking"], p["messages"]) for p in before
    ]
    assert again[2]["scores"] == pytest.approx(before[2]["scores"], abs=1e-4)


@pytest.mark.parametrize(
    ("rows", "where"),
    [
        ([ROWS[0], {"prompt": "q"}], ":2: field 'responses'"),
        ([ROWS[0], "{not json"], ":2: field '<json>'"),
        ([{"prompt": "q", "responses": []}], ":1: field 'responses'"),
        ([ROWS[0], ROWS[0]], ":2: field 'id': duplicate id 'p0' (first at line 1)"),
        ([{"prompt": "q", "messages": [{"role": "user", "content": "q"}], "responses": ["a"]}],
         ":1: field '<row>'"),
    ],
)  # fmt: skip
def test_input_errors_name_file_line_and_field(
    rows: list[Any], where: str, tiny_scalar: str, tmp_path: Path
) -> None:
    rollouts = _write(tmp_path / "rollouts.jsonl", rows)
    text = _run(
        "bon", "--model", tiny_scalar, "--in", str(rollouts), "--out", str(tmp_path / "o.jsonl"),
        code=2,
    )  # fmt: skip
    assert f"{rollouts}{where}" in text.replace("\n", "")
    assert not (tmp_path / "o.jsonl").exists()


def test_skip_invalid_counts_the_rows_it_skips(tiny_scalar: str, tmp_path: Path) -> None:
    rollouts = _write(tmp_path / "rollouts.jsonl", [ROWS[0], "{bad", {"prompt": "q"}])
    out = tmp_path / "picks.jsonl"
    text = _run(
        "bon", "--model", tiny_scalar, "--in", str(rollouts), "--out", str(out), "--skip-invalid"
    )
    assert "skipped 2 invalid rows" in text and "2 invalid rows skipped" in text
    assert [p["id"] for p in _picks(out)] == ["p0"]


def test_prompts_without_a_ranking_are_reported_and_retried(
    tiny_causal: str, tmp_path: Path
) -> None:
    """A random judge writes no verdict: nothing is picked, the reasons go to a file."""
    rollouts = _write(tmp_path / "rollouts.jsonl", ROWS[:2])
    out = tmp_path / "picks.jsonl"
    args = (
        "bon", "--model", tiny_causal, "--kind", "judge", "--in", str(rollouts), "--out",
        str(out), "--max-new-tokens", "3",
    )  # fmt: skip
    text = _run(*args, code=2)
    assert "2 prompts got no ranking" in text.replace("\n", " ")
    errors = [json.loads(line) for line in (tmp_path / "picks.jsonl.errors.jsonl").open()]
    assert [e["id"] for e in errors] == ["p0", "7"] and "no ranking" in errors[0]["error"]
    assert out.read_text() == ""
    assert "0 now, 0 from an earlier run, 2 failed" in _run(*args, code=2)  # retried, not skipped

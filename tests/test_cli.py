"""The command line on tiny models: build, check, eval (filters, truncation, bad input), report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import OFFICIAL
from typer.testing import CliRunner

from longrm.cli import app
from longrm.evaluate.run_files import read_run

REQUIRED_KEYS = (
    "overall",
    "parse_failure_rate",
    "position_consistency",
    "n_items",
    "truncated_items",
)


def _run(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, list(args))
    output = result.output  # stdout and stderr together
    assert result.exit_code == code, output + repr(result.exception)
    return output


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    text = _run(
        "bench", "build", "--out", str(out), "--lengths", "512,1k", "--formats",
        "pairwise,bon3,bon4", "--tasks", "single_fact,counting", "--seed", "3",
    )  # fmt: skip
    assert "wrote 12 items" in text
    return out


def test_bench_check(built: Path) -> None:
    text = _run("bench", "check", str(built))
    assert "12 valid items, 0 skipped" in text
    assert "best-of-3 4" in text and "pairwise 4" in text


def test_bad_lengths_and_missing_haystack(tmp_path: Path) -> None:
    assert "--lengths: bad length '7q'" in _run(
        "bench", "build", "--out", str(tmp_path), "--lengths", "7q", code=2
    )
    text = _run("bench", "build", "--out", str(tmp_path), "--haystack", "/no/such/dir", code=2)
    assert "/no/such/dir" in text


def test_eval_writes_every_result_the_issue_names(
    built: Path, tiny_scalar: str, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    text = _run("eval", "--model", tiny_scalar, "--bench", str(built), "--out", str(out))
    results = json.loads((out / "results.json").read_text())
    for key in REQUIRED_KEYS:
        assert key in results
    for key in ("accuracy", "by_length", "by_task"):
        assert key in results["pairwise"]
    for key in ("rank_match", "exact_match", "top1", "by_n"):
        assert key in results["bon"]
    assert results["n_items"] == 12 and results["n_records"] == 24
    assert set(results["pairwise"]["by_length"]) == {"512", "1k"}
    assert set(results["bon"]["by_n"]) == {"3", "4"}
    assert results["settings"]["kind"] == "scalar"
    assert (out / "results.md").exists() and (out / "pairwise_by_length.png").exists()
    assert "reproduce: longrm eval --model" in text
    assert read_run(out).results.as_dict() == results  # the typed reader returns it as written
    # a second run with the same arguments judges nothing new
    again = _run("eval", "--model", tiny_scalar, "--bench", str(built), "--out", str(out))
    assert "0 judged now, 24 resumed" in again


def test_filters(built: Path, tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(built),
        "--out", str(out), "--tasks", "counting", "--lengths", "1k", "--orders", "1",
    )  # fmt: skip
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 3 and {p["task"] for p in preds} == {"counting"}
    assert {p["length_bucket"] for p in preds} == {"1k"}
    limited = tmp_path / "limited"
    _run(
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(built),
        "--out", str(limited), "--limit", "2",
    )  # fmt: skip
    assert json.loads((limited / "results.json").read_text())["n_items"] == 2
    _run("eval", "--bench", str(built), "--out", str(tmp_path / "none"), "--tasks", "x", code=2)


def test_context_over_the_window_is_cut_and_counted(tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run(
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(OFFICIAL),
        "--out", str(out), "--max-length", "100",
    )  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert results["truncated_items"] == 4 and results["errors"] == 0
    assert all(
        p["prompt_tokens"] <= 100 for p in map(json.loads, (out / "predictions.jsonl").open())
    )


def test_responses_over_the_window_become_error_records(tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = (
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(OFFICIAL),
        "--out", str(out), "--max-length", "20",
    )  # fmt: skip
    text = _run(*args, code=2)  # a run that ends with errors says so and fails
    assert "8 records ended in an error" in text.replace("\n", " ")
    results = json.loads((out / "results.json").read_text())
    assert results["errors"] == results["n_records"] == 8
    assert results["error_rate"] == 1.0 and results["parse_failure_rate"] is None
    _run(*args, "--allow-errors")  # accepted on request (the errors are retried first)


def test_paper_protocol_one_seeded_order_and_file_tasks(tiny_causal: str, tmp_path: Path) -> None:
    from longrm.evaluate.protocol import paper_display_orders, paper_items
    from longrm.items import load_items

    bench = tmp_path / "bench"
    bench.mkdir()
    for name in ("LongQA", "Cite"):  # the file names are the tasks, whatever the rows say
        rows = (OFFICIAL / f"{name}.jsonl").read_text().replace('"task": "', '"task": "x')
        (bench / f"{name}.jsonl").write_text(rows)
    out = tmp_path / "run"
    text = _run(
        "eval", "--model", tiny_causal, "--bench", str(bench), "--out", str(out),
        "--protocol", "paper", "--max-new-tokens", "4",
    )  # fmt: skip
    assert "--protocol paper" in text
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    expected = paper_display_orders(paper_items(load_items(bench).items))
    assert {p["key"]: p["order"] for p in preds} == expected
    assert {p["task"] for p in preds} == {"LongQA", "Cite"}
    settings = json.loads((out / "results.json").read_text())["settings"]
    assert settings["protocol"] == "paper" and settings["orders"] == 1
    assert "--protocol: unknown protocol" in _run(
        "eval", "--bench", str(bench), "--out", str(tmp_path / "x"), "--protocol", "nope", code=2
    )


def test_ablate_context_reports_reliance(tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    text = _run(
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(OFFICIAL),
        "--out", str(out), "--ablate-context", "swap",
    )  # fmt: skip
    assert "context ablation (swap)" in text and "reliance" in text
    block = json.loads((out / "results.json").read_text())["context_ablation"]
    assert block["n_items"] == 4 and block["method"] == "swap"
    assert block["reliance"] == pytest.approx(
        block["accuracy_with_context"] - block["accuracy_without_context"]
    )
    assert len((out / "predictions_ablated.jsonl").read_text().splitlines()) == 8
    assert "| swap |" in (out / "results.md").read_text()


def test_another_benchmark_in_the_same_folder_is_refused(tiny_scalar: str, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "Cite.jsonl").write_text((OFFICIAL / "Cite.jsonl").read_text())
    out = tmp_path / "run"
    _run("eval", "--model", tiny_scalar, "--bench", str(bench), "--out", str(out))
    row = (bench / "Cite.jsonl").read_text().replace("old mill", "new mill")
    (bench / "Cite.jsonl").write_text(row)
    text = _run("eval", "--model", tiny_scalar, "--bench", str(bench), "--out", str(out), code=2)
    assert "bench_hash" in text


def test_short_preference_rows_evaluate(tiny_scalar: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    short = OFFICIAL.parent / "short"
    _run("eval", "--model", tiny_scalar, "--bench", str(short), "--out", str(out))
    results = json.loads((out / "results.json").read_text())
    assert results["n_items"] == 5
    assert set(results["pairwise"]["by_task"]) == {"chat-easy", "safety", "trl_conversational"}
    assert set(results["pairwise"]["by_length"]) == {"short"}


def test_bad_bench_rows(tiny_scalar: str, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    bench.mkdir()
    good = (OFFICIAL / "Cite.jsonl").read_text().splitlines()
    (bench / "Cite.jsonl").write_text(good[0] + "\n{broken\n" + good[1] + "\n")
    text = _run(
        "eval", "--model", tiny_scalar, "--bench", str(bench), "--out", str(tmp_path / "r"), code=2
    )
    assert "Cite.jsonl:2: field '<json>'" in text.replace("\n", "") and "--skip-invalid" in text
    text = _run(
        "eval", "--model", tiny_scalar, "--bench", str(bench), "--out", str(tmp_path / "r"),
        "--skip-invalid",
    )  # fmt: skip
    assert "skipped 1 invalid rows" in text.replace("\n", " ")
    assert json.loads((tmp_path / "r" / "results.json").read_text())["n_items"] == 2


def test_changed_settings_are_refused(tiny_scalar: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _run("eval", "--model", tiny_scalar, "--bench", str(OFFICIAL), "--out", str(out))
    text = _run(
        "eval", "--model", tiny_scalar, "--bench", str(OFFICIAL), "--out", str(out),
        "--orders", "1", code=2,
    )  # fmt: skip
    assert "other settings" in text


def test_report_puts_runs_side_by_side(tiny_scalar: str, tiny_causal: str, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    _run(
        "eval",
        "--model",
        tiny_scalar,
        "--bench",
        str(OFFICIAL),
        "--out",
        str(a),
        "--name",
        "scalar-rm",
    )
    _run(
        "eval", "--model", tiny_causal, "--kind", "likelihood", "--bench", str(OFFICIAL),
        "--out", str(b), "--name", "lik-rm",
    )  # fmt: skip
    text = _run("report", str(a), str(b), "--out", str(tmp_path / "rep"))
    assert "| scalar-rm |" in text and "| lik-rm |" in text
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "scalar-rm" in md and "lik-rm" in md
    assert (tmp_path / "rep" / "pairwise_by_length.png").read_bytes()[:4] == b"\x89PNG"
    assert "no results.json" in _run("report", str(tmp_path), code=2)

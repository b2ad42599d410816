"""The default model (SmolLM2-135M-Instruct) end to end, and the OpenAI-compatible backend
through `longrm eval` against a real llama.cpp server process on loopback.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import OFFICIAL

pytestmark = pytest.mark.integration


def _longrm(*args: str, code: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "longrm", *args], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == code, done.stdout + done.stderr
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("suite")
    _longrm(
        "bench", "build", "--out", str(out), "--lengths", "512", "--formats", "pairwise,bon3",
        "--seed", "1",
    )  # fmt: skip
    return out


def _results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text())


def test_default_model_likelihood_on_the_built_suite(suite: Path, tmp_path: Path) -> None:
    text = _longrm("eval", "--bench", str(suite), "--out", str(tmp_path), "--kind", "likelihood")
    res = _results(tmp_path)
    assert res["n_items"] == 8 and res["parse_failure_rate"] == 0.0
    # a likelihood RM scores each response on its own: order cannot change its verdict
    assert res["position_consistency"] == 1.0
    assert res["auc"] is not None and "| default |" in text
    assert res["settings"]["model"] == "default"


@pytest.mark.parametrize("verdict", ["logprob", "generate"])
def test_default_model_judge_on_official_rows(verdict: str, tmp_path: Path) -> None:
    _longrm(
        "eval", "--bench", str(OFFICIAL), "--out", str(tmp_path), "--verdict", verdict,
        "--max-new-tokens", "24",
    )  # fmt: skip
    res = _results(tmp_path)
    assert res["n_records"] == 8 and res["settings"]["kind"] == "judge"
    preds = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    assert all(p["error"] is None and p["prompt_tokens"] > 250 for p in preds)
    if verdict == "logprob":
        assert res["parse_failure_rate"] == 0.0
        assert all(abs(sum(p["scores"]) - 1) < 1e-4 for p in preds)
    else:
        assert all(p["text"] for p in preds)


def test_openai_backend_through_eval(llama_server: str, suite: Path, tmp_path: Path) -> None:
    spec = f"openai:SmolLM2-135M-Instruct@{llama_server}"
    official = tmp_path / "official"
    _longrm(
        "eval", "--model", spec, "--bench", str(OFFICIAL), "--out", str(official),
        "--verdict", "logprob", "--concurrency", "2",
    )  # fmt: skip
    res = _results(official)
    assert res["n_records"] == 8 and res["errors"] == 0 and res["settings"]["kind"] == "openai"
    built = tmp_path / "built"
    _longrm(
        "eval", "--model", spec, "--bench", str(suite), "--out", str(built), "--limit", "3",
        "--max-new-tokens", "32",
    )  # fmt: skip
    assert _results(built)["n_records"] == 6


def test_openai_backend_records_errors_when_the_server_is_gone(tmp_path: Path) -> None:
    from conftest import free_port

    spec = f"openai:m@http://127.0.0.1:{free_port()}/v1"
    args = (
        "eval", "--model", spec, "--bench", str(OFFICIAL), "--out", str(tmp_path),
        "--retries", "0", "--timeout", "2",
    )  # fmt: skip
    text = _longrm(*args, code=2)  # the run ends with errors: it says so and fails
    assert "8 records ended in an error" in text.replace("\n", " ")
    res = _results(tmp_path)
    assert res["errors"] == 8 and res["error_rate"] == 1.0
    assert res["parse_failure_rate"] is None  # no record was answered
    _longrm(*args, "--allow-errors")

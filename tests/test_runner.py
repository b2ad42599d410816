"""The evaluation runner: display orders, error records, resume after a crash, settings checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import OFFICIAL

from longrm.evaluate.predictions import read_predictions
from longrm.evaluate.runner import (
    EvalSettings,
    RunMismatchError,
    display_orders,
    evaluate,
)
from longrm.items import Item, Messages, load_items, write_items
from longrm.rm.base import RewardModel, Verdict


def _items() -> list[Item]:
    return load_items(OFFICIAL).items


def _many_items(count: int) -> list[Item]:
    base = _items()
    out = []
    for i in range(count):
        src = base[i % len(base)]
        out.append(Item(**{**src.__dict__, "id": 100 + i}))
    return out


class FirstIsBest(RewardModel):
    """Deterministic stand-in that always picks display slot 0 (a fully position-biased judge)."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls = 0
        self.fail_on = fail_on

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        self.calls += 1
        if self.fail_on and any(self.fail_on in r for r in responses):
            raise RuntimeError("boom")
        return Verdict(
            ranking=list(range(len(responses))), scores=[1.0] + [0.0] * (len(responses) - 1)
        )

    def score(self, prompt: Messages, response: str) -> float:
        return 0.0


def test_display_orders_cover_both_orders_of_a_pair() -> None:
    pair, bon = [i for i in _items() if i.key in ("LongQA:0", "LongQA:1")]
    assert display_orders(pair, 2, 42) == [[0, 1], [1, 0]]
    assert display_orders(pair, 1, 42) == display_orders(pair, 1, 42)
    three = display_orders(bon, 3, 42)
    assert len({tuple(o) for o in three}) == 3 and all(sorted(o) == [0, 1, 2] for o in three)
    assert display_orders(bon, 6, 1) == display_orders(bon, 6, 2)  # all 3! permutations
    with pytest.raises(ValueError):
        display_orders(pair, 0, 42)


def test_position_bias_is_measured(tmp_path: Path) -> None:
    settings = EvalSettings(model="stub", kind="judge", orders=2)
    outcome = evaluate(FirstIsBest(), _items(), tmp_path, settings)
    res = outcome.results
    assert res["n_records"] == 8 and res["pairwise"]["accuracy"] == 0.5
    assert res["position_bias_failures"] == 2  # both pairs flip with the order
    assert res["position_consistency"] == 0.0
    assert len(read_predictions(tmp_path / "predictions.jsonl")) == 8


def test_errors_are_their_own_rate_and_are_retried_on_resume(tmp_path: Path) -> None:
    settings = EvalSettings(model="stub", kind="judge", orders=2)
    rm = FirstIsBest(fail_on="lamp oil")
    outcome = evaluate(rm, _items(), tmp_path, settings)
    errors = [p for p in outcome.predictions if p.error]
    assert len(errors) == 2 and errors[0].error == "RuntimeError: boom"
    res = outcome.results
    assert res["errors"] == 2 and res["error_rate"] == 0.25
    assert res["parse_failure_rate"] == 0.0  # every answered record parsed
    assert res["robustness"]["by_task"]["LongQA"]["error_rate"] == 0.5
    assert res["robustness"]["by_length"]["4k"]["error_rate"] == 0.5  # LongQA:0 and Cite:1
    assert res["robustness"]["by_length"]["8k"]["error_rate"] == 0.0
    # a rerun judges the two errored records again, and only those
    again = FirstIsBest()
    second = evaluate(again, _items(), tmp_path, settings)
    assert again.calls == 2 and second.resumed == 6 and second.judged == 2
    assert second.results["errors"] == 0 and second.results["n_records"] == 8
    third = FirstIsBest()
    assert evaluate(third, _items(), tmp_path, settings).judged == 0 and third.calls == 0


def test_errors_can_be_kept_on_resume(tmp_path: Path) -> None:
    settings = EvalSettings(model="stub", kind="judge", orders=2)
    evaluate(FirstIsBest(fail_on="lamp oil"), _items(), tmp_path, settings)
    rm = FirstIsBest()
    outcome = evaluate(rm, _items(), tmp_path, settings, retry_errors=False)
    assert rm.calls == 0 and outcome.results["errors"] == 2


def test_torn_last_line_is_redone(tmp_path: Path) -> None:
    settings = EvalSettings(model="stub", kind="judge", orders=2)
    evaluate(FirstIsBest(), _items(), tmp_path, settings)
    path = tmp_path / "predictions.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:5]) + lines[5][:40])  # a crash in the middle of a write
    rm = FirstIsBest()
    outcome = evaluate(rm, _items(), tmp_path, settings)
    assert rm.calls == 3 and outcome.resumed == 5
    assert all(json.loads(line) for line in path.read_text().splitlines())
    assert len(read_predictions(path)) == 8


def test_other_settings_are_refused(tmp_path: Path) -> None:
    evaluate(FirstIsBest(), _items(), tmp_path, EvalSettings(model="stub", kind="judge"))
    with pytest.raises(RunMismatchError, match="orders: 2 -> 1"):
        evaluate(
            FirstIsBest(), _items(), tmp_path, EvalSettings(model="stub", kind="judge", orders=1)
        )
    renamed = EvalSettings(model="stub", kind="judge", name="a new name")
    assert evaluate(FirstIsBest(), _items(), tmp_path, renamed).judged == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bench_hash", "another-benchmark"),
        ("dtype", "bfloat16"),
        ("attn", "sdpa"),
        ("prefix_cache", False),
        ("protocol", "paper"),
        ("thinking", True),
        ("rope_scaling", "yarn:4"),
    ],
)
def test_run_identity_covers_what_changes_results(
    tmp_path: Path, field: str, value: object
) -> None:
    base = EvalSettings(model="stub", kind="judge", bench_hash="abc")
    evaluate(FirstIsBest(), _items(), tmp_path, base)
    changed = EvalSettings(**{**base.__dict__, field: value})
    with pytest.raises(RunMismatchError, match=field):
        evaluate(FirstIsBest(), _items(), tmp_path, changed)


def test_an_order_plan_replaces_the_seeded_orders(tmp_path: Path) -> None:
    settings = EvalSettings(model="stub", kind="judge", orders=1, protocol="paper")
    outcome = evaluate(
        FirstIsBest(), _items(), tmp_path, settings, order_plan=lambda i: [list(range(i.n))[::-1]]
    )
    assert all(p.order == list(range(p.n))[::-1] for p in outcome.predictions)
    assert outcome.results["n_records"] == 4


def test_concurrent_backend_records_everything(tmp_path: Path) -> None:
    class Slow(FirstIsBest):
        max_concurrency = 4

        def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
            time.sleep(0.05)
            return super().rank(prompt, responses)

    outcome = evaluate(Slow(), _many_items(12), tmp_path, EvalSettings(model="s", kind="judge"))
    assert outcome.judged == 24
    assert len({(p.key, p.order_index) for p in outcome.predictions}) == 24


def _eval_cmd(model: str, bench: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "longrm", "eval", "--model", model, "--bench", str(bench),
        "--out", str(out), "--kind", "judge", "--verdict", "logprob",
    ]  # fmt: skip


def _comparable(results: dict) -> dict:
    return {k: v for k, v in results.items() if k not in ("throughput", "settings")}


def test_killed_run_resumes_to_the_same_results(tiny_causal: str, tmp_path: Path) -> None:
    bench = tmp_path / "bench"
    write_items(_many_items(16), bench)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    full = tmp_path / "full"
    subprocess.run(_eval_cmd(tiny_causal, bench, full), check=True, env=env, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen(
        _eval_cmd(tiny_causal, bench, run), env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    preds = run / "predictions.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if preds.exists() and len(preds.read_text().splitlines()) >= 6:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(read_predictions(preds))
    assert 6 <= done_before < 32, "the run should have been killed part-way"
    assert not (run / "results.json").exists()

    resumed = subprocess.run(
        _eval_cmd(tiny_causal, bench, run), check=True, env=env, capture_output=True, text=True
    )
    assert f"{done_before} of 32 records already" in resumed.stderr.replace("\n", " ")
    assert len(read_predictions(preds)) == 32
    a = json.loads((full / "results.json").read_text())
    b = json.loads((run / "results.json").read_text())
    assert json.dumps(_comparable(a), sort_keys=True) == json.dumps(_comparable(b), sort_keys=True)

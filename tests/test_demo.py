"""The demo's library (`longrm.demo`): its plan, its estimate, and its steps run through
`longrm.evaluate` on the tiny model, each resumable from the command line it prints.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longrm.cli import app
from longrm.demo import (
    COST,
    QUICK,
    DemoPlan,
    DemoStep,
    estimate_seconds,
    length_table,
    prepare_demo,
    run_step,
    step_command,
    step_items,
    write_demo_report,
)
from longrm.items import Item

TINY = DemoPlan(
    lengths="512",
    best_of_n=False,
    steps=(
        DemoStep("likelihood", "likelihood", "generate"),
        DemoStep("judge-logprob", "judge", "logprob"),
        DemoStep("judge-generate", "judge", "generate", control=False, lengths=("512",), limit=1),
    ),
    max_new_tokens=4,
)


def _pair(length: int, bucket: str) -> Item:
    return Item(
        id=bucket,
        task="single_fact",
        subtask="",
        tasktype="PairWise",
        subtype="",
        length_bucket=bucket,
        length=length,
        prompt=[{"role": "user", "content": "q"}],
        question="q",
        candidates=["a", "b"],
        candidate_models=["", ""],
    )


def test_estimate_adds_forwards_orders_and_decoding_by_hand() -> None:
    items = [_pair(1000, "1k"), _pair(2000, "2k")]
    plan = DemoPlan(
        lengths="1k,2k",
        best_of_n=False,
        steps=(
            DemoStep("likelihood", "likelihood", "generate"),
            DemoStep("g", "judge", "generate", control=False, lengths=("1k",), limit=1),
        ),
        max_new_tokens=55,
    )
    per_token = COST.forward_s_per_token
    template, judge = COST.template_tokens, COST.judge_prompt_tokens
    likelihood = 2 * (
        ((1000 + template) * per_token + COST.order_s)
        + ((2000 + template) * per_token + COST.order_s)
    )
    generate = (1000 + template + judge) * per_token + COST.order_s + 2 * 55 / 55.0
    assert estimate_seconds(items, plan) == pytest.approx(COST.startup_s + likelihood + generate)
    assert [i.id for i in step_items(items, plan.steps[1])] == ["1k"]


def test_quick_plan_fits_five_minutes_by_its_own_estimate(default_model_path: str) -> None:
    # the sizes the quick demo is planned at, from the measured costs (not a timing)
    from transformers import AutoTokenizer

    from longrm.demo import demo_items

    items = demo_items(AutoTokenizer.from_pretrained(default_model_path), QUICK)
    assert {i.length_bucket for i in items} == {"512", "1k", "2k"}
    assert all(i.is_pairwise for i in items) and len(items) == 12
    assert len(step_items(items, QUICK.steps[-1])) == 2
    assert estimate_seconds(items, QUICK) < 5 * 60


def test_demo_steps_on_the_tiny_model_resume_from_their_command(
    tmp_path: Path, tiny_causal: str
) -> None:
    suite = prepare_demo(tmp_path / "demo", TINY, model=tiny_causal)
    assert len(suite.items) == 4 and (suite.bench / "single_fact.jsonl").exists()
    runs = [run_step(suite, step) for step in TINY.steps]
    likelihood, logprob, generate = runs
    assert [r.judged for r in runs] == [4 * 2 * 2, 4 * 2 * 2, 1 * 2]  # items x orders x control
    assert likelihood.results.context_ablation and logprob.results.context_ablation
    assert generate.results.context_ablation is None and generate.results.n_items == 1
    report = write_demo_report(suite, runs)
    assert report.md.exists() and report.plot.exists()
    rows = report.by_length.splitlines()
    assert rows[0] == "| Model | 512 | all |" and len(rows) == 4  # header, rule, two runs
    block = likelihood.results.context_ablation
    with_context = block["by_length"]["512"]["accuracy_with_context"]
    without = block["by_length"]["512"]["accuracy_without_context"]
    assert rows[2].startswith(f"| {likelihood.name} | {100 * with_context:.0f} / ")
    assert f"/ {100 * without:.0f} |" in rows[2]
    assert length_table([generate]).splitlines()[2:] == []  # no control, no row
    # the printed command finds the same run (same identity) and judges nothing new
    for step in (TINY.steps[1], TINY.steps[2]):
        argv = shlex.split(step_command(suite, step))[1:]
        again = CliRunner().invoke(app, argv)
        assert again.exit_code == 0, again.output
        assert "records: 0 judged now" in again.output


def test_full_plan_keeps_the_earlier_demo() -> None:
    from longrm.demo import FULL

    assert FULL.lengths == "512,1k,2k,4k" and FULL.best_of_n
    assert all(s.control and s.limit is None for s in FULL.steps)

"""`longrm reproduce`: the goals' interval rules on hand-made numbers, the report's table, the
time estimate, and both tracks end to end on the tiny model (a few steps per stage).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from longrm.cli import app, reproduce
from longrm.evaluate.intervals import IntervalSettings
from longrm.evaluate.predictions import Prediction
from longrm.train import goals as g
from longrm.train.reproduce_cost import Costs, minutes
from longrm.train.reproduce_disrm import LIKELIHOOD, LONG, SHORT, DisrmTrack, disrm_goals
from longrm.train.reproduce_judge import GENERATE, LOGPROB, judge_goals
from longrm.train.reproduce_report import Row, RunRecords, build_report, markdown
from longrm.train.reproduce_tracks import make_track

CI = IntervalSettings(n_resamples=500, seed=0)

# ---------------------------------------------------------------------------------------------
# The goals' rules


def test_a_gain_needs_both_its_size_and_an_interval_above_zero() -> None:
    met = g.gain("gain", 0.12, (0.02, 0.22), 0.10, n=144)
    assert met.met and met.shortfall == ""
    assert met.line() == "PASS  gain: +12.0 pts [+2.0, +22.0] over 144 items"
    small = g.gain("gain", 0.08, (0.01, 0.15), 0.10)
    assert not small.met and small.shortfall == "2.0 pts short of +10.0"
    noisy = g.gain("gain", 0.12, (-0.01, 0.25), 0.10)
    assert not noisy.met and noisy.shortfall == "interval low end -1.0, not above 0"
    assert g.gain("gain", 0.05, (-0.03, 0.13), 0.10).shortfall == (
        "5.0 pts short of +10.0; interval low end -3.0, not above 0"
    )


def test_floors_ceilings_and_chance_are_judged_by_the_interval_end() -> None:
    assert g.above("beats", 0.06, (0.001, 0.12), 0.0).met
    edge = g.above("beats", 0.06, (0.0, 0.12), 0.0)  # touching 0 is not above it
    assert not edge.met and edge.shortfall == "interval low end +0.0, not above +0.0"
    # "loses no more than 2 points": the low end decides, not the point estimate
    assert g.at_least("512", -0.01, (-0.019, 0.0), -0.02, signed=True).met
    lost = g.at_least("512", 0.0, (-0.094, 0.083), -0.02, signed=True)
    assert not lost.met and lost.shortfall == "interval low end -9.4, 7.4 pts below the floor"
    assert g.reaches("judge", 0.70, (0.62, 0.78), 0.65, 0.5).met
    short = g.reaches("judge", 0.64, (0.49, 0.78), 0.65, 0.5)
    assert not short.met
    assert short.shortfall == "1.0 pts short of 65.0%; interval low end 49.0, not above 50.0%"
    assert g.below("fails", 0.01, (0.0, 0.035), 0.05).met
    over = g.below("fails", 0.03, (0.01, 0.061), 0.05)
    assert not over.met and over.shortfall == "interval high end 6.1, 1.1 pts at or over 5.0%"
    assert g.contains("control", 0.52, (0.45, 0.59), 0.5).met
    high = g.contains("control", 0.62, (0.55, 0.70), 0.5)
    assert not high.met and high.shortfall == "interval 5.0 pts above 50.0%"
    low = g.contains("control", 0.41, (0.33, 0.48), 0.5)
    assert not low.met and low.shortfall == "interval 2.0 pts below 50.0%"
    assert high.line() == "MISS  control: 62.0% [55.0, 70.0] (interval 5.0 pts above 50.0%)"


def test_a_goal_without_measurements_is_missed() -> None:
    for goal in (
        g.gain("x", None, None, 0.1),
        g.contains("x", 0.5, None, 0.5),
        g.below("x", None, (0.0, 0.1), 0.05),
    ):
        assert not goal.met and goal.shortfall.startswith("not measured")
    assert g.gain("x", None, None, 0.1).line().startswith("MISS  x: not measured")


# ---------------------------------------------------------------------------------------------
# Goals measured on hand-made records


def _pair(
    key: str, bucket: str, right: bool | None, gold: float = 1.0, other: float = 0.0
) -> list[Prediction]:
    """Both display orders of a pair; right: the gold first in each (None: no verdict)."""
    out = []
    for index, order in enumerate(([0, 1], [1, 0])):
        gold_slot = order.index(0)
        ranking = None if right is None else [gold_slot if right else 1 - gold_slot]
        if ranking is not None:
            ranking.append(1 - ranking[0])
        scores = [gold if c == 0 else other for c in order]
        out.append(
            Prediction(
                key=key,
                task="single_fact",
                tasktype="PairWise",
                length_bucket=bucket,
                n=2,
                order_index=index,
                order=order,
                ranking=ranking,
                scores=scores,
            )  # fmt: skip
        )
    return out


def _run(
    right: dict[str, int], per_bucket: int, ablated: dict[str, dict[str, int]] | None = None
) -> RunRecords:
    """A run right on the first right[bucket] of per_bucket pairs of each bucket."""

    def records(hits: dict[str, int]) -> list[Prediction]:
        return [
            p
            for bucket, n in hits.items()
            for i in range(per_bucket)
            for p in _pair(f"single_fact:{bucket}-{i}", bucket, i < n)
        ]

    return RunRecords(records(right), {m: records(h) for m, h in (ablated or {}).items()})


GROUPS = {"512": ("512",), "1K-4K": ("1k", "2k", "4k"), "2K-4K": ("2k", "4k")}
HALF = {"512": 24, "1k": 24, "2k": 24, "4k": 24}


def test_disrm_goals_pass_on_a_clear_gain_and_chance_controls() -> None:
    runs = {
        LIKELIHOOD: _run(HALF, 48),
        SHORT: _run({"512": 40, "1k": 30, "2k": 26, "4k": 24}, 48, {"swap": HALF, "empty": HALF}),
        LONG: _run({"512": 40, "1k": 40, "2k": 40, "4k": 38}, 48, {"swap": HALF, "empty": HALF}),
    }
    goals = disrm_goals(runs, GROUPS, ["swap", "empty"], CI)
    assert [goal.met for goal in goals] == [True] * 7, [goal.line() for goal in goals]
    gain = goals[0]
    assert gain.n == 144 and gain.value == pytest.approx((118 - 72) / 144)
    assert gain.interval is not None and gain.interval[0] > 0
    assert goals[2].value == 0 and goals[2].interval == (0.0, 0.0)  # the same 512 pairs right


def test_disrm_goals_say_what_was_missed_and_by_how_much() -> None:
    runs = {
        LIKELIHOOD: _run(HALF, 48),
        SHORT: _run({"512": 40, "1k": 30, "2k": 30, "4k": 30}, 48, {"swap": HALF}),
        # a small gain at 1K-4K, none over short-only, a loss at 512, a control far from chance
        LONG: _run(
            {"512": 30, "1k": 26, "2k": 30, "4k": 30}, 48, {"swap": dict.fromkeys(HALF, 40)}
        ),
    }
    goals = disrm_goals(runs, GROUPS, ["swap"], CI)
    gain, beats, at_512, short_swap, long_swap = goals
    assert not gain.met and gain.value == pytest.approx((86 - 72) / 144)
    assert gain.shortfall == "0.3 pts short of +10.0"  # its interval is above 0: size alone
    assert not beats.met and beats.value == 0
    assert beats.shortfall == "interval low end +0.0, not above +0.0"
    assert not at_512.met and at_512.value == pytest.approx(-10 / 48)
    assert "below the floor" in at_512.shortfall
    assert short_swap.met
    assert not long_swap.met and "pts above 50.0%" in long_swap.shortfall
    assert long_swap.line().startswith(
        "MISS  DisRM short+long, context swapped: interval contains 50%: 83.3% ["
    )


def test_judge_goals_read_a_signal_an_always_a_judge_hides() -> None:
    # always [[A]], but the gold answer's verdict scores 0.2 higher whatever its slot
    records = []
    for bucket in ("512", "1k", "2k", "4k"):
        for i in range(12):
            for index, order in enumerate(([0, 1], [1, 0])):
                scores = [
                    1.0 + (0.2 if c == 0 else 0.0) - 0.5 * slot for slot, c in enumerate(order)
                ]
                records.append(
                    Prediction(
                        key=f"t:{bucket}-{i}",
                        task="t",
                        tasktype="PairWise",
                        n=2,
                        length_bucket=bucket,
                        order_index=index,
                        order=order,
                        ranking=[0, 1],
                        scores=scores,
                    )  # fmt: skip
                )
    empty = [p for i in range(24) for p in _pair(f"t:e{i}", "1k", True, 0.5, 0.5)]  # ties: 0.5
    logprob = RunRecords(records, {"empty": empty})
    generate = _run({"512": 12, "1k": 12, "2k": 11, "4k": 12}, 12)
    generate.records[-1] = generate.records[-1].model_copy(update={"ranking": None})
    runs = {LOGPROB: logprob, GENERATE: generate}
    assert logprob.values("accuracy") == {p.key: 0.5 for p in records}  # argmax: chance
    reached, failures, control = judge_goals(runs, ("1k", "2k", "4k"), ["empty"], CI)
    assert reached.met and reached.value == 1.0 and reached.n == 36
    assert failures.value == pytest.approx(0.5 / 36)  # one record of 72: half an item
    assert failures.met and failures.interval is not None and failures.interval[1] < 0.05
    assert control.met and control.value == 0.5
    for i in (-3, -5):  # two more items with a record without a verdict
        generate.records[i] = generate.records[i].model_copy(update={"ranking": None})
    failures = judge_goals(runs, ("1k", "2k", "4k"), [], CI)[1]
    assert failures.value == pytest.approx(1.5 / 36) and not failures.met  # 4.2%, not proof


# ---------------------------------------------------------------------------------------------
# The report


def test_the_table_shows_an_interval_in_every_cell_and_the_command_of_every_row() -> None:
    runs = {LIKELIHOOD: _run({"512": 3, "1k": 2}, 4), LONG: _run({"512": 4, "1k": 3}, 4)}
    rows = [Row("untrained likelihood", LIKELIHOOD), Row("DisRM short+long", LONG)]
    commands = {LIKELIHOOD: "longrm eval --model default", LONG: "longrm eval --model out/long"}
    report = build_report(
        track="disrm", rows=rows, comparisons=[], goals=[g.contains("c", 0.5, (0.4, 0.6), 0.5)],
        runs=runs, names={LIKELIHOOD: "lik", LONG: "long"}, commands=commands, ci=CI, extra={},
    )  # fmt: skip
    text = markdown(report)
    lines = [line for line in text.splitlines() if line.startswith("| DisRM short+long")]
    assert len(lines) == 1
    cells = lines[0].split(" | ")
    assert cells[3].startswith("100.0 [") and cells[4].startswith("75.0 [")  # 512, 1k
    assert cells[5].startswith("87.5 [")  # all
    assert "`longrm eval --model out/long`" in lines[0]
    assert "| model | metric | context | 512 | 1k | all | reproduce with |" in text
    assert "- PASS  c: 50.0% [40.0, 60.0]" in text
    assert report["rows"][1]["cells"]["1k"]["n"] == 4
    json.dumps(report)  # reproduce.json holds it as is


# ---------------------------------------------------------------------------------------------
# Tracks, sizes and the estimate


def test_the_help_states_the_estimate_of_the_default_sizes() -> None:
    doc = " ".join((reproduce.__doc__ or "").split())
    for track in ("disrm", "judge"):
        estimate = minutes(make_track(track, {}).estimate(Costs()))
        found = re.search(rf"--track {track} about (\d+)", doc)
        assert found and int(found.group(1)) == round(estimate["total"]), (track, estimate)
        train = sum(v for k, v in estimate.items() if not k.startswith(("eval", "data", "total")))
        evals = sum(v for k, v in estimate.items() if k.startswith("eval"))
        assert f"training {round(train)}, evaluation {round(evals)}" in doc
    smaller = minutes(make_track("disrm", {"eval_per_cell": 6}).estimate(Costs()))
    assert f"brings the disrm track to about {round(smaller['total'])}" in doc


def test_both_disrms_train_on_as_many_pairs() -> None:
    for per_cell in (1, 2, 5, 24):
        mix = DisrmTrack(train_per_cell=per_cell).train_mix()
        assert sum(mix[SHORT].values()) == sum(mix[LONG].values()) == per_cell * 8
    mix = DisrmTrack().train_mix()
    assert mix[LONG] == {"448": 48, "512": 48, "1k": 48, "2k": 48}


def test_tracks_refuse_flags_they_do_not_have_and_bad_values() -> None:
    with pytest.raises(ValueError, match="--short-lengths: not an option of --track judge"):
        make_track("judge", {"short_lengths": "512"})
    with pytest.raises(ValueError, match="unknown control"):
        make_track("disrm", {"controls": "swap,blur"})
    with pytest.raises(ValueError, match="unknown track"):
        make_track("dpo", {})
    result = CliRunner().invoke(app, ["reproduce", "--track", "judge", "--curriculum", "length"])
    assert result.exit_code != 0 and "--curriculum: not an option of --track judge" in result.output


# ---------------------------------------------------------------------------------------------
# End to end on the tiny model


def _invoke(args: list[str]) -> Any:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


@pytest.mark.parametrize("track", ["disrm", "judge"])
def test_default_sizes_build_disjoint_data(tokenizer: Any, tmp_path: Path, track: str) -> None:
    # at these sizes a held-out paragraph once shared its opening with another haystack
    # paragraph, a training item cut that one short, and the overlap check stopped the track
    data = make_track(track, {}).build(tokenizer, tmp_path)
    assert data["overlap"] == {"invented": [], "paragraphs": []}


def test_disrm_track_end_to_end_on_the_tiny_model(tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "disrm"
    args = [
        "reproduce", "--out", str(out), "--model", tiny_causal, "--eval-lengths", "512,2k",
        "--eval-per-cell", "1", "--train-per-cell", "2", "--long-lengths", "1k",
    ]  # fmt: skip
    result = _invoke(args)
    data = json.loads((out / "data" / "data.json").read_text())
    assert data["overlap"] == {"invented": [], "paragraphs": []}
    assert data["counts"] == {
        "heldout": {"512": 4, "2k": 4},
        SHORT: {"448": 8, "512": 8},
        LONG: {"448": 4, "512": 4, "1k": 8},  # the same budget: half short, half long
    }
    records = {
        label: json.loads((out / "models" / label / "longrm-train.json").read_text())
        for label in (SHORT, LONG)
    }
    assert records[SHORT]["steps"] == records[LONG]["steps"] == 4  # 16 pairs, 4 a step
    assert records[SHORT]["data"]["rows"] == records[LONG]["data"]["rows"] == 16
    run = json.loads((out / "runs" / LONG / "results.json").read_text())
    assert set(run["context_ablation"]["by_method"]) == {"swap", "empty"}
    assert "context_ablation" not in json.loads(
        (out / "runs" / LIKELIHOOD / "results.json").read_text()
    )
    report = json.loads((out / "reproduce.json").read_text())
    assert [(r["model"], r["condition"]) for r in report["rows"]] == [
        ("untrained likelihood", "context"),
        ("DisRM short-only", "context"), ("DisRM short-only", "swap"),
        ("DisRM short-only", "empty"),
        ("DisRM short+long", "context"), ("DisRM short+long", "swap"),
        ("DisRM short+long", "empty"),
    ]  # fmt: skip
    assert len(report["goals"]) == 7
    text = result.output
    long_eval = (
        f"longrm eval --bench {out}/data/heldout --out {out}/runs/{LONG} --model "
        f"{out}/models/{LONG} --kind scalar --ablate-context swap,empty"
    )
    table = [line for line in text.splitlines() if line.startswith("| DisRM short+long | accur")]
    assert len(table) == 3 and all(f"`{long_eval}`" in line for line in table)
    assert all(re.search(r"\d+\.\d \[\d+\.\d, \d+\.\d\]", line) for line in table)
    assert f"longrm train disrm --model {tiny_causal} --data {out}/data/train-long" in text
    assert "DisRM short+long - untrained likelihood at 1K-4K >= +10 pts" in text
    assert re.search(r"(PASS|MISS)  DisRM short-only, context emptied: interval contains", text)
    assert (out / "reproduce.md").read_text().startswith("# longrm reproduce --track disrm")
    assert (out / "report" / "results.md").is_file()
    # a rerun reuses every step; other sizes in the same folder are refused
    again = _invoke(args)
    assert f"{LONG}: reusing" in again.output and f"eval {LONG}: reusing" in again.output
    other = CliRunner().invoke(app, [*args[:-4], "--train-per-cell", "3"])
    assert other.exit_code != 0 and "built with other sizes" in other.output


def test_judge_track_end_to_end_on_the_tiny_model(tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "judge"
    args = [
        "reproduce", "--track", "judge", "--out", str(out), "--model", tiny_causal,
        "--eval-lengths", "512,1k", "--eval-per-cell", "1", "--train-lengths", "512,1k",
        "--train-per-cell", "1", "--max-new-tokens", "4",
    ]  # fmt: skip
    result = _invoke(args)
    stage1 = json.loads((out / "models" / "stage1" / "longrm-train.json").read_text())
    stage2 = json.loads((out / "models" / "stage2" / "longrm-train.json").read_text())
    assert stage1["data"]["rows"] == 16  # 8 pairs, both display orders
    assert stage1["data"]["gold_best_slot"]["A"] == stage1["data"]["gold_best_slot"]["B"]
    assert stage1["config"]["judgment_layout"] == "verdict_only"
    assert stage2["started_from"]["model"] == str(out / "models" / "stage1")
    assert stage2["config"]["score_tokens"] == "verdict"
    assert stage2["config"]["length_normalize"] is False
    assert stage2["config"]["negatives"] == 1
    logprob = json.loads((out / "runs" / LOGPROB / "results.json").read_text())
    assert logprob["pairwise"]["debiased_accuracy"] is not None
    assert set(logprob["context_ablation"]["by_method"]) == {"empty"}
    generate = json.loads((out / "runs" / GENERATE / "results.json").read_text())
    assert generate["settings"]["max_new_tokens"] == 4
    report = json.loads((out / "reproduce.json").read_text())
    assert [(r["metric"], r["condition"]) for r in report["rows"]] == [
        ("debiased", "context"), ("accuracy", "context"), ("debiased", "empty"),
        ("accuracy", "context"), ("parse_failures", "context"),
    ]  # fmt: skip
    text = result.output
    assert "| Stage II judge (generating) | parse failures | given |" in text
    assert (
        f"--model {out}/models/stage2 --kind judge --verdict generate --max-new-tokens 4`" in text
    )
    assert "Stage II judge (logprob) at 1K-4K: order-debiased accuracy >= 65%" in text
    assert "parse-failure interval below 5%" in text

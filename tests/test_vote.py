"""Consistency majority voting: votes computed by hand, agreement statistics, the outputs read by
longrm's own loaders, resume, located errors, the judges' explanation text through the
reward-model interface, and one run with the default model as three sampled judges.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import torch
from typer.testing import CliRunner

from longrm.cli_synth import synth_app
from longrm.items import (
    BEST_OF_N,
    PAIRWISE,
    ItemError,
    PreferenceRow,
    SftRow,
    load_items,
    load_release_rows,
)
from longrm.rm.base import PointwiseJudgment, RewardModel, Sampling, Verdict
from longrm.rm.load import RewardModelOptions, load_reward_model
from longrm.rm.openai_api import OpenAIJudge
from longrm.rm.verdicts import parse_score
from longrm.synth import outputs
from longrm.synth.agreement import agreement_stats, fleiss_kappa
from longrm.synth.outputs import format_judgment
from longrm.synth.templates import with_response
from longrm.synth.units import Judgment, read_units, to_score
from longrm.synth.vote import NO_AGREEMENT, TIE, vote
from longrm.synth.voting_run import Judge, VoteMismatchError, VoteSettings, judge_plan, run_vote
from longrm.train.data import load_preferences, load_sft

RELEASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "longrm-release"
if not RELEASE.exists():
    RELEASE = Path("/work/shared/data/longrm-release")

CONTEXT = "The Eiffel Tower in Paris was finished in 1889 for the World's Fair."
QUESTION = "When was the Eiffel Tower finished?"


def J(judge: str, score: int, text: str | None = None) -> Judgment:
    """A judgment whose text names its judge and score (so tests can tell them apart)."""
    if text is None:
        text = f"{judge} thinks so.\n[Score: {score}]" if score >= 0 else f"{judge} rambles"
    return Judgment(judge, score, text)


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


# --- voting, by hand ----------------------------------------------------------------------------


def test_plurality_consensus_conf_and_rejects_order() -> None:
    found = [J("a", 8), J("b", 6), J("c", 8), J("d", -1), J("e", 8), J("f", 2)]
    result = vote(found)
    assert result.consensus == 8 and result.dropped is None
    assert result.conf == (3, 1, 1, 1)
    assert result.winner is not None and result.winner.judge == "a"  # first in --model order
    # dissenters first: the unparseable one, then farthest from 8 (2 before 6); then the rest
    # of the consensus group in judge order
    assert [j.judge for j in result.rejects] == ["d", "f", "b", "c", "e"]


def test_judge_priority_breaks_ties_inside_the_consensus() -> None:
    found = [J("a", 7), J("b", 7), J("c", 7), J("d", 3)]
    result = vote(found, priority=["c", "b"])
    assert result.winner is not None and result.winner.judge == "c"
    # unlisted judges follow the listed ones, in their own order
    assert [j.judge for j in result.rejects] == ["d", "b", "a"]
    assert vote(found, priority=["zz"]).winner == found[0]


def test_ties_and_no_agreement_are_dropped() -> None:
    assert vote([J("a", 7), J("b", 7), J("c", 3), J("d", 3), J("e", 5)]).dropped == TIE
    assert vote([J("a", 7), J("b", 7), J("c", 3), J("d", 3)]).consensus is None
    spread = vote([J("a", 1), J("b", 2), J("c", 3)])
    assert (spread.dropped, spread.conf, spread.winner, spread.rejects) == (
        NO_AGREEMENT,
        (1, 1, 1),
        None,
        (),
    )
    assert vote([J("a", 7), J("b", 7), J("c", 2)], min_agree=3).dropped == NO_AGREEMENT
    assert vote([J("a", 7), J("b", 7), J("c", 7), J("d", 2)], min_agree=3).consensus == 7
    with pytest.raises(ValueError, match="at least 2"):
        vote([J("a", 7)], min_agree=1)


def test_unparseable_never_forms_or_blocks_the_consensus() -> None:
    # three failures outnumber two agreeing judges: the failures are no opinion
    result = vote([J("a", -1), J("b", -1), J("c", 5), J("d", -1), J("e", 5)])
    assert result.consensus == 5 and result.conf == (3, 2)
    assert [j.judge for j in result.rejects] == ["a", "b", "d", "e"]
    # failures of the same size as the consensus group do not make a tie
    assert vote([J("a", -1), J("b", -1), J("c", 5), J("d", 5)]).consensus == 5
    # failures alone never agree
    assert vote([J("a", -1), J("b", -1), J("c", 4)]).dropped == NO_AGREEMENT


def test_scores_outside_integers_0_to_10_are_unparseable() -> None:
    assert [to_score(v) for v in (None, 7.0, 0.0, 10.0, 7.5, 11.0, -2.0, math.nan)] == [
        -1,
        7,
        0,
        10,
        -1,
        -1,
        -1,
        -1,
    ]


def test_format_judgment_matches_the_release_golden() -> None:
    assert (
        format_judgment("Correct.\n[Score: 9] and then some", 9)
        == "[Analysis]\nCorrect.\n[Score: 9]"
    )
    assert format_judgment("[Analysis]\n  Wrong year. [score: 2]", 2) == (
        "[Analysis]\nWrong year.\n[Score: 2]"
    )
    # an unparseable judgment keeps its words (a reject shows the broken form)
    assert format_judgment("no verdict here", None) == "[Analysis]\nno verdict here"
    shape = re.compile(r"\[Analysis\]\n.+\n\[Score: (\d+)\]", re.S)
    for row in read_jsonl(RELEASE / "sft-eval.jsonl"):
        assert shape.fullmatch(row["golden"])
    assert shape.fullmatch(format_judgment("Supported.\n\n[Score: 10]", 10))


# --- agreement statistics, by hand --------------------------------------------------------------


def test_fleiss_kappa_by_hand() -> None:
    # counts per unit (category 1, category 2): (3,0) (2,1) (0,3) (1,2); P_i = 1, 1/3, 1, 1/3,
    # P_bar = 2/3; both categories hold 6 of 12 ratings, P_e = 1/2; kappa = (2/3-1/2)/(1/2)
    assert fleiss_kappa([[1, 1, 1], [1, 1, 2], [2, 2, 2], [1, 2, 2]]) == pytest.approx(1 / 3)
    assert fleiss_kappa([[4, 4], [4, 4]]) is None  # one category: undefined
    assert fleiss_kappa([[1, 2, 3]]) is None


def test_agreement_stats_by_hand() -> None:
    units = [
        [J("a", 8), J("b", 8), J("c", 8)],  # consensus 8 by all
        [J("a", 5), J("b", 5), J("c", -1)],  # consensus 5, c failed
        [J("a", 1), J("b", 2), J("c", 3)],  # no agreement
        [J("a", 9), J("b", 4), J("c", 4)],  # consensus 4, a dissents
    ]
    stats = agreement_stats([(found, vote(found)) for found in units], ["a", "b", "c"])
    assert (stats["units"], stats["consensus"], stats["consensus_rate"]) == (4, 3, 0.75)
    assert stats["dropped"] == {"no-agreement": 1, "tie": 0}
    assert stats["consensus_size"] == {"2": 2, "3": 1}
    assert stats["conf"] == {"2,1": 2, "3": 1, "1,1,1": 1}
    assert (stats["judgments"], stats["unparseable"]) == (12, 1)
    assert stats["per_judge"]["a"]["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["per_judge"]["b"]["agreement"] == 1.0
    assert stats["per_judge"]["c"]["agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert stats["per_judge"]["c"]["unparseable"] == 1
    # categories -1, 1..9 over 4 units x 3 raters, computed as in test_fleiss_kappa_by_hand:
    # P_i = 1, 1/3, 0, 1/3 -> P_bar = 5/12; shares 8:3, 5:2, 4:2, 9,1,2,3,-1: 1 each of 12
    p_e = (9 + 4 + 4 + 5) / 144
    assert stats["fleiss_kappa"] == pytest.approx((5 / 12 - p_e) / (1 - p_e))
    assert stats["kappa_units"] == 4


# --- reading units, and errors that name file, line and field ----------------------------------


def test_read_pointwise_pairwise_and_long_prompt_rows(tmp_path: Path) -> None:
    judging = [
        {"role": "system", "content": "Judge against <K7Q> only. [Analysis] ... [Score: n]"},
        {"role": "user", "content": f"<context>\nfiller\n<K7Q>{CONTEXT}</K7Q>\n</context>"},
    ]
    path = write_jsonl(
        tmp_path / "in.jsonl",
        [
            {
                "id": "p",
                "context": CONTEXT,
                "prompt": QUESTION,
                "chosen": "1889.",
                "rejected": "1925.",
            },
            {"context": CONTEXT, "query": QUESTION, "answer": "1889.", "extra": 1},
            {
                "id": "s@8k",
                "context": CONTEXT,
                "question": QUESTION,
                "response": "1925.",
                "prompt_messages": judging,
                "tag": "K7Q",
                "length_bucket": "8k",
            },
            {
                "id": 7,
                "context": CONTEXT,
                "question": QUESTION,
                "response": "x",
                "prompt_template": judging,
            },
        ],
    )
    units = read_units(path).units
    assert [u.key for u in units[:2]] == ["p:chosen", "p:rejected"]
    assert [u.label for u in units[:2]] == ["chosen", "rejected"]
    assert units[0].group == units[1].group == "p"
    assert (units[2].question, units[2].response, units[2].row) == (QUESTION, "1889.", {"extra": 1})
    assert units[3].prompt == judging and units[3].prompt_kind == "judge"
    assert units[3].tag == "K7Q" and units[3].row["length_bucket"] == "8k"
    # the benchmark schema's prompt_template is a task prompt, whatever it opens with
    assert units[4].key == "7" and units[4].prompt_kind == "task"


@pytest.mark.parametrize(
    ("row", "field", "message"),
    [
        ({"question": QUESTION, "response": "x"}, "context", "missing or empty"),
        ({"context": CONTEXT, "response": "x"}, "question", "missing"),
        ({"context": CONTEXT, "question": QUESTION}, "response", "missing"),
        (
            {"context": CONTEXT, "question": QUESTION, "chosen": "a", "rejected": " "},
            "rejected",
            "",
        ),
        (
            {"context": CONTEXT, "question": QUESTION, "response": "x", "prompt_messages": [1]},
            "prompt_messages",
            "messages",
        ),
        (
            {
                "context": CONTEXT,
                "question": QUESTION,
                "response": "x",
                "judgments": [J("a", 3).to_json(), {"judge": "b", "score": 11, "explanation": ""}],
            },
            "judgments.1.score",
            "less than or equal to 10",
        ),
        (
            {
                "context": CONTEXT,
                "question": QUESTION,
                "response": "x",
                "judgments": [J("a", 3).to_json(), J("a", 4).to_json()],
            },
            "judgments",
            "twice",
        ),
        (
            {
                "context": CONTEXT,
                "question": QUESTION,
                "response": "x",
                "judgments": [{"judge": "a", "score": 4, "explanation": " "}],
            },
            "judgments.0.explanation",
            "empty",
        ),
    ],
)
def test_bad_rows_name_file_line_and_field(
    tmp_path: Path, row: dict[str, Any], field: str, message: str
) -> None:
    good = {"id": 1, "context": CONTEXT, "question": QUESTION, "response": "1889."}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(ItemError) as info:
        read_units(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, field)
    assert str(info.value).startswith(f"{path}:2: field '{field}'")
    assert message in info.value.message
    # --skip-invalid skips and counts it
    skipped = read_units(path, skip_invalid=True)
    assert [u.key for u in skipped.units] == ["1"] and len(skipped.skipped) == 1


def test_duplicate_ids_and_rows_are_located(tmp_path: Path) -> None:
    row = {"id": 1, "context": CONTEXT, "question": QUESTION, "response": "1889."}
    path = write_jsonl(tmp_path / "dup.jsonl", [row, {**row, "response": "other"}])
    with pytest.raises(
        ItemError, match=r"dup.jsonl:2: field 'id': unit '1' again \(first at .*:1\)"
    ):
        read_units(path)
    same = {k: v for k, v in row.items() if k != "id"}
    path = write_jsonl(tmp_path / "same.jsonl", [same, same])
    with pytest.raises(ItemError, match=r"same.jsonl:2: field 'key'"):
        read_units(path)


# --- judges that need no model: a scripted RewardModel -----------------------------------------


class Scripted(RewardModel):
    """Scores a response by a table keyed by (response, seed); counts its calls."""

    def __init__(self, table: dict[tuple[str, int | None], int | None], fail_on: str = "") -> None:
        self.table = table
        self.fail_on = fail_on
        self.calls: list[tuple[str, int | None]] = []
        self.name = "scripted"

    def rank(self, prompt: Any, responses: Sequence[str]) -> Verdict:
        raise NotImplementedError

    def score(self, prompt: Any, response: str) -> float:
        raise NotImplementedError

    def judge_score(
        self, prompt: Any, response: str, sampling: Sampling | None = None
    ) -> PointwiseJudgment:
        seed = sampling.seed if sampling is not None else None
        self.calls.append((response, seed))
        if response == self.fail_on:
            raise openai.APIConnectionError(request=httpx.Request("POST", "http://x"))
        assert prompt[0]["content"].startswith("<context>\n")  # the SHORT key context
        score = self.table.get((response, seed))
        if score is None:
            return PointwiseJudgment(None, f"seed {seed} found no verdict")
        return PointwiseJudgment(float(score), f"seed {seed} on {response}.\n[Score: {score}]")


def sampled(model: RewardModel, n: int = 3) -> list[Judge]:
    return [Judge(f"m#s{i}", model, Sampling(0.8, i)) for i in range(n)]


PAIR_ROWS = [
    {"id": "q1", "context": CONTEXT, "question": QUESTION, "chosen": "1889.", "rejected": "1925."},
    {
        "id": "q2",
        "context": "Oslo is Norway's capital.",
        "question": "Capital?",
        "chosen": "Oslo",
        "rejected": "Bergen",
    },
    {
        "id": "q3",
        "context": "Water boils at 100 C at sea level.",
        "question": "Boiling point?",
        "chosen": "100 C",
        "rejected": "90 C",
    },
]
TABLE: dict[tuple[str, int | None], int | None] = {
    ("1889.", 0): 9,
    ("1889.", 1): 9,
    ("1889.", 2): 8,  # consensus 9
    ("1925.", 0): 1,
    ("1925.", 1): None,
    ("1925.", 2): 1,  # consensus 1, one failure
    ("Oslo", 0): 10,
    ("Oslo", 1): 10,
    ("Oslo", 2): 10,  # consensus 10
    ("Bergen", 0): 2,
    ("Bergen", 1): 5,
    ("Bergen", 2): 7,  # no agreement
    ("100 C", 0): 6,
    ("100 C", 1): 6,
    ("100 C", 2): 3,  # consensus 6
    ("90 C", 0): 6,
    ("90 C", 1): 6,
    ("90 C", 2): 6,  # consensus 6: a tie between responses
}


def test_run_writes_outputs_the_loaders_accept(tmp_path: Path) -> None:
    units = read_units(write_jsonl(tmp_path / "in.jsonl", PAIR_ROWS)).units
    model = Scripted(TABLE)
    out = tmp_path / "run"
    outcome = run_vote(units, sampled(model), out, VoteSettings(save_to_disk=True))
    assert (outcome.judged, outcome.resumed, outcome.kept, outcome.errors) == (6, 0, 5, [])
    assert len(model.calls) == 18 and outcome.calls == 18

    judgments = read_jsonl(out / "judgments.jsonl")
    assert [r["key"] for r in judgments] == [u.key for u in units]
    failed = next(r for r in judgments if r["key"] == "q1:rejected")["judgments"][1]
    assert failed == {"judge": "m#s1", "score": -1, "explanation": "seed 1 found no verdict"}

    sft = load_release_rows(out / "sft.jsonl", SftRow)
    assert len(sft) == 5 and len(load_sft(out / "sft.jsonl").examples) == 5
    assert sft[0].golden == "[Analysis]\nseed 0 on 1889..\n[Score: 9]"
    prefs = load_release_rows(out / "preferences.jsonl", PreferenceRow)
    assert len(load_preferences(out / "preferences.jsonl", negatives=2).examples) == 5
    first = read_jsonl(out / "preferences.jsonl")[0]
    assert (first["scores"], first["conf"]) == ({"m#s0": 9, "m#s1": 9, "m#s2": 8}, [2, 1])
    assert first["chosen_model"] == "m#s0" and first["reject_models"] == ["m#s2", "m#s1"]
    assert prefs[0].rejects[0] == "[Analysis]\nseed 2 on 1889..\n[Score: 8]"
    second = read_jsonl(out / "preferences.jsonl")[1]
    assert second["reject_models"] == ["m#s1", "m#s2"]  # the failure first
    assert second["rejects"][0] == "[Analysis]\nseed 1 found no verdict"
    # the short key context rides along (train/data.py keeps it through truncation)
    assert first["context"] == CONTEXT and CONTEXT in first["chat_template"][-1]["content"]

    # benchmark rows: q1 (9 over 1) and q2's Oslo alone (Bergen dropped) and q3 (tie) give one
    items = load_items(out / "pairs.jsonl").items
    assert len(items) == 1
    assert items[0].tasktype == PAIRWISE and items[0].candidates == ["1889.", "1925."]
    assert items[0].extra["consensus_scores"] == [9, 1] and items[0].extra["label_agrees"]

    stats = json.loads((out / "agreement.json").read_text())
    assert stats["consensus"] == 5 and stats["dropped"] == {"no-agreement": 1, "tie": 0}
    assert stats["written"]["sft"] == 5 and stats["written"]["pairwise"] == 1
    # the save_to_disk copies read back through the same loaders
    assert len(load_release_rows(out / "preferences", PreferenceRow)) == 5
    assert len(load_items(out / "pairs").items) == 1


def test_best_of_n_from_pointwise_rows_and_long_prompts(tmp_path: Path) -> None:
    judging = [
        {"role": "system", "content": "Judge only the text inside <K7Q>.\n[Analysis]\n[Score: n]"},
        {"role": "user", "content": f"<context>\nnoise\n<K7Q>{CONTEXT}</K7Q>\nnoise\n</context>"},
    ]
    rows = [
        {
            "id": f"r{i}@8k",
            "context": CONTEXT,
            "question": QUESTION,
            "response": text,
            "prompt_messages": judging,
            "tag": "K7Q",
            "length_bucket": "8k",
            "insert_index": 1,
            "prompt_ctx_length": 8000,
            "judgments": [J("a", s).to_json(), J("b", s).to_json(), J("c", 0).to_json()],
        }
        for i, (text, s) in enumerate([("1925.", 2), ("1889.", 9), ("In the 1880s.", 6)])
    ]
    units = read_units(write_jsonl(tmp_path / "judged.jsonl", rows)).units
    out = tmp_path / "run"
    run_vote(units, None, out, VoteSettings())
    [item] = load_items(out / "pairs.jsonl").items
    assert item.tasktype == BEST_OF_N and item.subtype == "3" and item.length_bucket == "8k"
    assert item.candidates == ["1889.", "In the 1880s.", "1925."]
    assert item.candidate_scores == [9.0, 6.0, 2.0] and item.length == 8000
    assert item.prompt == judging[1:]  # the task, without the judge's rubric
    pref = read_jsonl(out / "preferences.jsonl")[1]
    # release style: the long judging prompt with the response appended, as short2long builds it
    assert pref["chat_template"] == with_response(judging, "1889.")
    assert (pref["insert_index"], pref["prompt_ctx_length"], pref["ctx_length"]) == (1, 8000, "8k")
    assert pref["rejects"] == [
        "[Analysis]\nc thinks so.\n[Score: 0]",
        "[Analysis]\nb thinks so.\n[Score: 9]",
    ]
    assert len(load_preferences(out / "preferences.jsonl", negatives=2).examples) == 3


def test_rerun_resumes_without_duplicates_and_repairs_a_torn_line(tmp_path: Path) -> None:
    units = read_units(write_jsonl(tmp_path / "in.jsonl", PAIR_ROWS)).units
    out = tmp_path / "run"
    first = Scripted(TABLE)
    run_vote(units[:2], sampled(first), out, VoteSettings())
    assert len(first.calls) == 6
    with open(out / "judgments.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"key": "q2:chosen", "judgm')  # a run killed mid-line
    second = Scripted(TABLE)
    outcome = run_vote(units, sampled(second), out, VoteSettings())
    assert (outcome.resumed, outcome.judged) == (2, 4)
    assert sorted({c[0] for c in second.calls}) == ["100 C", "90 C", "Bergen", "Oslo"]
    keys = [r["key"] for r in read_jsonl(out / "judgments.jsonl")]
    assert sorted(keys) == sorted(u.key for u in units) and len(set(keys)) == len(keys)
    assert len(read_jsonl(out / "sft.jsonl")) == 5  # rebuilt from the judgments, not appended twice
    third = Scripted(TABLE)
    assert run_vote(units, sampled(third), out, VoteSettings()).judged == 0 and not third.calls
    # other judges never mix into a run's judgments
    with pytest.raises(VoteMismatchError, match="m#s0, m#s1, m#s2"):
        run_vote(units, sampled(Scripted(TABLE), 2), out, VoteSettings())


def test_failed_calls_are_reported_and_retried(tmp_path: Path) -> None:
    units = read_units(write_jsonl(tmp_path / "in.jsonl", PAIR_ROWS[:1])).units
    out = tmp_path / "run"
    outcome = run_vote(units, sampled(Scripted(TABLE, fail_on="1925.")), out, VoteSettings())
    assert outcome.judged == 1 and len(outcome.errors) == 1
    assert "q1:rejected" in outcome.errors[0] and "APIConnectionError" in outcome.errors[0]
    assert [r["key"] for r in read_jsonl(out / "judgments.jsonl")] == ["q1:chosen"]
    healed = Scripted(TABLE)
    assert run_vote(units, sampled(healed), out, VoteSettings()).judged == 1
    assert [c[0] for c in healed.calls] == ["1925."] * 3


def test_judge_plan_names_samples_and_refuses_what_cannot_vote() -> None:
    plan = judge_plan(["default"], samples=3, temperature=0.8, seed=5)
    assert [(n, s) for n, s, _ in plan] == [
        ("default#s0", "default"),
        ("default#s1", "default"),
        ("default#s2", "default"),
    ]
    assert [p.seed for _, _, p in plan if p is not None] == [5, 6, 7]
    two = judge_plan(["a", "openai:m@http://h:1/v1"])
    assert [(n, p) for n, _, p in two] == [("a", None), ("openai:m@http://h:1/v1", None)]
    with pytest.raises(ValueError, match="greedy samples"):
        judge_plan(["default"], samples=3)
    with pytest.raises(ValueError, match="given twice"):
        judge_plan(["a", "a"])
    with pytest.raises(ValueError, match="at least two judges"):
        judge_plan(["default"])


def test_cli_from_judgments_and_flag_errors(tmp_path: Path) -> None:
    units = read_units(write_jsonl(tmp_path / "in.jsonl", PAIR_ROWS)).units
    run_vote(units, sampled(Scripted(TABLE)), tmp_path / "first", VoteSettings())
    runner = CliRunner()
    out = tmp_path / "again"
    result = runner.invoke(
        synth_app,
        [
            "vote",
            "--from-judgments",
            str(tmp_path / "first" / "judgments.jsonl"),
            "--out",
            str(out),
            "--judge-priority",
            "m#s2",
            "--min-agree",
            "3",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "consensus: 2 of 6 units" in result.output and "Fleiss' kappa" in result.output
    # three agreeing judges are asked for: "Oslo" (10) and "90 C" (6) remain, m#s2 speaks
    rows = read_jsonl(out / "sft.jsonl")
    assert [(r["answer"], r["judge"], r["score"]) for r in rows] == [
        ("Oslo", "m#s2", 10),
        ("90 C", "m#s2", 6),
    ]
    assert rows[0]["golden"] == "[Analysis]\nseed 2 on Oslo.\n[Score: 10]"
    unknown = runner.invoke(
        synth_app,
        [
            "vote",
            "--from-judgments",
            str(out / "judgments.jsonl"),
            "--out",
            str(out),
            "--judge-priority",
            "gpt",
        ],
    )
    assert unknown.exit_code == 2 and "names 'gpt', which is not a judge" in unknown.output
    both = runner.invoke(synth_app, ["vote", "--in", "x", "--from-judgments", "y", "--out", "z"])
    assert both.exit_code == 2 and "either --in" in both.output
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"context": CONTEXT, "response": "x"}])
    located = runner.invoke(synth_app, ["vote", "--from-judgments", str(bad), "--out", str(out)])
    assert located.exit_code == 2 and f"{bad}:1: field 'question'" in located.output


# --- the judges' text through the reward-model interface ---------------------------------------


def test_hf_judge_returns_its_text_and_samples_by_seed(tiny_causal: str) -> None:
    rm = load_reward_model(tiny_causal, RewardModelOptions(kind="judge", max_new_tokens=12))
    prompt = outputs.short_prompt(CONTEXT, QUESTION)
    greedy = rm.judge_score(prompt, "1889.")
    assert greedy.text and greedy.score == parse_score(greedy.text)
    assert math.isnan(rm.score(prompt, "1889.")) == (greedy.score is None)
    state = torch.random.get_rng_state()
    a = rm.judge_score(prompt, "1889.", Sampling(1.5, seed=1))
    b = rm.judge_score(prompt, "1889.", Sampling(1.5, seed=1))
    c = rm.judge_score(prompt, "1889.", Sampling(1.5, seed=2))
    assert a.text == b.text and a.text != c.text and a.text != greedy.text
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is left alone
    with pytest.raises(ValueError, match=">= 0"):
        Sampling(-1.0)


def test_base_judge_score_wraps_score_and_refuses_to_sample() -> None:
    class Fixed(Scripted):
        def score(self, prompt: Any, response: str) -> float:
            return math.nan if response == "?" else 4.0

    model = Fixed({})
    assert RewardModel.judge_score(model, [], "x") == PointwiseJudgment(4.0, "")
    assert RewardModel.judge_score(model, [], "?").score is None
    with pytest.raises(ValueError, match="does not sample"):
        RewardModel.judge_score(model, [], "x", Sampling(0.7, 1))


def test_openai_judge_sends_sampling_and_returns_the_text() -> None:
    sent: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        reply = {"role": "assistant", "content": "Matches the context.\n[Score: 8]"}
        return httpx.Response(
            200,
            json={
                "id": "x",
                "object": "chat.completion",
                "created": 0,
                "model": "m",
                "choices": [{"index": 0, "message": reply, "finish_reason": "stop"}],
            },
        )

    judge = OpenAIJudge("m", "http://test/v1", max_tokens=32)
    judge._client = openai.OpenAI(
        base_url="http://test/v1",
        api_key="x",
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
    )
    found = judge.judge_score(outputs.short_prompt(CONTEXT, QUESTION), "1889.", Sampling(0.7, 3))
    assert found == PointwiseJudgment(8.0, "Matches the context.\n[Score: 8]")
    assert (sent[0]["temperature"], sent[0]["seed"], sent[0]["max_tokens"]) == (0.7, 3, 32)
    assert judge.score(outputs.short_prompt(CONTEXT, QUESTION), "1889.") == 8.0
    assert (sent[1]["temperature"], sent[1]["seed"]) == (0.0, 0)  # eval's request, unchanged


@pytest.mark.integration
def test_openai_judge_text_from_a_real_server(llama_server: str) -> None:
    judge = OpenAIJudge("SmolLM2-135M-Instruct", llama_server, max_tokens=24)
    try:
        found = judge.judge_score(
            outputs.short_prompt(CONTEXT, QUESTION), "1889.", Sampling(0.8, 1)
        )
    finally:
        judge.close()
    assert found.text.strip() and found.score == parse_score(found.text)


# --- the default model as three sampled judges, end to end -------------------------------------


@pytest.fixture()
def one_torch_thread() -> Iterator[None]:
    """Run torch on one thread: on a CPU shared with other jobs its OpenMP threads spin-wait on
    each other (48 new tokens of the default model: ~55 s on 2 threads under a load of 4, ~5 s
    on 1), which would make this test's time depend on its neighbours.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.integration
@pytest.mark.usefixtures("one_torch_thread")
def test_default_model_as_three_sampled_judges(tmp_path: Path, default_model_path: str) -> None:
    rows = [
        PAIR_ROWS[0],
        {
            "id": "n1",
            "context": "Oslo is the capital of Norway.",
            "question": "Capital of Norway?",
            "response": "Oslo.",
        },
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "run"
    args = [
        "vote",
        "--in",
        str(source),
        "--out",
        str(out),
        "--model",
        default_model_path,
        "--samples",
        "3",
        "--temperature",
        "0.8",
        "--max-new-tokens",
        "16",
    ]
    result = CliRunner().invoke(synth_app, args)
    assert result.exit_code == 0, result.output
    judged = read_jsonl(out / "judgments.jsonl")
    assert [r["key"] for r in judged] == ["q1:chosen", "q1:rejected", "n1"]
    names = [f"{default_model_path}#s{i}" for i in range(3)]
    for row in judged:
        assert [j["judge"] for j in row["judgments"]] == names
        for j in row["judgments"]:
            assert -1 <= j["score"] <= 10 and j["explanation"].strip()
            assert j["score"] == to_score(parse_score(j["explanation"]))
        assert len({j["explanation"] for j in row["judgments"]}) > 1  # samples differ
    stats = json.loads((out / "agreement.json").read_text())
    assert stats["units"] == 3 and stats["judgments"] == 9
    sft = read_jsonl(out / "sft.jsonl")
    assert len(sft) == stats["consensus"]
    again = CliRunner().invoke(synth_app, args)
    assert again.exit_code == 0 and "0 judged now, 3 resumed" in again.output
    assert read_jsonl(out / "judgments.jsonl") == judged


def test_forced_scores_round_trip_and_are_counted(tmp_path: Path, tiny_causal: str) -> None:
    rows = [
        {
            "id": "q1",
            "context": "The ferry leaves at 9.",
            "question": "When does the ferry leave?",
            "chosen": "At 9.",
            "rejected": "At 7.",
        }
    ]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "run"
    args = ["vote", "--in", str(source), "--out", str(out), "--model", tiny_causal, "--samples",
            "3", "--temperature", "0.9", "--max-new-tokens", "6", "--force-score"]  # fmt: skip
    result = CliRunner().invoke(synth_app, args)
    assert result.exit_code == 0, result.output
    judged = read_jsonl(out / "judgments.jsonl")
    scores = [j for row in judged for j in row["judgments"]]
    # a random model never writes [Score: n]: every score was read by likelihood, none is -1
    assert len(scores) == 6 and all(j["forced"] and 0 <= j["score"] <= 10 for j in scores)
    assert all(j["explanation"].endswith(f"[Score: {j['score']}]") for j in scores)
    stats = json.loads((out / "agreement.json").read_text())
    assert (stats["forced"], stats["unparseable"]) == (6, 0)
    assert sum(e["forced"] for e in stats["per_judge"].values()) == 6
    # voting again from the judgments file keeps the mark
    again = tmp_path / "again"
    redo = ["vote", "--from-judgments", str(out / "judgments.jsonl"), "--out", str(again)]
    assert CliRunner().invoke(synth_app, redo).exit_code == 0
    assert json.loads((again / "agreement.json").read_text())["forced"] == 6

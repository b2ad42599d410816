"""Issue 7's promise end to end: from a folder of short QA pairs and the built-in text, two
commands (`synth short2long`, `synth vote`) write Stage I and Stage II files that the authors'
row format and `longrm train` both accept, and print agreement statistics.

The judges are the default model sampled three times (real generation); 135M parameters rarely
write `[Score: n]`, so `--force-score` reads their likeliest score after their own text. The
trainers then take one step each on the tiny model (reading the files is what is tested).

`synth vote` is a thin command over `longrm.synth.vote_job.run_vote_job`: the library call is
tested here on its own, and its reproduce line resumes the same run from the command line.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longrm.cli import app
from longrm.cli_synth import synth_app
from longrm.items import PreferenceRow, SftRow, load_release_rows
from longrm.options import RewardModelOptions, flag_name, option_fields
from longrm.synth.units import ReadResult
from longrm.synth.vote_job import (
    JUDGE_OPTIONS,
    VoteInputError,
    VoteJob,
    read_job_units,
    run_vote_job,
)

QA = [
    {
        "id": "bakery",
        "context": "The Harbour Street bakery opens at 7 am on weekdays and at 9 am on Saturdays.",
        "question": "When does the bakery open on Saturdays?",
        "chosen": "It opens at 9 am on Saturdays.",
        "rejected": "It opens at 7 am on Saturdays.",
    },
    {
        "id": "garden",
        "context": "Marta planted 12 tomato plants in April and 3 more in May.",
        "question": "How many tomato plants did Marta plant?",
        "chosen": "15 tomato plants.",
        "rejected": "12 tomato plants.",
    },
]
FAST = ["--learning_rate", "1e-3", "--warmup_steps", "0", "--save_strategy", "no",
        "--max_steps", "1", "--max_length", "2048"]  # fmt: skip


@pytest.mark.integration
def test_short_qa_folder_to_training_files(
    tmp_path: Path, default_model_path: str, tiny_causal: str
) -> None:
    folder = tmp_path / "short-qa"
    folder.mkdir()
    (folder / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA))
    long = tmp_path / "long.jsonl"
    runner = CliRunner()
    padded = runner.invoke(
        app, ["synth", "short2long", "--in", str(folder), "--out", str(long),
              "--lengths", "1k", "--seed", "0"],
    )  # fmt: skip
    assert padded.exit_code == 0, padded.output
    rows = [json.loads(line) for line in long.read_text().splitlines()]
    assert len(rows) == 2 and all(r["length_error"] <= 0 for r in rows)
    assert all(f"<{r['tag']}>{r['context']}</{r['tag']}>" in r["prompt_messages"][1]["content"]
               for r in rows)  # fmt: skip

    voted = tmp_path / "voted"
    result = runner.invoke(
        app, ["synth", "vote", "--in", str(long), "--out", str(voted), "--model",
              default_model_path, "--samples", "3", "--temperature", "0.8",
              "--max-new-tokens", "12", "--force-score"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Fleiss' kappa" in result.output and "consensus:" in result.output
    stats = json.loads((voted / "agreement.json").read_text())
    assert stats["units"] == 4 and stats["judgments"] == 12 and stats["unparseable"] == 0
    sft = load_release_rows(voted / "sft.jsonl", SftRow)
    prefs = load_release_rows(voted / "preferences.jsonl", PreferenceRow)
    assert len(sft) == stats["consensus"] > 0 and len(prefs) > 0
    # the long padded prompt is what the training rows hold, the judgment what they teach
    tags = [f"<{r['tag']}>" for r in rows]
    assert all(any(t in m.content for t in tags for m in s.chat_template) for s in sft)
    assert all(s.golden.rstrip().endswith("]") and "[Score: " in s.golden for s in sft)

    for stage, data, extra in (
        ("sft", voted / "sft.jsonl", []),
        ("align", voted / "preferences.jsonl", ["--negatives", "1"]),
    ):
        out = tmp_path / stage
        trained = runner.invoke(
            app, ["train", stage, "--model", tiny_causal, "--data", str(data),
                  "--out", str(out), *FAST, *extra],
        )  # fmt: skip
        assert trained.exit_code == 0, trained.output
        record = json.loads((out / "longrm-train.json").read_text())
        assert record["data"]["rows"] == len(sft if stage == "sft" else prefs)
        assert record["data"]["skipped"] == 0


def _write_qa(path: Path, rows: list[dict[str, str]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_vote_job_in_process_then_resumed_by_its_reproduce_line(
    tmp_path: Path, tiny_causal: str
) -> None:
    rows = _write_qa(tmp_path / "qa.jsonl", QA)
    job = VoteJob(
        out=tmp_path / "voted",
        rows=rows,
        models=(tiny_causal,),
        samples=3,
        temperature=0.9,
        seed=4,
        judge_options=RewardModelOptions(max_new_tokens=6, force_score=True),
    )
    seen: list[ReadResult] = []
    starts: list[tuple[int, int]] = []
    result = run_vote_job(job, on_read=seen.append, on_start=lambda t, d: starts.append((t, d)))
    outcome = result.outcome
    assert [len(r.units) for r in seen] == [4] and starts == [(4, 0)]
    assert (outcome.judged, outcome.resumed, outcome.errors, result.skipped) == (4, 0, [], [])
    judged = [json.loads(line) for line in (job.out / "judgments.jsonl").read_text().splitlines()]
    assert [r["key"] for r in judged] == [
        "bakery:chosen", "bakery:rejected", "garden:chosen", "garden:rejected"
    ]  # fmt: skip
    assert all(
        [j["judge"] for j in r["judgments"]] == [f"{tiny_causal}#s{i}" for i in range(3)]
        and all(j["forced"] for j in r["judgments"])
        for r in judged
    )
    assert outcome.stats["units"] == 4 and outcome.stats["forced"] == 12
    assert result.argv == [
        "--model", tiny_causal, "--in", str(rows), "--out", str(job.out), "--samples", "3",
        "--temperature", "0.9", "--seed", "4", "--max-new-tokens", "6", "--force-score",
    ]  # fmt: skip
    # the command line the job prints finds the same run and resumes all of it
    again = CliRunner().invoke(app, ["synth", "vote", *result.argv])
    assert again.exit_code == 0, again.output
    assert "0 judged now, 4 resumed" in again.output
    assert f"reproduce: longrm synth vote {shlex.join(result.argv)}" in again.output


def test_vote_job_refuses_bad_inputs_before_any_model_loads(
    tmp_path: Path, tiny_scalar: str
) -> None:
    rows = _write_qa(tmp_path / "qa.jsonl", [QA[0], {"id": "x", "context": "c", "chosen": "a"}])
    with pytest.raises(VoteInputError, match="either --in") as both:
        read_job_units(VoteJob(out=tmp_path, rows=rows, from_judgments=rows))
    assert not both.value.skippable
    with pytest.raises(VoteInputError, match=rf"{rows}:2: field 'question'") as bad:
        read_job_units(VoteJob(out=tmp_path, rows=rows))
    assert bad.value.skippable
    read = read_job_units(VoteJob(out=tmp_path, rows=rows, skip_invalid=True))
    assert len(read.units) == 2 and [(e.line, e.field) for e in read.skipped] == [(2, "question")]
    with pytest.raises(VoteInputError, match="--min-agree 1"):
        read_job_units(VoteJob(out=tmp_path, rows=rows, min_agree=1))
    scalar = VoteJob(out=tmp_path / "s", rows=_write_qa(tmp_path / "one.jsonl", QA[:1]),
                     models=(tiny_scalar,), samples=2, temperature=0.5)  # fmt: skip
    with pytest.raises(ValueError, match="is a scalar reward model: voting needs judges"):
        run_vote_job(scalar)
    assert not (tmp_path / "s").exists()  # refused before the run folder was made


def test_vote_judge_flags_are_the_declared_options() -> None:
    import typer.main

    command = typer.main.get_command(synth_app).commands["vote"]  # type: ignore[attr-defined]
    by_name = {p.name: p for p in command.params}
    declared = [f for f in option_fields() if f.name in JUDGE_OPTIONS and flag_name(f)]
    assert {f.name for f in declared} == set(JUDGE_OPTIONS) - {"force_score"}
    for f in declared:
        param = by_name[f.name]
        assert flag_name(f) in param.opts and param.help == f.metadata["help"]
        assert param.default == (1024 if f.name == "max_new_tokens" else f.default)
    # the options voting fixes (kind, verdict...) have no flag here
    others = {f.name for f in option_fields()} - set(JUDGE_OPTIONS)
    assert others and not others & set(by_name)
    assert "--force-score" in by_name["force_score"].opts

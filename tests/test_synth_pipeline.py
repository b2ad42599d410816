"""Issue 7's promise end to end: from a folder of short QA pairs and the built-in text, two
commands (`synth short2long`, `synth vote`) write Stage I and Stage II files that the authors'
row format and `longrm train` both accept, and print agreement statistics.

The judges are the default model sampled three times (real generation); 135M parameters rarely
write `[Score: n]`, so `--force-score` reads their likeliest score after their own text. The
trainers then take one step each on the tiny model (reading the files is what is tested).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longrm.cli import app
from longrm.items import PreferenceRow, SftRow, load_release_rows

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

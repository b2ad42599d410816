"""The trainers on a tiny random Llama: they overfit a handful of rows, chain Stage II to
Stage I, read the authors' release rows, resume, and save models that `longrm eval` loads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import OFFICIAL, RELEASE
from typer.testing import CliRunner

from longrm.cli import app
from longrm.train.config import AlignConfig, ConfigError, DisrmConfig, SftConfig, parse_config
from longrm.train.stages import STAGES

SHORT = OFFICIAL.parent / "short"
FAST = ["--learning_rate", "1e-2", "--warmup_steps", "0", "--save_strategy", "no", "--seed", "0"]


def _train(stage: str, *args: str) -> dict[str, Any]:
    cls, run = STAGES[stage]
    return run(parse_config(cls, list(args)))


def _judging_rows(n: int) -> list[dict[str, Any]]:
    """Short release-style rows: a judging chat, a consensus judgment and two rejected ones."""
    rows = []
    for i in range(n):
        city = ["Oslo", "Lima", "Pune", "Kyiv"][i % 4]
        user = (
            f"<context>\nFiller line {i}. <LD>The archive is kept in {city}.</LD> More filler.\n"
            f"</context>\n<prompt>Where is the archive kept?</prompt>\n"
            f"<response>It is kept in {city}.</response>"
        )
        rows.append(
            {
                "chat_template": [
                    {"role": "system", "content": "Judge the response."},
                    {"role": "user", "content": user},
                ],
                "golden": f"[Analysis]\nThe context says {city}.\n[Score: 9]",
                "chosen": f"[Analysis]\nThe context says {city}.\n[Score: 9]",
                "rejects": ["[Analysis]\nNo idea.\n[Score: 2]", "[Analysis]\nWrong.\n[Score: 1]"],
            }
        )
    return rows


@pytest.fixture(scope="module")
def judging_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rows") / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in _judging_rows(4)))
    return path


@pytest.fixture(scope="module")
def stage1(tiny_causal: str, judging_rows: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stage1")
    record = _train(
        "sft", "--model", tiny_causal, "--data", str(judging_rows), "--out", str(out),
        "--max_steps", "24", "--per_device_train_batch_size", "2", *FAST,
    )  # fmt: skip
    assert record["steps"] == 24
    return out


def test_sft_overfits_and_saves_a_loadable_judge(stage1: Path) -> None:
    from transformers import AutoModelForCausalLM

    record = json.loads((stage1 / "longrm-train.json").read_text())
    assert record["stage"] == "sft"
    assert record["final_loss"] < 0.3 * record["first_loss"]
    assert record["data"]["formats"] == {"release-sft": 4}
    assert record["tokens"] > 0 and all("tokens_per_s" in h for h in record["log"])
    AutoModelForCausalLM.from_pretrained(stage1)


def test_align_from_stage1_reaches_full_preference_accuracy(
    stage1: Path, judging_rows: Path, tmp_path: Path
) -> None:
    out = tmp_path / "stage2"
    record = _train(
        "align", "--from", str(stage1), "--data", str(judging_rows), "--out", str(out),
        "--max_steps", "16", "--per_device_train_batch_size", "2", *FAST,
    )  # fmt: skip
    assert record["started_from"]["model"] == str(stage1)
    assert record["started_from"]["record"]["stage"] == "sft"
    assert record["final_loss"] < record["first_loss"]
    assert record["log"][-1]["accuracy"] == 1.0
    saved = json.loads((out / "longrm-train.json").read_text())
    assert saved["started_from"]["record"]["data"]["path"] == str(judging_rows)


@pytest.mark.parametrize("loss", ["simpo", "dpo"])
def test_simpo_and_dpo_train(
    tiny_causal: str, judging_rows: Path, tmp_path: Path, loss: str
) -> None:
    record = _train(
        "align", "--model", tiny_causal, "--data", str(judging_rows), "--out", str(tmp_path),
        "--loss", loss, "--negatives", "1", "--max_steps", "12",
        "--per_device_train_batch_size", "2", *FAST,
    )  # fmt: skip
    assert record["loss"] == loss
    assert record["final_loss"] < record["first_loss"]


def test_disrm_round_trips_through_eval(tiny_causal: str, tmp_path: Path) -> None:
    out = tmp_path / "disrm"
    record = _train(
        "disrm", "--model", tiny_causal, "--data", str(SHORT), "--out", str(out),
        "--max_steps", "30", "--per_device_train_batch_size", "5", "--no_lora", *FAST,
    )  # fmt: skip
    assert record["log"][-1]["accuracy"] == 1.0
    assert record["data"]["formats"] == {"benchmark-responses": 5}
    run = tmp_path / "eval"
    result = CliRunner().invoke(
        app, ["eval", "--model", str(out), "--bench", str(SHORT), "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    results = json.loads((run / "results.json").read_text())
    assert results["settings"]["kind"] == "scalar"
    assert results["pairwise"]["accuracy"] == 1.0  # trained on these very pairs


def test_seed_decides_the_new_head_whatever_ran_before(tiny_causal: str, tmp_path: Path) -> None:
    args = ["--model", tiny_causal, "--data", str(SHORT), "--max_steps", "1", *FAST]
    first = _train("disrm", *args, "--out", str(tmp_path / "a"))
    torch.rand(1000)  # the process's random state moves on between the runs
    again = _train("disrm", *args, "--out", str(tmp_path / "b"))
    assert first["log"][0]["loss"] == again["log"][0]["loss"]


def test_disrm_packed_trains_as_one_sequence_per_answer(tiny_causal: str, tmp_path: Path) -> None:
    runs = {
        flag: _train(
            "disrm",
            "--model",
            tiny_causal,
            "--data",
            str(SHORT),
            "--out",
            str(tmp_path / flag),
            "--max_steps",
            "3",
            "--per_device_train_batch_size",
            "2",
            flag,
            *FAST,
        )  # fmt: skip
        for flag in ("--shared_prefix", "--no_shared_prefix")
    }
    packed, separate = runs["--shared_prefix"], runs["--no_shared_prefix"]
    assert packed["config"]["shared_prefix"] and not separate["config"]["shared_prefix"]
    assert [h["loss"] for h in packed["log"]] == pytest.approx(
        [h["loss"] for h in separate["log"]], abs=1e-4
    )
    assert packed["tokens"] < separate["tokens"]  # the prompt read once per pair


def test_disrm_with_lora_merges_into_a_plain_model(tiny_causal: str, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    _train(
        "disrm", "--model", tiny_causal, "--data", str(SHORT), "--out", str(tmp_path),
        "--max_steps", "2", *FAST,
    )  # fmt: skip
    assert not (tmp_path / "adapter_config.json").exists()
    AutoModelForSequenceClassification.from_pretrained(tmp_path)


def test_release_rows_are_cut_to_fit_and_train(tiny_causal: str, tmp_path: Path) -> None:
    record = _train(
        "sft", "--model", tiny_causal, "--data", str(RELEASE / "sft-test.jsonl"),
        "--out", str(tmp_path / "sft"), "--max_length", "2048", "--max_steps", "2", *FAST,
    )  # fmt: skip
    assert record["data"]["rows"] == 2 and record["data"]["truncated_rows"] == 2
    assert record["data"]["cut_tokens"] > 10_000
    record = _train(
        "align", "--model", tiny_causal, "--data", str(RELEASE / "preference-eval.jsonl"),
        "--out", str(tmp_path / "align"), "--max_length", "16384", "--max_steps", "1",
        "--skip_invalid", *FAST,
    )  # fmt: skip
    data = record["data"]
    assert data["formats"] == {"release-preference": 2}
    assert data["rows"] == 2 and data["rows"] - data["skipped"] >= 1


def test_resume_continues_from_the_last_checkpoint(
    tiny_causal: str, judging_rows: Path, tmp_path: Path
) -> None:
    common = ["--model", tiny_causal, "--data", str(judging_rows), "--out", str(tmp_path),
              "--save_steps", "2", "--learning_rate", "1e-3", "--seed", "0"]  # fmt: skip
    _train("sft", *common, "--max_steps", "2")
    record = _train("sft", *common, "--max_steps", "4", "--resume")
    assert record["resumed_from"] is not None and record["resumed_from"].endswith("checkpoint-2")
    assert record["steps"] == 4
    assert [h["step"] for h in record["log"]][-2:] == [3, 4]


def test_config_file_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("beta: 3.0\nnegatives: 4\nout: somewhere\ndata: rows.jsonl\nfrom: stage1\n")
    config = parse_config(AlignConfig, ["--config", str(path), "--negatives", "3"])
    assert (config.beta, config.negatives, config.output_dir) == (3.0, 3, "somewhere")
    assert config.start_from == "stage1" and config.shared_prefix is True
    assert (config.gamma, config.nll_weight, config.loss) == (0.5, 0.05, "logo")
    path.write_text("betta: 3.0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: unknown field\(s\) \['betta'\]"):
        parse_config(AlignConfig, ["--config", str(path)])
    with pytest.raises(ConfigError, match="--data"):
        parse_config(SftConfig, ["--out", "x"])
    disrm = parse_config(DisrmConfig, ["--data", "d", "--out", "o"])
    assert disrm.lora is True
    # what learned on the default model: LoRA r 16, alpha 32, lr 2e-4, 4 pairs a step, one epoch
    assert (disrm.lora_r, disrm.lora_alpha, disrm.learning_rate) == (16, 32, 2e-4)
    assert disrm.per_device_train_batch_size * disrm.gradient_accumulation_steps == 4
    assert disrm.num_train_epochs == 1 and disrm.activation_checkpointing is False
    assert disrm.shared_prefix is True
    assert parse_config(DisrmConfig, ["--data", "d", "--out", "o", "--lora_r", "8"]).lora_r == 8


def test_cli_reports_bad_rows_with_file_and_line(tiny_causal: str, tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"chat_template": [], "golden": "x"}) + "\n")
    result = CliRunner().invoke(
        app, ["train", "sft", "--model", tiny_causal, "--data", str(rows), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "rows.jsonl:1" in result.output and "chat_template" in result.output


def test_a_judge_trained_on_benchmark_judgments_round_trips_through_eval(
    tiny_causal: str, tmp_path: Path
) -> None:
    bench = tmp_path / "bench"
    runner = CliRunner()
    built = runner.invoke(app, [
        "bench", "build", "--out", str(bench), "--lengths", "512", "--formats", "pairwise",
        "--tasks", "single_fact,citation", "--seed", "5",
    ])  # fmt: skip
    assert built.exit_code == 0, built.output
    judge = tmp_path / "judge"
    record = _train(
        "sft", "--model", tiny_causal, "--data", str(bench), "--out", str(judge),
        "--max_steps", "4", "--per_device_train_batch_size", "2", *FAST,
    )  # fmt: skip
    assert record["data"]["formats"] == {"benchmark-judgments": 4}  # 2 items x both orders
    run = tmp_path / "eval"
    result = runner.invoke(app, [
        "eval", "--model", str(judge), "--kind", "judge", "--verdict", "logprob",
        "--bench", str(bench), "--out", str(run),
    ])  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((run / "results.json").read_text())
    assert results["model"]["name"] == str(judge) and results["settings"]["kind"] == "judge"
    assert results["n_items"] == 2 and results["error_rate"] == 0.0

"""Scale-out: a real 2-process `accelerate launch` trains like one process with the same global
batch, the shipped accelerate/training configs parse, and shared-prefix packing refuses the
parallelisms that only take causal masks (context parallelism, Ulysses).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import free_port

from longrm.train.config import AlignConfig, DisrmConfig, SftConfig, TrainConfig, parse_config
from longrm.train.parallel import check_parallel_config, parallel_sizes

ROOT = Path(__file__).resolve().parents[1]
ACCELERATE = ROOT / "configs" / "accelerate"
TRAIN = ROOT / "configs" / "train"

# Four preference rows in the authors' release format, of different lengths so that their losses
# differ (a run that dropped a process's rows would log a different mean).
ROWS = [
    {
        "chat_template": [
            {"role": "system", "content": "Judge the response against the context."},
            {
                "role": "user",
                "content": f"<context>{'The old tower stands by the river. ' * (i + 1)}"
                f"Tower {i} is {10 + i} m tall.</context>\nHow tall is tower {i}?\n"
                f"Response: {10 + i} m.",
            },
        ],
        "chosen": f"[Analysis] The context gives {10 + i} m, as the response says. [Score: 9]",
        "rejects": [
            "[Analysis] The context does not say. [Score: 2]",
            f"[Analysis] The tower is {20 + i} m, so the response is wrong. [Score: 3]",
        ],
    }
    for i in range(4)
]


def _train_args(
    trainer: str, model: str, data: Path, out: Path, per_device_batch: int
) -> list[str]:
    return [
        "train", trainer, "--model", model, "--data", str(data), "--out", str(out),
        "--use_cpu", "--per_device_train_batch_size", str(per_device_batch),
        "--max_steps", "3", "--learning_rate", "1e-3", "--seed", "0",
        "--train_sampling_strategy", "sequential", "--activation_checkpointing", "false",
        "--save_strategy", "steps", "--save_steps", "3", "--logging_steps", "1",
    ]  # fmt: skip


def _run(command: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command)}\n{_first_error(done.stderr)}")


def _first_error(stderr: str) -> str:
    """Return the end of the first traceback (each process prints one before torchrun's
    summary), down to its exception line.
    """
    lines = stderr.splitlines()
    start = next((i for i, line in enumerate(lines) if "Traceback" in line), 0)
    for end in range(start + 1, len(lines)):
        if re.match(r"^(\[rank\d+\]: )?[\w.]+(Error|Exception)\b", lines[end]):
            return "\n".join(lines[max(start, end - 24) : end + 1])
    return "\n".join(lines[-40:])


def _record(out: Path) -> dict[str, Any]:
    return dict(json.loads((out / "longrm-train.json").read_text(encoding="utf-8")))


@pytest.mark.parametrize("trainer", ["align", "disrm"])
def test_two_processes_train_like_one_with_the_same_global_batch(
    trainer: str, tiny_causal: str, tmp_path: Path
) -> None:
    """DDP over 2 CPU processes with 1 row each must log the losses of 1 process with 2 rows.

    Both trainers pack a row's answers after one copy of its prompt; `train disrm` reads the
    rewards through a hook on the score head, which must see the model inside DDP's wrapper.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    data = tmp_path / "prefs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    one, two = tmp_path / "one", tmp_path / "two"
    _run([sys.executable, "-m", "longrm", *_train_args(trainer, tiny_causal, data, one, 2)])
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ACCELERATE / "cpu-2proc.yaml"),
        "--main_process_port", str(free_port()), "-m", "longrm",
    ]  # fmt: skip
    _run([*launch, *_train_args(trainer, tiny_causal, data, two, 1)])

    # Trainer keeps one RNG state per process: two files prove two processes trained.
    assert (two / "checkpoint-3" / "rng_state_1.pth").is_file()
    assert not (one / "checkpoint-3" / "rng_state_1.pth").exists()
    single, double = _record(one), _record(two)
    assert single["config"]["shared_prefix"] is True and double["config"]["shared_prefix"] is True
    assert single["steps"] == double["steps"] == 3
    losses_1 = [h["loss"] for h in single["log"]]
    losses_2 = [h["loss"] for h in double["log"]]
    assert len(losses_1) == len(losses_2) == 3
    assert losses_1 == pytest.approx(losses_2, abs=1e-4)
    assert double["final_loss"] == pytest.approx(single["final_loss"], abs=1e-4)
    assert max(losses_1) - min(losses_1) > 1e-3, "the steps should change the loss"
    load = AutoModelForCausalLM if trainer == "align" else AutoModelForSequenceClassification
    for out in (one, two):
        model = load.from_pretrained(out)
        assert model.config.num_hidden_layers == 2


def _align_config(tmp_path: Path, **kwargs: object) -> AlignConfig:
    return AlignConfig(output_dir=str(tmp_path), data="rows.jsonl", use_cpu=True, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["CP_SIZE", "SP_SIZE"])
def test_shared_prefix_refuses_cp_or_ulysses_set_by_accelerate_launch(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sizes `accelerate launch` exports refuse packing, and name the way out."""
    monkeypatch.setenv(f"PARALLELISM_CONFIG_{name}", "2")
    with pytest.raises(ValueError, match="--no-shared-prefix"):
        check_parallel_config(_align_config(tmp_path), "align")
    # separate sequences do not help: the Trainer cannot split preference rows across GPUs
    with pytest.raises(ValueError, match="DDP, ZeRO-2/3 or FSDP"):
        check_parallel_config(_align_config(tmp_path, shared_prefix=False), "align")
    with pytest.raises(ValueError, match="train disrm cannot run"):
        check_parallel_config(_align_config(tmp_path, shared_prefix=False), "disrm")
    check_parallel_config(_align_config(tmp_path), "sft")  # Stage I splits like any causal LM


@pytest.mark.parametrize("sizes", [{"cp_size": 2}, {"sp_size": 2}])
def test_shared_prefix_refuses_cp_or_ulysses_from_a_parallelism_config(
    sizes: dict[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ParallelismConfig in the training arguments is read like the launcher's environment."""
    from accelerate.parallelism_config import ParallelismConfig

    for name in ("CP_SIZE", "SP_SIZE"):
        monkeypatch.delenv(f"PARALLELISM_CONFIG_{name}", raising=False)
    config = _align_config(tmp_path, parallelism_config=ParallelismConfig(**sizes))
    with pytest.raises(ValueError, match=r"--no-shared-prefix"):
        check_parallel_config(config, "align")
    assert parallel_sizes({"cp_size": 1}) == (1, 1)
    check_parallel_config(_align_config(tmp_path), "align")  # no parallelism: packing is fine


def _launch_env(config_file: Path) -> dict[str, str]:
    """Return the environment `accelerate launch --config_file FILE` gives the processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import launch as launch_utils

    args = launch_command_parser().parse_args(["--config_file", str(config_file), "x.py"])
    args, defaults, _ = _validate_launch_command(args)
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return dict(launch_utils.prepare_deepspeed_cmd_env(args)[1])
    assert args.multi_gpu or args.use_fsdp, f"{config_file.name} would start a single process"
    return dict(launch_utils.prepare_multi_gpu_env(args))


@pytest.mark.parametrize(
    ("name", "cp", "sp"),
    [("cp8-fsdp2.yaml", 8, 1), ("ulysses-sp8.yaml", 1, 8), ("zero2.yaml", 1, 1)],
)
def test_long_sequence_configs_reach_the_parallel_check(
    name: str, cp: int, sp: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shipped YAMLs export the sizes that longrm reads, so packing is refused under them."""
    env = _launch_env(ACCELERATE / name)
    for key in ("CP_SIZE", "SP_SIZE"):
        monkeypatch.delenv(f"PARALLELISM_CONFIG_{key}", raising=False)
        if f"PARALLELISM_CONFIG_{key}" in env:
            monkeypatch.setenv(f"PARALLELISM_CONFIG_{key}", env[f"PARALLELISM_CONFIG_{key}"])
    assert parallel_sizes() == (cp, sp)
    if cp > 1 or sp > 1:
        with pytest.raises(ValueError, match="--no-shared-prefix"):
            check_parallel_config(_align_config(tmp_path), "align")
    else:
        check_parallel_config(_align_config(tmp_path), "align")


def test_every_accelerate_config_loads_with_known_keys() -> None:
    """accelerate rejects unknown top-level keys but silently drops unknown nested ones."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    dests = {a.dest for a in launch_command_parser()._actions}
    files = sorted(ACCELERATE.glob("*.yaml"))
    assert {f.name for f in files} >= {
        "ddp.yaml", "cpu-2proc.yaml", "zero2.yaml", "zero3.yaml", "zero3-offload.yaml",
        "cp8-fsdp2.yaml", "ulysses-sp8.yaml",
    }  # fmt: skip
    for path in files:
        config = load_config_from_file(str(path))
        for section in ("deepspeed_config", "fsdp_config", "parallelism_config"):
            unknown = set(getattr(config, section) or {}) - dests
            assert not unknown, f"{path.name}: {section} keys accelerate ignores: {unknown}"
        ds_file = (config.deepspeed_config or {}).get("deepspeed_config_file")
        if ds_file:
            assert (ROOT / ds_file).is_file(), f"{path.name}: {ds_file} missing"
            ds = json.loads((ROOT / ds_file).read_text(encoding="utf-8"))
            assert ds["bf16"]["enabled"] == "auto" and ds["gradient_clipping"] == "auto"
            # accelerate refuses mixed_precision beside a deepspeed_config_file
            assert config.mixed_precision is None, path.name


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("stage1-sft.yaml", SftConfig),
        ("stage2-logo.yaml", AlignConfig),
        ("disrm.yaml", DisrmConfig),
    ],
)
def test_training_configs_hold_the_paper_settings(
    name: str, cls: type[TrainConfig], tmp_path: Path
) -> None:
    """Each YAML parses into its trainer's config, every key landing on a field unchanged."""
    path = TRAIN / name
    flags = ["--config", str(path), "--data", "x", "--out", str(tmp_path), "--use_cpu"]
    config = parse_config(cls, flags)  # --use_cpu: bf16 on a machine without a GPU
    for key, value in yaml.safe_load(path.read_text(encoding="utf-8")).items():
        assert getattr(config, key) == value, key
    assert (config.adam_beta1, config.adam_beta2) == (0.9, 0.95)
    assert config.bf16 and config.activation_checkpointing
    if isinstance(config, AlignConfig):
        assert (config.beta, config.gamma, config.negatives, config.nll_weight) == (
            2.5,
            0.5,
            2,
            0.05,
        )
        assert config.learning_rate == 2e-6 and config.warmup_steps == 0.05
    if isinstance(config, DisrmConfig):
        assert config.lora and (config.lora_r, config.lora_alpha) == (8, 8)
    if isinstance(config, SftConfig):
        assert config.learning_rate == 2e-6 and config.warmup_steps == 0.03

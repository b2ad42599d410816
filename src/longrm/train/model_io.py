"""Load a model for training (optionally with LoRA), and save one that `longrm eval` loads.

The output folder holds a plain transformers model (LoRA merged), its tokenizer and
`longrm-train.json`: the stage, the checkpoint and data it started from (with the parent's own
record, so Stage II names its Stage I), the config and what the run measured.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    set_seed,
)

from longrm import __version__
from longrm.models import resolve_model_path
from longrm.rm.hf_common import parse_dtype
from longrm.train.config import TrainConfig

RECORD = "longrm-train.json"


def load_for_training(
    config: TrainConfig, path: str, scalar: bool = False
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Return (model, tokenizer) from `path` ('default', an HF id or a folder), LoRA-wrapped
    when the config asks; `scalar` puts a one-output score head on the last token.
    """
    # The score head and LoRA's matrices start random: drawn after seeding, `--seed` decides
    # them (the Trainer seeds only once the model exists), not what ran before in the process.
    set_seed(config.seed)
    resolved = resolve_model_path(path)
    tokenizer = AutoTokenizer.from_pretrained(resolved)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = parse_dtype(config.dtype)
    if dtype == "auto":
        # Master weights stay float32: at lr 2e-6 updates to bf16 weights round away; --bf16
        # still computes in bf16 through autocast.
        dtype = torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": config.attn}
    if scalar:
        model = AutoModelForSequenceClassification.from_pretrained(resolved, num_labels=1, **kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(resolved, **kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    if config.lora:
        model = _with_lora(model, config, scalar)
    return model, tokenizer


def _with_lora(model: PreTrainedModel, config: TrainConfig, scalar: bool) -> PreTrainedModel:
    from peft import LoraConfig, TaskType, get_peft_model

    targets: str | list[str] = (
        "all-linear"
        if config.lora_targets == "all-linear"
        else [t.strip() for t in config.lora_targets.split(",") if t.strip()]
    )
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        target_modules=targets,
        task_type=TaskType.SEQ_CLS if scalar else TaskType.CAUSAL_LM,
    )
    return get_peft_model(model, lora)  # type: ignore[return-value]


def merge_saved_adapter(out: str | Path, base: str, scalar: bool, pad_id: int | None) -> None:
    """Replace the LoRA adapter saved in `out` by a plain model: base weights + merged adapter.

    Merging from disk after `Trainer.save_model` works the same under DDP, ZeRO-3 and FSDP,
    where the in-memory weights are split across processes.
    """
    from peft import PeftModel

    cls = AutoModelForSequenceClassification if scalar else AutoModelForCausalLM
    kwargs: dict[str, Any] = {"num_labels": 1} if scalar else {}
    model = cls.from_pretrained(resolve_model_path(base), dtype=torch.float32, **kwargs)
    model.config.pad_token_id = pad_id
    merged = PeftModel.from_pretrained(model, str(out)).merge_and_unload()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        (Path(out) / name).unlink(missing_ok=True)
    merged.save_pretrained(out)


def file_digest(path: str | Path) -> str:
    """Return a sha256 of a data file, or of a folder's files in name order."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.name.encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_record(folder: str | Path) -> dict[str, Any] | None:
    """Return the training record of a longrm output folder, or None for other models."""
    path = Path(folder) / RECORD
    if not path.is_file():
        return None
    return dict(json.loads(path.read_text(encoding="utf-8")))


def write_record(out: str | Path, record: dict[str, Any]) -> Path:
    """Write the run's record beside the model, with the longrm version."""
    path = Path(out) / RECORD
    path.write_text(
        json.dumps({"longrm_version": __version__, **record}, indent=2, default=str) + "\n",
        encoding="utf-8",
    )
    return path

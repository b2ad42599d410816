"""Training configs: transformers' TrainingArguments plus longrm's fields, TRL style.

Every field is settable from a YAML file (`--config FILE.yaml`) and from flags (`--beta 2.5`
or `--beta=2.5`; flags win). Defaults follow the paper's settings table (REFERENCE.md section 3)
where it gives one; everything TrainingArguments offers (DeepSpeed, bf16, schedulers, saving)
is there too. Each config's docstring lists its own fields ("Parameters:", TRL style), built
from the same `help` metadata the flags show, so the two cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from transformers import HfArgumentParser, TrainingArguments

from longrm.options import documented


@documented
@dataclass
class TrainConfig(TrainingArguments):
    """Fields every longrm trainer shares."""

    model: str = field(
        default="default",
        metadata={"help": "Model to start from: 'default', an HF id in the cache, or a folder."},
    )
    data: str | None = field(
        default=None,
        metadata={
            "help": "Training rows: a JSONL file, a folder of JSONL files or a save_to_disk "
            "folder (the authors' release columns, benchmark rows or TRL-style rows)."
        },
    )
    output_dir: str | None = field(
        default=None,
        metadata={"help": "Folder for checkpoints and the final model.", "aliases": ["--out"]},
    )
    max_length: int = field(
        default=4096,
        metadata={
            "help": "Longest training sequence in tokens; longer rows lose distractor text "
            "(never the key context, the question, the responses or the target)."
        },
    )
    max_rows: int | None = field(default=None, metadata={"help": "Read at most this many rows."})
    skip_invalid: bool = field(
        default=False,
        metadata={"help": "Skip (and count) rows that are malformed or cannot fit max_length."},
    )
    resume: bool = field(
        default=False,
        metadata={"help": "Resume from the newest checkpoint in the output folder."},
    )
    lora: bool = field(default=False, metadata={"help": "Train LoRA adapters (merged on save)."})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=8, metadata={"help": "LoRA alpha."})
    lora_targets: str = field(
        default="all-linear",
        metadata={"help": "Modules LoRA adapts: 'all-linear' or comma-separated names."},
    )
    dtype: str = field(
        default="auto",
        metadata={
            "help": "Weights' dtype: auto (float32 master weights; --bf16 computes in bf16), "
            "float32, bfloat16, float16."
        },
    )
    attn: str = field(
        default="sdpa",
        metadata={
            "help": "Attention implementation: sdpa, eager, flash_attention_2, flex_attention."
        },
    )
    positions_window: int | None = field(
        default=None,
        metadata={
            "help": "Positional indices synthesis: spread the prompt's position ids over this "
            "many positions (LOGO's trick to train a long window on short sequences)."
        },
    )
    positions_mode: Literal["continuous", "sparse", "mixed"] = field(
        default="mixed",
        metadata={"help": "How positions spread: one offset per chunk, per token, or mixed 9:1."},
    )
    pairwise_only: bool = field(
        default=False,
        metadata={
            "help": "Benchmark rows: train on pairwise items only (Best-of-N items are left out "
            "and counted in the run record)."
        },
    )
    order_pairs: bool = field(
        default=True,
        metadata={
            "help": "Keep the display orders of one item (rows with the same `group`: a pair "
            "judged as A-B and as B-A) in the same optimiser step, so a position preference "
            "cancels within each update; --no_order_pairs samples rows independently."
        },
    )
    curriculum: Literal["none", "length"] = field(
        default="none",
        metadata={
            "help": "Row order in each epoch: none (shuffled) or length (short rows first: "
            "power-of-two token-length buckets in increasing order, shuffled within a bucket)."
        },
    )
    # Overridden TrainingArguments defaults: the paper's optimiser, one row per step on a laptop.
    learning_rate: float = field(default=2e-6, metadata={"help": "Peak learning rate."})
    adam_beta2: float = field(default=0.95, metadata={"help": "AdamW beta2."})
    warmup_steps: float = field(
        default=0.03, metadata={"help": "Warmup: steps, or a fraction of all steps if below 1."}
    )
    per_device_train_batch_size: int = field(default=1, metadata={"help": "Rows per device."})
    logging_steps: float = field(default=1, metadata={"help": "Log every this many steps."})
    save_steps: float = field(default=200, metadata={"help": "Checkpoint every this many steps."})
    save_total_limit: int | None = field(default=2, metadata={"help": "Checkpoints kept."})
    activation_checkpointing: bool | None = field(
        default=True,
        metadata={"help": "Recompute activations in backward (long sequences need it)."},
    )
    report_to: None | str | list[str] = field(
        default="none", metadata={"help": "Experiment trackers to log to."}
    )
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Keep longrm's feature columns (leave it off)."}
    )
    include_num_input_tokens_seen: str = field(
        default="no",
        metadata={"help": "transformers' own token count (longrm counts real tokens itself)."},
    )

    def __post_init__(self) -> None:
        import torch

        if not torch.cuda.is_available():  # pinned memory only helps copies to a GPU
            self.dataloader_pin_memory = False
        super().__post_init__()


_PAIR_STEP_HELP = (
    "Batches accumulated per optimiser step; 2 puts both display orders of a pair in one step "
    "at batch size 1."
)
_LAYOUT_HELP = (
    "Judgments written for benchmark rows: verdict_first (verdict, explanation, verdict), "
    "explain_first, mixed, or verdict_only (the verdict string alone, e.g. [[A]])."
)


@documented
@dataclass
class SftConfig(TrainConfig):
    """Stage I: cold-start SFT, loss on the judgment only."""

    judgment_seed: int = field(
        default=0, metadata={"help": "Seed of the judgments written for benchmark rows."}
    )
    judgment_layout: Literal["verdict_first", "explain_first", "mixed", "verdict_only"] = field(
        default="verdict_first", metadata={"help": _LAYOUT_HELP}
    )
    gradient_accumulation_steps: int = field(default=2, metadata={"help": _PAIR_STEP_HELP})


@documented
@dataclass
class AlignConfig(TrainConfig):
    """Stage II: preference optimisation of judgments (LOGO by default)."""

    loss: Literal["logo", "simpo", "dpo"] = field(
        default="logo", metadata={"help": "logo (paper), simpo (V = 1, no NLL), dpo (reference)."}
    )
    beta: float = field(default=2.5, metadata={"help": "Scale of the preference margin."})
    gamma: float = field(default=0.5, metadata={"help": "Target margin (logo, simpo)."})
    negatives: int = field(default=2, metadata={"help": "Rejected responses per row (V)."})
    nll_weight: float = field(default=0.05, metadata={"help": "Weight of the chosen NLL (logo)."})
    dpo_beta: float = field(default=0.1, metadata={"help": "DPO's beta (loss dpo only)."})
    shared_prefix: bool = field(
        default=True,
        metadata={
            "help": "Compute the prompt once for all responses (block mask); "
            "--no-shared-prefix runs one sequence per response."
        },
    )
    start_from: str | None = field(
        default=None,
        metadata={
            "help": "A Stage I output folder to start from (recorded in the run).",
            "aliases": ["--from"],
        },
    )
    score_tokens: Literal["all", "verdict"] = field(
        default="all",
        metadata={
            "help": "Judgment tokens the loss reads: all, or verdict (the tokens of every "
            "[[...]] verdict, so a long explanation does not dilute the decision; a judgment "
            "without one is an error, or skipped with --skip_invalid)."
        },
    )
    length_normalize: bool = field(
        default=True,
        metadata={
            "help": "logo/simpo: average the log-probabilities over the scored tokens (the "
            "paper's m(y)); --no_length_normalize sums them (dpo always sums)."
        },
    )
    judgment_seed: int = field(
        default=0, metadata={"help": "Seed of the judgments written for benchmark rows."}
    )
    judgment_layout: Literal["verdict_first", "explain_first", "mixed", "verdict_only"] = field(
        default="verdict_first", metadata={"help": _LAYOUT_HELP}
    )
    warmup_steps: float = field(
        default=0.05, metadata={"help": "Warmup: steps, or a fraction of all steps if below 1."}
    )
    gradient_accumulation_steps: int = field(default=2, metadata={"help": _PAIR_STEP_HELP})


@documented
@dataclass
class DisrmConfig(TrainConfig):
    """The discriminative RM: a scalar head, Bradley-Terry against the mean of V negatives.

    Defaults are what learned on the 135M default model: after 480 pairs at 384-512 tokens (120
    steps of 4 pairs, one epoch) it scored 66.7% on 96 held-out pairs at 512-4K tokens against
    59.4% for the untrained likelihood reward. The paper's LoRA r 8, alpha 8 (for 8B models)
    with lr 1e-5 barely moves a small model in that budget.
    """

    negatives: int = field(default=1, metadata={"help": "Rejected responses per row (V)."})
    shared_prefix: bool = field(
        default=True,
        metadata={
            "help": "Compute the prompt once for the chosen and rejected answers (block mask); "
            "--no-shared-prefix runs one sequence per answer."
        },
    )
    lora: bool = field(default=True, metadata={"help": "Train LoRA adapters (merged on save)."})
    lora_r: int = field(
        default=16, metadata={"help": "LoRA rank (16 learned on the 135M default model)."}
    )
    lora_alpha: int = field(
        default=32, metadata={"help": "LoRA alpha (32: updates scaled by alpha / r = 2)."}
    )
    learning_rate: float = field(
        default=2e-4, metadata={"help": "Peak learning rate (2e-4 for LoRA on the default model)."}
    )
    gradient_accumulation_steps: int = field(
        default=4,
        metadata={
            "help": "Batches accumulated per optimiser step: 4 pairs a step at batch size 1 "
            "(no padding between pairs of different lengths)."
        },
    )
    num_train_epochs: float = field(
        default=1.0, metadata={"help": "Passes over the pairs (one, as measured)."}
    )
    activation_checkpointing: bool | None = field(
        default=False,
        metadata={
            "help": "Recompute activations in backward: off (a small model at a few thousand "
            "tokens fits without it, and trains faster); turn it on for long rows or big models."
        },
    )


ConfigT = TypeVar("ConfigT", bound=TrainConfig)


class ConfigError(ValueError):
    """A config file or flag that cannot be used."""


def _yaml_values(path: Path, known: set[str]) -> dict[str, Any]:
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read the config: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of field names to values")
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    values = {
        ("start_from" if k == "from" else "output_dir" if k == "out" else k): v
        for k, v in values.items()
    }
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {unknown}; see `longrm train ... --help`")
    return values


def parse_config(cls: type[ConfigT], args: list[str], prog: str = "longrm train") -> ConfigT:
    """Return the config from flags, with `--config FILE.yaml` supplying defaults first."""
    parser = HfArgumentParser(cls, prog=prog)  # type: ignore[arg-type]
    parser.add_argument("--config", default=None, help="A YAML file of field values (flags win).")
    known = {f.name for f in fields(cls)}
    pre, _ = parser.parse_known_args(args)
    if pre.config:
        parser.set_defaults(**_yaml_values(Path(pre.config), known))
    namespace = parser.parse_args(args)
    values = {k: v for k, v in vars(namespace).items() if k in known}
    try:
        config = cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
    if not config.data:
        raise ConfigError("give the training rows with --data PATH (or `data:` in --config)")
    if not config.output_dir:
        raise ConfigError("give an output folder with --out DIR (or `out:` in --config)")
    return config

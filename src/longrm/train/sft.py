"""Stage I: cold-start SFT of a judge, the loss on the judgment's tokens only."""

from __future__ import annotations

import random
from typing import Any

import torch

from longrm.train.config import SftConfig
from longrm.train.data import load_sft
from longrm.train.engine import LongrmTrainer, train_stage
from longrm.train.features import FitStats, fit_all, fit_judgments, prompt_positions
from longrm.train.model_io import load_for_training
from longrm.train.parallel import check_parallel_config

IGNORE = -100


def sft_features(
    config: SftConfig, tokenizer: Any, examples: list[Any], stats: FitStats
) -> list[dict[str, list[int]]]:
    """Return input ids, labels (-100 over the prompt) and position ids per example."""
    rng = random.Random(config.seed)

    def feature(ex: Any) -> dict[str, list[int]]:
        ids = fit_judgments(
            tokenizer, ex.messages, [ex.target], ex.protected, config.max_length, ex.source, stats
        )
        target = ids.responses[0]
        spread = prompt_positions(ids, config.positions_window, config.positions_mode, rng)
        head = spread if spread is not None else list(range(len(ids.prompt)))
        return {
            "input_ids": ids.prompt + target,
            "labels": [IGNORE] * len(ids.prompt) + target,
            "position_ids": head + [head[-1] + 1 + i for i in range(len(target))],
        }

    return fit_all(examples, feature, config.skip_invalid, stats)


def pad_batch(rows: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch: input ids with the pad id, labels with -100, positions with 0."""
    width = max(len(r["input_ids"]) for r in rows)

    def padded(key: str, fill: int) -> torch.Tensor:
        return torch.tensor([r[key] + [fill] * (width - len(r[key])) for r in rows])

    mask = torch.tensor(
        [[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in rows]
    )
    return {
        "input_ids": padded("input_ids", pad_id),
        "labels": padded("labels", IGNORE),
        "position_ids": padded("position_ids", 0),
        "attention_mask": mask,
    }


class SftTrainer(LongrmTrainer):
    """transformers' causal-LM loss on the judgment tokens, counting real tokens."""

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        self.count_tokens(int(inputs["attention_mask"].sum()))
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


def train_sft(config: SftConfig) -> dict[str, Any]:
    """Run Stage I from the config; return the run's record (also written beside the model)."""
    check_parallel_config(config, "sft")
    model, tokenizer = load_for_training(config, config.model)
    loaded = load_sft(
        str(config.data),
        seed=config.judgment_seed,
        layout=config.judgment_layout,
        pairwise_only=config.pairwise_only,
        skip_invalid=config.skip_invalid,
        limit=config.max_rows,
    )
    return train_stage(
        "sft",
        config,
        config.model,
        model,
        tokenizer,
        loaded,
        lambda examples, stats: sft_features(config, tokenizer, examples, stats),
        SftTrainer,
        lambda rows: pad_batch(rows, int(tokenizer.pad_token_id)),
        tokens=lambda feature: len(feature["input_ids"]),
    )

"""The discriminative RM: a scalar head on the last token, Bradley-Terry against the mean of V
rejected responses, trained on (task prompt + response) exactly as `--kind scalar` scores it.
"""

from __future__ import annotations

from typing import Any

import torch

from longrm.train.config import DisrmConfig
from longrm.train.data import load_preferences
from longrm.train.engine import LongrmTrainer, train_stage
from longrm.train.features import FitStats, fit_all, fit_scalar
from longrm.train.losses import bradley_terry_loss
from longrm.train.model_io import load_for_training
from longrm.train.parallel import check_parallel_config


def disrm_features(
    config: DisrmConfig, tokenizer: Any, examples: list[Any], stats: FitStats
) -> list[list[list[int]]]:
    """Return per row the ids of (prompt, chosen) then (prompt, rejected_j), as eval builds them."""

    def feature(ex: Any) -> list[list[int]]:
        responses = [ex.chosen, *ex.rejects]
        return fit_scalar(
            tokenizer, ex.messages, responses, ex.protected, config.max_length, ex.source, stats
        )

    return fit_all(examples, feature, config.skip_invalid, stats)


def collate_sequences(rows: list[list[list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad every row's sequences into one (rows x responses, length) batch."""
    seqs = [s for row in rows for s in row]
    width = max(len(s) for s in seqs)
    return {
        "input_ids": torch.tensor([s + [pad_id] * (width - len(s)) for s in seqs]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
        "responses": torch.tensor(len(rows[0])),
    }


class DisrmTrainer(LongrmTrainer):
    """Trainer with the Bradley-Terry loss over each row's chosen and rejected rewards."""

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        self.count_tokens(int(inputs["attention_mask"].sum()))
        rewards = model(
            input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]
        ).logits
        rewards = rewards.view(-1, int(inputs["responses"]))
        out = bradley_terry_loss(rewards[:, 0], rewards[:, 1:])
        self.note(accuracy=out.accuracy, margin=out.margin)
        return (out.loss, {"rewards": rewards}) if return_outputs else out.loss


def train_disrm(config: DisrmConfig) -> dict[str, Any]:
    """Train a scalar RM from the config; the result loads as AutoModelForSequenceClassification."""
    check_parallel_config(config, "disrm")
    model, tokenizer = load_for_training(config, config.model, scalar=True)
    loaded = load_preferences(
        str(config.data),
        negatives=config.negatives,
        judgments=False,
        pairwise_only=config.pairwise_only,
        skip_invalid=config.skip_invalid,
        limit=config.max_rows,
    )
    return train_stage(
        "disrm",
        config,
        config.model,
        model,
        tokenizer,
        loaded,
        lambda examples, stats: disrm_features(config, tokenizer, examples, stats),
        DisrmTrainer,
        lambda rows: collate_sequences(rows, int(tokenizer.pad_token_id)),
        tokens=lambda feature: max(len(seq) for seq in feature),
        scalar=True,
    )

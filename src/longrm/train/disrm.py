"""The discriminative RM: a scalar head on the last token, Bradley-Terry against the mean of V
rejected responses, trained on (task prompt + response) exactly as `--kind scalar` scores it.
"""

from __future__ import annotations

from typing import Any

from longrm.rm.prefix_cache import common_prefix_length
from longrm.train.config import DisrmConfig
from longrm.train.data import load_preferences
from longrm.train.engine import LongrmTrainer, train_stage
from longrm.train.features import FitStats, fit_all, fit_scalar
from longrm.train.losses import bradley_terry_loss
from longrm.train.model_io import load_for_training
from longrm.train.parallel import check_parallel_config
from longrm.train.shared_prefix import response_rewards, tokens_read
from longrm.train.tokens import PromptResponses


def disrm_features(
    config: DisrmConfig, tokenizer: Any, examples: list[Any], stats: FitStats
) -> list[PromptResponses]:
    """Return per row the ids of (prompt, chosen) then (prompt, rejected_j), as eval builds them,
    split once into their shared prompt and what follows it in each."""

    def feature(ex: Any) -> PromptResponses:
        responses = [ex.chosen, *ex.rejects]
        return as_prompt_responses(
            fit_scalar(
                tokenizer, ex.messages, responses, ex.protected, config.max_length, ex.source, stats
            )
        )

    return fit_all(examples, feature, config.skip_invalid, stats)


def as_prompt_responses(sequences: list[list[int]]) -> PromptResponses:
    """Return a row's (prompt, response) sequences as their longest common prefix (the chat
    template's prompt, computed once when packed) and what follows it in each; every response
    keeps at least its last token, where the reward is read."""
    shared = min(len(s) for s in sequences) - 1
    for seq in sequences[1:]:
        shared = min(shared, common_prefix_length(sequences[0], seq))
    return PromptResponses(sequences[0][:shared], [s[shared:] for s in sequences])


def collate_rows(rows: list[PromptResponses]) -> dict[str, Any]:
    """Return a batch of rows (the trainer packs or repeats each prompt)."""
    return {"examples": tuple(rows)}


class DisrmTrainer(LongrmTrainer):
    """Trainer with the Bradley-Terry loss over each row's chosen and rejected rewards."""

    def __init__(self, *args: Any, disrm: DisrmConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.disrm = disrm

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        shared = self.disrm.shared_prefix
        self.count_tokens(tokens_read(inputs["examples"], shared))
        rewards = response_rewards(
            model,
            inputs["examples"],
            shared_prefix=shared,
            pad_id=int(self.processing_class.pad_token_id),  # type: ignore[union-attr]
        )
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
        collate_rows,
        tokens=lambda feature: feature.longest,
        scalar=True,
        trainer_kwargs={"disrm": config},
    )

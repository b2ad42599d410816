"""Stage II: preference optimisation of judgments (LOGO, SimPO or DPO), the prompt shared.

The chosen judgment and its V rejected ones are scored in one packed sequence per row (see
shared_prefix.py); `--no-shared-prefix` scores one sequence per judgment, the baseline.
`--score_tokens verdict` scores only the verdicts' tokens and `--no_length_normalize` sums
instead of averaging: the paper's m(y) averages over about 128 judgment tokens, which weights
the one deciding letter at about beta/|y|.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import torch

from longrm.items import ItemError
from longrm.train.config import AlignConfig
from longrm.train.data import load_preferences
from longrm.train.engine import LongrmTrainer, train_stage
from longrm.train.features import FitStats, fit_all, fit_judgments, prompt_positions, source_parts
from longrm.train.losses import LossOutput, dpo_loss, logo_loss, simpo_loss
from longrm.train.model_io import load_for_training
from longrm.train.parallel import check_parallel_config
from longrm.train.shared_prefix import response_logps, tokens_read
from longrm.train.tokens import PromptResponses
from longrm.train.verdict_spans import verdict_token_mask


def verdict_scored(tokenizer: Any, ids: PromptResponses, source: str) -> PromptResponses:
    """Return `ids` with only each response's verdict tokens scored; a response without a
    verdict is an ItemError at its source (skipped and counted with --skip_invalid)."""
    scored = [verdict_token_mask(tokenizer, r) for r in ids.responses]
    for k, flags in enumerate(scored):
        if not any(flags):
            path, line = source_parts(source)
            which = "chosen judgment" if k == 0 else f"rejected judgment {k}"
            raise ItemError(
                path, line, "chosen" if k == 0 else "rejects",
                f"the {which} holds no [[...]] verdict for --score_tokens verdict",
            )  # fmt: skip
    return dataclasses.replace(ids, scored=scored)


def align_features(
    config: AlignConfig, tokenizer: Any, examples: list[Any], stats: FitStats
) -> list[dict[str, Any]]:
    """Return each row's ids (prompt; chosen then rejected judgments, the tokens the loss
    reads marked) and prompt positions."""
    rng = random.Random(config.seed)

    def feature(ex: Any) -> dict[str, Any]:
        responses = [ex.chosen, *ex.rejects]
        ids = fit_judgments(
            tokenizer, ex.messages, responses, ex.protected, config.max_length, ex.source, stats
        )
        if config.score_tokens == "verdict":
            ids = verdict_scored(tokenizer, ids, ex.source)
        spread = prompt_positions(ids, config.positions_window, config.positions_mode, rng)
        return {"ids": ids, "positions": spread}

    return fit_all(examples, feature, config.skip_invalid, stats)


def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Keep rows as (prompt, responses) ids: packing happens in the loss, per layout."""
    positions = [r["positions"] for r in rows]
    batch: dict[str, Any] = {
        "examples": tuple(r["ids"] for r in rows),
        "positions": None if all(p is None for p in positions) else tuple(positions),
    }
    if "ref" in rows[0]:
        batch["ref"] = torch.tensor([r["ref"] for r in rows])
    return batch


class AlignTrainer(LongrmTrainer):
    """Trainer whose loss compares the chosen judgment with the mean of V rejected ones."""

    def __init__(self, *args: Any, align: AlignConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.align = align

    def _logps(self, model: Any, inputs: dict[str, Any]) -> Any:
        return response_logps(
            model,
            inputs["examples"],
            shared_prefix=self.align.shared_prefix,
            pad_id=int(self.processing_class.pad_token_id),  # type: ignore[union-attr]
            prompt_positions=inputs["positions"],
        )

    def preference_loss(self, model: Any, inputs: dict[str, Any]) -> LossOutput:
        """Return the configured loss on one batch: over the scored tokens (all, or the
        verdicts'), their log-probabilities averaged per response or, without
        length_normalize, summed."""
        logps = self._logps(model, inputs)
        cfg = self.align
        if cfg.loss == "dpo":
            ref = inputs["ref"].to(logps.sums)
            return dpo_loss(
                logps.sums[:, 0], logps.sums[:, 1:], ref[:, 0], ref[:, 1:], beta=cfg.dpo_beta
            )
        values = logps.means if cfg.length_normalize else logps.sums
        if cfg.loss == "simpo":
            return simpo_loss(values[:, 0], values[:, 1:], beta=cfg.beta, gamma=cfg.gamma)
        return logo_loss(
            values[:, 0], values[:, 1:], beta=cfg.beta, gamma=cfg.gamma, nll_weight=cfg.nll_weight
        )

    def compute_loss(
        self,
        model: Any,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        self.count_tokens(tokens_read(inputs["examples"], self.align.shared_prefix))
        out = self.preference_loss(model, inputs)
        self.note(accuracy=out.accuracy, margin=out.margin)
        return (out.loss, {}) if return_outputs else out.loss


@torch.no_grad()
def reference_sums(model: Any, features: list[dict[str, Any]], pad_id: int, shared: bool) -> None:
    """Store the starting model's summed log-probs of each response (DPO's frozen reference),
    computed once before training instead of keeping a second model in memory.
    """
    was_training = model.training
    model.eval()
    for f in features:
        logps = response_logps(
            model,
            [f["ids"]],
            shared_prefix=shared,
            pad_id=pad_id,
            prompt_positions=None if f["positions"] is None else [f["positions"]],
        )
        f["ref"] = logps.sums[0].float().cpu().tolist()
    model.train(was_training)


def train_align(config: AlignConfig) -> dict[str, Any]:
    """Run Stage II from the config (from `--from` when given); return the run's record."""
    if config.loss == "simpo" and config.negatives != 1:
        raise ValueError("--loss simpo compares with one rejected judgment: pass --negatives 1")
    check_parallel_config(config, "align")
    start = config.start_from or config.model
    model, tokenizer = load_for_training(config, start)
    loaded = load_preferences(
        str(config.data),
        negatives=config.negatives,
        seed=config.judgment_seed,
        layout=config.judgment_layout,
        pairwise_only=config.pairwise_only,
        skip_invalid=config.skip_invalid,
        limit=config.max_rows,
    )

    def featurize(examples: list[Any], stats: FitStats) -> list[dict[str, Any]]:
        features = align_features(config, tokenizer, examples, stats)
        if config.loss == "dpo":
            reference_sums(model, features, int(tokenizer.pad_token_id), config.shared_prefix)
        return features

    return train_stage(
        "align",
        config,
        start,
        model,
        tokenizer,
        loaded,
        featurize,
        AlignTrainer,
        collate,
        tokens=lambda feature: feature["ids"].longest,
        trainer_kwargs={"align": config},
        record_extra={"loss": config.loss},
    )

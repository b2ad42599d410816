"""A verl reward manager that scores each rollout with a `longrm serve` service.

verl 0.9 calls reward-model servers only when it starts them itself, so an external service is
reached through a reward manager that its config loads by import path:

    reward.reward_manager.source=importlib
    reward.reward_manager.name=LongRMRewardManager
    reward.reward_manager.module.path=pkg://longrm.integrations.verl
    +reward.reward_kwargs.longrm_url=http://HOST:8000

verl's reward loop (`verl/experimental/reward_loop/reward_loop.py`, `trainer/ppo/reward.py`)
touches a reward manager in three places only, so this class does not import verl: it is built as
`cls(config=, tokenizer=, compute_score=, **extra)`, `run_single(data)` is awaited for each
rollout (a one-row batch) and returns `{"reward_score", "reward_extra_info"}`, and the class
method `assemble_rm_scores(batch, scores)` lays the scores out as verl's token-level reward
tensor. Each rollout is sent as its chat prompt (`raw_prompt`, which verl's dataset always
keeps) and its decoded response; the service re-renders both with the reward model's own chat
template, whatever the policy's is.
"""

from __future__ import annotations

import asyncio
from typing import Any

import torch

from longrm.integrations.client import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    RemoteScoreError,
    ScoreClient,
    as_messages,
)

#: where verl's config keeps the settings of this manager
KWARGS = "reward.reward_kwargs"


class LongRMRewardManager:
    """verl 0.9 reward manager: one `/v1/score` request per rollout to the service at
    `reward.reward_kwargs.longrm_url` (also read there: `longrm_api_key`, default
    `LONGRM_API_KEY`; `longrm_timeout` seconds; `longrm_retries`).
    """

    def __init__(
        self,
        config: Any,
        tokenizer: Any,
        compute_score: Any = None,
        reward_router_address: str | None = None,
        reward_model_tokenizer: Any = None,
        **_: Any,
    ) -> None:
        reward = config["reward"]
        kwargs = reward.get("reward_kwargs") or {}
        url = kwargs.get("longrm_url")
        if not url:
            raise ValueError(
                f"verl config: {KWARGS}.longrm_url is not set: add "
                f"'+{KWARGS}.longrm_url=http://HOST:PORT' (the address of `longrm serve`)"
            )
        model_cfg = reward.get("reward_model") or {}
        custom = (reward.get("custom_reward_function") or {}).get("path")
        if model_cfg.get("enable") and not custom:
            raise ValueError(
                "verl config: reward.reward_model.enable=True makes verl score with the model it "
                "starts and skip this reward manager: set reward.reward_model.enable=False"
            )
        self.tokenizer = tokenizer
        self.client = ScoreClient(
            str(url),
            api_key=kwargs.get("longrm_api_key"),
            timeout=float(kwargs.get("longrm_timeout", DEFAULT_TIMEOUT)),
            retries=int(kwargs.get("longrm_retries", DEFAULT_RETRIES)),
        )

    async def run_single(self, data: Any) -> dict[str, Any]:
        """Return `{"reward_score": r, "reward_extra_info": {...}}` for a one-rollout batch.

        Of a multi-sequence rollout only the last sequence is scored, as verl's own managers do.
        """
        item = data[-1:][0]
        if "raw_prompt" not in item.non_tensor_batch:
            raise ValueError(
                "verl batch: non_tensor_batch has no 'raw_prompt' (the chat prompt); use verl's "
                "RLHFDataset or keep 'raw_prompt' in a custom dataset's rows"
            )
        prompt = as_messages(list(item.non_tensor_batch["raw_prompt"]), "raw_prompt")
        response_ids = item.batch["responses"]
        valid = int(item.batch["attention_mask"][-response_ids.shape[-1] :].sum())
        response = await asyncio.to_thread(
            self.tokenizer.decode, response_ids[:valid], skip_special_tokens=True
        )
        [score] = await self.client.score(prompt, [response])
        if score is None:
            raise RemoteScoreError(
                f"{self.client.url} gave no reward for a rollout (a judge's unparsed verdict), and "
                "verl needs a number: serve a scalar reward model, or a judge whose verdicts parse"
            )
        return {"reward_score": score, "reward_extra_info": {"longrm_reward": score}}

    @classmethod
    def assemble_rm_scores(cls, data: Any, scores: list[float]) -> torch.Tensor:
        """Return verl's reward tensor: zeros shaped like `responses`, each rollout's score at
        its last response token (the response is right-padded after the prompt).
        """
        prompt_length = data.batch["prompts"].size(1)
        response_lengths = data.batch["attention_mask"][:, prompt_length:].sum(dim=1)
        rewards = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
        rows = torch.arange(rewards.size(0), device=rewards.device)
        rewards[rows, response_lengths - 1] = rewards.new_tensor(scores)
        return rewards

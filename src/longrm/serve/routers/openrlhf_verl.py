"""OpenRLHF's remote reward model (/get_reward) and vLLM's classification shape (/classify,
what verl's discriminative reward models post): texts with a chat template already applied.

Each text is read back into chat turns and a response (`chat_text`): OpenRLHF's texts come from
the policy's template, verl's from the reward model's. Where the model gave no reward, both
answer --unscored-reward (null when it is unset): RL trainers need a number.
"""

from __future__ import annotations

import time
import uuid

from fastapi import APIRouter, Depends, Request

from longrm.serve.deps import Service, require_key
from longrm.serve.errors import ERROR_RESPONSES
from longrm.serve.schemas import (
    ClassifyData,
    ClassifyRequest,
    ClassifyResponse,
    RewardRequest,
    RewardResponse,
    SplitInfo,
    Usage,
)
from longrm.serve.service import sigmoid

router = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)


@router.post("/get_reward")
async def get_reward(body: RewardRequest, request: Request, service: Service) -> RewardResponse:
    """OpenRLHF's remote reward model: one reward per query (prompt + response text, rendered
    with the policy's chat template), cut at `prompts[i]` when given.
    """
    service.count_tokens("/get_reward", body.query)
    splits = [
        service.split(q, body.prompts[i] if body.prompts else None, f"query[{i}]")
        for i, q in enumerate(body.query)
    ]
    values = await service.score_splits(splits, request)
    rewards = [service.rl_reward(v) for v in values]
    logs = {
        "scored": [0.0 if v is None else 1.0 for v in values],
        "split_family": [float(s.code) for s in splits],
        "split_at_prompt": [float(s.at_prompt) for s in splits],
        "reasoning_removed": [float(s.reasoning_removed) for s in splits],
    }
    return RewardResponse(
        rewards=rewards,
        scores=rewards,
        extra_logs=logs,
        splits=[SplitInfo(**s.info()) for s in splits],
    )


@router.post("/classify")
async def classify(body: ClassifyRequest, request: Request, service: Service) -> ClassifyResponse:
    """vLLM's classification shape, one class: the reward (or its sigmoid with activation on)."""
    texts = body.texts()
    n = service.count_tokens("/classify", texts)
    splits = [service.split(t, None, f"input[{i}]") for i, t in enumerate(texts)]
    values = [service.rl_reward(v) for v in await service.score_splits(splits, request)]
    squash = body.apply_activation()
    data = [
        ClassifyData(
            index=i,
            label="reward",
            probs=[None if v is None else (sigmoid(v) if squash else v)],
            num_classes=1,
        )
        for i, v in enumerate(values)
    ]
    return ClassifyResponse(
        id=f"classify-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model or service.settings.model_name,
        data=data,
        usage=Usage(prompt_tokens=n, total_tokens=n),
    )

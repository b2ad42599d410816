"""longrm's own contract: a prompt (messages or text) and responses; score, compare, rank."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Depends, Request

from longrm.items import Messages
from longrm.rm.base import Verdict
from longrm.serve.batching import Unit
from longrm.serve.deps import Service, require_key
from longrm.serve.errors import ERROR_RESPONSES
from longrm.serve.schemas import (
    CompareRequest,
    CompareResponse,
    RankRequest,
    RankResponse,
    ScoreRequest,
    ScoreResponse,
)
from longrm.serve.service import REWARD_KINDS, finite, prompt_key, sigmoid

router = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)


def _texts(prompt: Messages, responses: Sequence[str]) -> list[str]:
    return [m["content"] for m in prompt] + list(responses)


def _scores(verdict: Verdict) -> list[float | None] | None:
    return None if verdict.scores is None else [finite(s) for s in verdict.scores]


@router.post("/v1/score")
async def score(body: ScoreRequest, request: Request, service: Service) -> ScoreResponse:
    """One pointwise reward per response; a group of responses to one prompt shares the
    prompt's encoding (send a prompt's rollouts together).
    """
    prompt = body.prompt_messages()
    service.count_tokens("/v1/score", _texts(prompt, body.responses))
    scores = await service.score(prompt, body.responses, request)
    return ScoreResponse(model=service.settings.model_name, scores=scores)


@router.post("/v1/compare")
async def compare(body: CompareRequest, request: Request, service: Service) -> CompareResponse:
    """Which of two responses is better, with P(first is better) where the model has one."""
    prompt = body.prompt_messages()
    service.count_tokens("/v1/compare", _texts(prompt, body.responses))
    first, second = body.responses
    unit = Unit(prompt_key(prompt), lambda m: m.compare(prompt, first, second))
    [verdict] = await service.run([unit], request)
    probability = None
    scores = _scores(verdict)
    if scores is not None and None not in scores:
        a, b = float(scores[0] or 0.0), float(scores[1] or 0.0)
        if service.settings.kind in REWARD_KINDS:
            probability = sigmoid(a - b)
        else:
            probability = a / (a + b or 1.0)
    return CompareResponse(
        model=service.settings.model_name,
        preferred=verdict.ranking[0] if verdict.ranking else None,
        probability=probability,
        scores=scores,
        text=verdict.text,
        truncated=verdict.truncated,
        error=verdict.error,
    )


@router.post("/v1/rank")
async def rank(body: RankRequest, request: Request, service: Service) -> RankResponse:
    """N responses ordered best first."""
    prompt = body.prompt_messages()
    service.count_tokens("/v1/rank", _texts(prompt, body.responses))
    responses = body.responses
    unit = Unit(prompt_key(prompt), lambda m: m.rank(prompt, responses))
    [verdict] = await service.run([unit], request)
    return RankResponse(
        model=service.settings.model_name,
        ranking=verdict.ranking,
        best=verdict.ranking[0] if verdict.ranking else None,
        scores=_scores(verdict),
        text=verdict.text,
        truncated=verdict.truncated,
        error=verdict.error,
    )

"""OpenAI's chat completions (a local causal judge generating) and model list."""

from __future__ import annotations

import time
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request

from longrm.serve.batching import Unit
from longrm.serve.deps import Service, require_key
from longrm.serve.errors import ERROR_RESPONSES, ApiError
from longrm.serve.generation import complete
from longrm.serve.schemas import (
    AssistantMessage,
    ChatCompletionRequest,
    ChatCompletionResponse,
    Choice,
    ChoiceLogprobs,
    Usage,
)
from longrm.serve.service import prompt_key

router = APIRouter(dependencies=[Depends(require_key)], responses=ERROR_RESPONSES)


@router.get("/v1/models")
async def models(service: Service) -> dict[str, Any]:
    """The one model served, as OpenAI lists models."""
    name = service.settings.model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "longrm"}]}


@router.post("/v1/chat/completions")
async def chat_completions(
    body: ChatCompletionRequest, request: Request, service: Service
) -> ChatCompletionResponse:
    """OpenAI chat completions from the local judge (causal LMs only)."""
    generator = service.generator
    if generator is None:
        raise ApiError(
            400,
            f"the served model ({service.settings.kind}) cannot generate: chat completions need "
            "an in-process causal LM (--kind judge or likelihood)",
            "model",
        )
    service.count_tokens("/v1/chat/completions", [m.content for m in body.messages])
    key = prompt_key([m.model_dump() for m in body.messages])
    budget = service.settings.max_new_tokens
    [done] = await service.run([Unit(key, lambda _: complete(generator, body, budget))], request)
    service.metrics.tokens.labels("/v1/chat/completions", "generated").inc(done.completion_tokens)
    return ChatCompletionResponse(
        id=f"chatcmpl-{uuid.uuid4().hex}",
        created=int(time.time()),
        model=body.model or service.settings.model_name,
        choices=[
            Choice(
                message=AssistantMessage(content=done.text),
                finish_reason=done.finish_reason,
                logprobs=None if done.logprobs is None else ChoiceLogprobs(content=done.logprobs),
            )
        ],
        usage=Usage(
            prompt_tokens=done.prompt_tokens,
            completion_tokens=done.completion_tokens,
            total_tokens=done.prompt_tokens + done.completion_tokens,
        ),
    )

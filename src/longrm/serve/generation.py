"""OpenAI-style chat completions from an in-process causal LM (a local judge).

Generation reuses the model's prefix cache, and token logprobs come from one extra forward pass
over the generated tokens on top of the cached prompt, so `longrm`'s own `openai` backend can
read verdict probabilities from this server as it does from vLLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from longrm.items import Messages
from longrm.rm.base import RewardModel
from longrm.rm.hf_common import HFBackend, PromptTooLongError, chat_ids, encode, render_chat
from longrm.serve.schemas import ChatCompletionRequest, TokenLogprob, TopLogprob


@dataclass
class Completion:
    """What the model wrote, with its token counts and (if asked) per-token logprobs."""

    text: str
    finish_reason: Literal["stop", "length"]
    prompt_tokens: int
    completion_tokens: int
    logprobs: list[TokenLogprob] | None


def generation_backend(model: RewardModel) -> HFBackend | None:
    """Return the model as an in-process causal LM that can generate, else None."""
    if isinstance(model, HFBackend) and type(model.loaded.model).__name__.endswith("ForCausalLM"):
        return model
    return None


def prompt_ids(backend: HFBackend, request: ChatCompletionRequest) -> list[int]:
    """Return the token ids the reply continues: the chat template applied to the messages."""
    messages: Messages = [m.model_dump() for m in request.messages]
    tokenizer = backend.tokenizer
    if not request.continue_final_message:
        return chat_ids(tokenizer, messages, request.add_generation_prompt, backend.thinking)
    if not tokenizer.chat_template:
        text = render_chat(tokenizer, messages, add_generation_prompt=False)
        return encode(tokenizer, text)
    ids = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=False, continue_final_message=True
    )
    return [int(i) for i in ids]  # type: ignore[arg-type]


def _token(text: str, logprob: float) -> tuple[str, float, list[int]]:
    return text, logprob, list(text.encode("utf-8"))


def complete(
    backend: HFBackend, request: ChatCompletionRequest, default_max_tokens: int
) -> Completion:
    """Return the reply to a chat request, greedy at temperature 0, sampled otherwise."""
    ids = prompt_ids(backend, request)
    room = backend.window - len(ids)
    if room < 1:
        raise PromptTooLongError(
            f"the prompt has {len(ids)} tokens and the model's window is {backend.window}"
        )
    wanted = request.max_completion_tokens or request.max_tokens or default_max_tokens
    budget = min(wanted, room)
    config = backend.loaded.model.config
    kwargs: dict[str, object] = {
        "max_new_tokens": budget,
        "pad_token_id": config.pad_token_id,
        "min_new_tokens": budget if request.ignore_eos else min(request.min_tokens, budget),
        "do_sample": request.temperature > 0,
    }
    if request.temperature > 0:
        kwargs.update(temperature=request.temperature, top_p=request.top_p)
        if request.seed is not None:
            torch.manual_seed(request.seed)
    new = backend.runner.generate(ids, **kwargs)
    eos = backend.loaded.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
    stopped = bool(new) and new[-1] in eos_ids
    tokenizer = backend.tokenizer
    logprobs = None
    if request.logprobs:
        logprobs = []
        if new:
            logits = backend.runner.forward(ids + new, len(ids) - 1)[: len(new)]
            table = torch.log_softmax(logits, dim=-1)
            k = request.top_logprobs or 0
            for row, token_id in zip(table, new, strict=True):
                text, value, raw = _token(str(tokenizer.decode([token_id])), float(row[token_id]))
                top = []
                if k:
                    values, indices = row.topk(k)
                    for v, i in zip(values.tolist(), indices.tolist(), strict=True):
                        t, lp, b = _token(str(tokenizer.decode([i])), float(v))
                        top.append(TopLogprob(token=t, logprob=lp, bytes=b))
                logprobs.append(
                    TokenLogprob(token=text, logprob=value, bytes=raw, top_logprobs=top)
                )
    return Completion(
        text=str(tokenizer.decode(new, skip_special_tokens=True)),
        finish_reason="stop" if stopped or len(new) < budget else "length",
        prompt_tokens=len(ids),
        completion_tokens=len(new),
        logprobs=logprobs,
    )

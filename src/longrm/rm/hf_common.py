"""What the in-process Hugging Face backends share: loading, chat rendering, the context window,
and cutting an over-long task prompt in the middle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from longrm.items import Messages
from longrm.models import resolve_model_path
from longrm.rm.prefix_cache import PrefixForward

TRUNCATION_MARKER = "\n[... middle of the context cut to fit the model's window ...]\n"


class PromptTooLongError(ValueError):
    """The prompt cannot fit the window even after cutting its context."""


def pick_device() -> torch.device:
    """Return CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def parse_dtype(name: str) -> torch.dtype | str:
    """Return the torch dtype for 'float32', 'bfloat16', 'float16', or 'auto'."""
    if name == "auto":
        return "auto"
    try:
        dtype = getattr(torch, name)
    except AttributeError:
        dtype = None
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}: use auto, float32, bfloat16 or float16")
    return dtype


@dataclass
class LoadedModel:
    """A tokenizer and model ready for inference, with the window they allow."""

    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    window: int
    path: str


def load_hf(
    spec: str | None,
    sequence_classifier: bool,
    dtype: str = "auto",
    max_length: int | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Return the model named by `spec` ('default', an HF id or a path) on the best device."""
    path = resolve_model_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    cls = AutoModelForSequenceClassification if sequence_classifier else AutoModelForCausalLM
    torch_dtype = parse_dtype(dtype)
    if torch_dtype == "auto" and pick_device().type == "cpu":
        torch_dtype = torch.float32  # bf16 matmuls are slow on most CPUs
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = cls.from_pretrained(path, **kwargs)
    model = model.to(pick_device()).eval()  # type: ignore[arg-type]
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    window = max_length or int(getattr(model.config, "max_position_embeddings", 0) or 0) or 4096
    return LoadedModel(tokenizer=tokenizer, model=model, window=window, path=path)


def render_chat(
    tokenizer: PreTrainedTokenizerBase, messages: Messages, add_generation_prompt: bool
) -> str:
    """Return the chat as model text: the tokenizer's chat template, else role-labelled turns."""
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            messages, add_generation_prompt=add_generation_prompt, tokenize=False
        )
        return str(text)
    text = "".join(f"{m['role']}: {m['content']}\n\n" for m in messages)
    return text + ("assistant: " if add_generation_prompt else "")


def encode(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Return token ids of text without adding special tokens (templates add their own)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def cut_middle(tokenizer: PreTrainedTokenizerBase, text: str, remove: int) -> str:
    """Return text with about `remove` tokens cut from its middle (head and tail kept)."""
    ids = encode(tokenizer, text)
    if remove >= len(ids):
        raise PromptTooLongError(f"cannot cut {remove} tokens from a {len(ids)}-token text")
    keep = len(ids) - remove
    head, tail = ids[: keep // 2], ids[len(ids) - (keep - keep // 2) :]
    return str(tokenizer.decode(head)) + TRUNCATION_MARKER + str(tokenizer.decode(tail))


def fit_prompt(
    tokenizer: PreTrainedTokenizerBase,
    prompt: Messages,
    build: Callable[[Messages], int],
    budget: int,
) -> tuple[Messages, bool]:
    """Return (prompt, truncated): the task prompt cut in the middle of its longest message so
    that `build(prompt)` (the token count of everything sent to the model) fits `budget`.
    """
    size = build(prompt)
    if size <= budget:
        return prompt, False
    longest = max(range(len(prompt)), key=lambda i: len(prompt[i]["content"]))
    current = prompt
    remove = size - budget
    for _ in range(4):  # decoding and re-encoding can shift a few tokens: retry with a margin
        remove += 16
        try:
            content = cut_middle(tokenizer, prompt[longest]["content"], remove)
        except PromptTooLongError:
            break
        current = [dict(m) for m in prompt]
        current[longest]["content"] = content
        size = build(current)
        if size <= budget:
            return current, True
        remove += size - budget
    raise PromptTooLongError(
        f"the prompt needs {size} tokens and the window allows {budget} even after cutting the "
        "context: the responses alone are too long for this model"
    )


class HFBackend:
    """Base of in-process backends: a loaded model, a shared-prefix runner, the window."""

    max_concurrency = 1

    def __init__(self, loaded: LoadedModel, prefix_cache: bool = True) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.runner = PrefixForward(loaded.model, enabled=prefix_cache)
        self.window = loaded.window

    def close(self) -> None:
        """Free the cached prefix."""
        self.runner.reset()

"""What the in-process Hugging Face backends share: loading, chat rendering, the context window,
and cutting an over-long task prompt in the middle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from transformers import (
    AutoConfig,
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
    """A tokenizer and model ready for inference, with the window they allow.

    `window` is the window in use, `native_window` the one the model was trained for (None when
    its config names none), `rope_scaling` the RoPE scaling in force (None for plain RoPE or no
    RoPE) and `rope_note` what loading changed about it, in words (None when nothing changed).
    """

    tokenizer: PreTrainedTokenizerBase
    model: PreTrainedModel
    window: int
    path: str
    native_window: int | None = None
    rope_scaling: dict[str, Any] | None = None
    rope_note: str | None = None


ROPE_SCALINGS = ("yarn", "linear", "dynamic")
# Base RoPE types a scaling can replace: their parameters are a theta and at most a factor.
_REPLACEABLE_ROPE = frozenset({"default", "linear", "dynamic", "yarn", "llama3"})
_DEFAULT_WINDOW = 4096  # for models whose config names no window


def parse_rope_scaling(spec: str) -> tuple[str, float, int | None]:
    """Return (type, factor, original window or None) from 'yarn:4', 'linear:2', 'dynamic:2' or
    'yarn:4:32768' (YaRN over an original window other than the config's).
    """
    parts = spec.strip().lower().split(":")
    usage = f"--rope-scaling {spec!r}: use TYPE:FACTOR[:ORIGINAL], TYPE one of {ROPE_SCALINGS}"
    if len(parts) not in (2, 3) or parts[0] not in ROPE_SCALINGS:
        raise ValueError(usage)
    try:
        factor = float(parts[1])
        original = int(parts[2]) if len(parts) == 3 else None
    except ValueError:
        raise ValueError(usage) from None
    if not math.isfinite(factor) or factor < 1.0:
        raise ValueError(f"--rope-scaling {spec!r}: the factor must be a number >= 1")
    if original is not None and (parts[0] != "yarn" or original < 1):
        raise ValueError(f"--rope-scaling {spec!r}: an original window goes with yarn only")
    return parts[0], factor, original


@dataclass(frozen=True)
class RopePlan:
    """What loading does to a model's positions: the window, and new RoPE parameters if any."""

    window: int
    native_window: int | None
    rope_scaling: dict[str, Any] | None  # in force after loading
    new_parameters: dict[str, Any] | None  # to set on the config; None: leave it as it is
    note: str | None


def plan_rope(config: Any, max_length: int | None, spec: str | None) -> RopePlan:
    """Return the window and RoPE scaling for `max_length` and an optional `spec` ('yarn:4').

    The native window is the RoPE config's original_max_position_embeddings when it has one,
    else max_position_embeddings. Past what the model covers (its native window, or what a
    scaling in its config already stretches it to) YaRN is applied with factor
    ceil(max_length / native) unless `spec` names a scaling. Raises ValueError for a window the
    model cannot be stretched to (no RoPE, per-layer or multimodal RoPE parameters).
    """
    text = config.get_text_config(decoder=True)
    max_pos = int(getattr(text, "max_position_embeddings", 0) or 0) or None
    params = getattr(text, "rope_parameters", None) or None
    nested = bool(
        params
        and hasattr(text, "nested_rope_parameter_keys")
        and text.nested_rope_parameter_keys(params)
    )
    flat: dict[str, Any] | None = dict(params) if params and not nested else None
    rope_type = str(flat.get("rope_type", "default")) if flat is not None else "none"
    native = int((flat or {}).get("original_max_position_embeddings") or max_pos or 0) or None
    existing = flat if flat is not None and rope_type != "default" else None
    covered = native
    factor_now = (existing or {}).get("factor")
    if native is not None and isinstance(factor_now, (int, float)):
        covered = max(max_pos or 0, int(native * factor_now))
    if spec is None and (max_length is None or covered is None or max_length <= covered):
        return RopePlan(max_length or covered or _DEFAULT_WINDOW, native, existing, None, None)

    if spec is None:
        refused = f"--max-length {max_length} is over the model's {covered}-token window and "
    else:
        refused = f"cannot apply --rope-scaling {spec}: "
    if flat is None:
        raise ValueError(
            refused
            + (
                "its RoPE parameters differ by layer type (set a scaling in its config yourself)"
                if nested
                else "it has no RoPE to scale (absolute or learned positions)"
            )
        )
    if rope_type not in _REPLACEABLE_ROPE or "mrope_section" in flat:
        raise ValueError(refused + f"its RoPE type {rope_type!r} has parameters a scaling loses")
    if spec is None and existing is not None:
        raise ValueError(
            refused + f"it already scales RoPE ({rope_type}): pass --rope-scaling TYPE:FACTOR "
            "to replace that scaling"
        )
    if spec is None:
        if native is None or max_length is None:  # excluded above; this narrows the types
            raise ValueError(refused + "its config names no window")
        kind, factor, base = "yarn", float(math.ceil(max_length / native)), native
        note = (
            f"--max-length {max_length} exceeds the native window of {native} tokens: RoPE scaled "
            f"with YaRN, factor {factor:g}"
        )
    else:
        kind, factor, given = parse_rope_scaling(spec)
        # dynamic NTK rescales past the config's max_position_embeddings, whatever we record
        start = max_pos if kind == "dynamic" else (given or native)
        if start is None:
            raise ValueError(refused + "its config names no max_position_embeddings")
        base = start
        note = f"RoPE scaled with {kind}, factor {factor:g}, over a window of {base} tokens"
    new: dict[str, Any] = {"rope_type": kind, "factor": factor, "rope_theta": flat["rope_theta"]}
    if "partial_rotary_factor" in flat:
        new["partial_rotary_factor"] = flat["partial_rotary_factor"]
    if kind == "yarn":
        new["original_max_position_embeddings"] = base
    return RopePlan(max_length or int(base * factor), native, new, new, note)


def load_hf(
    spec: str | None,
    sequence_classifier: bool,
    dtype: str = "auto",
    max_length: int | None = None,
    attn_implementation: str | None = None,
    rope_scaling: str | None = None,
) -> LoadedModel:
    """Return the model named by `spec` ('default', an HF id or a path) on the best device,
    its RoPE scaled when `rope_scaling` says so or `max_length` exceeds its native window.
    """
    path = resolve_model_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(path)
    config = AutoConfig.from_pretrained(path)
    plan = plan_rope(config, max_length, rope_scaling)
    if plan.new_parameters is not None:
        # Set before the weights load: rotary embeddings compute their frequencies at init.
        text = config.get_text_config(decoder=True)
        text.rope_parameters = dict(plan.new_parameters)
        if hasattr(text, "validate_rope"):
            text.validate_rope()
    cls = AutoModelForSequenceClassification if sequence_classifier else AutoModelForCausalLM
    torch_dtype = parse_dtype(dtype)
    if torch_dtype == "auto" and pick_device().type == "cpu":
        torch_dtype = torch.float32  # bf16 matmuls are slow on most CPUs
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "config": config}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    model = cls.from_pretrained(path, **kwargs)
    model = model.to(pick_device()).eval()  # type: ignore[arg-type]
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return LoadedModel(
        tokenizer=tokenizer,
        model=model,
        window=plan.window,
        path=path,
        native_window=plan.native_window,
        rope_scaling=plan.rope_scaling,
        rope_note=plan.note,
    )


def chat_template_thinking_support(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Return whether the tokenizer's chat template reads `enable_thinking` (Qwen3-style)."""
    template = tokenizer.chat_template
    sources = template.values() if isinstance(template, dict) else [template]
    return any(isinstance(s, str) and "enable_thinking" in s for s in sources)


def _template_kwargs(tokenizer: PreTrainedTokenizerBase, thinking: bool | None) -> dict[str, Any]:
    """Return enable_thinking for templates that read it; None leaves the template's default."""
    if thinking is None or not chat_template_thinking_support(tokenizer):
        return {}
    return {"enable_thinking": thinking}


def render_chat(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    add_generation_prompt: bool,
    thinking: bool | None = False,
) -> str:
    """Return the chat as model text: the tokenizer's chat template, else role-labelled turns.

    `thinking` goes to templates that can think as enable_thinking (None: their default).
    """
    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template(
            messages,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
            **_template_kwargs(tokenizer, thinking),
        )
        return str(text)
    text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return text + ("\n\nassistant: " if add_generation_prompt else "")


def chat_ids(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    add_generation_prompt: bool,
    thinking: bool | None = False,
) -> list[int]:
    """Return the token ids of the chat exactly as apply_chat_template(tokenize=True) gives them
    (the role-labelled fallback's ids for tokenizers without a template).
    """
    if not tokenizer.chat_template:
        return encode(tokenizer, render_chat(tokenizer, messages, add_generation_prompt))
    ids = tokenizer.apply_chat_template(
        messages,
        add_generation_prompt=add_generation_prompt,
        tokenize=True,
        return_dict=False,
        **_template_kwargs(tokenizer, thinking),
    )
    return [int(i) for i in ids]  # type: ignore[arg-type]


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

    def __init__(
        self, loaded: LoadedModel, prefix_cache: bool = True, thinking: bool = False
    ) -> None:
        self.loaded = loaded
        self.tokenizer = loaded.tokenizer
        self.runner = PrefixForward(loaded.model, enabled=prefix_cache)
        self.window = loaded.window
        self.thinking = thinking  # enable_thinking for chat templates that read it

    def info(self) -> dict[str, Any]:
        """Return the model as loaded: window used, native window, RoPE scaling, cache state."""
        return {
            "name": self.loaded.path,
            "window": self.window,
            "native_window": self.loaded.native_window,
            "rope_scaling": self.loaded.rope_scaling,
            "rope_note": self.loaded.rope_note,
            "thinking": self.thinking,
            "thinking_supported": chat_template_thinking_support(self.tokenizer),
            "prefix_cache": self.runner.enabled,
            "prefix_cache_disabled_reason": self.runner.disabled_reason,
            "dtype": str(self.loaded.model.dtype).removeprefix("torch."),
        }

    def close(self) -> None:
        """Free the cached prefix."""
        self.runner.reset()

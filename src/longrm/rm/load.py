"""Turn a model spec and a kind into a RewardModel: the one place that knows every backend.

The options are declared once, each with its flag and help, in `longrm.options`.
"""

from __future__ import annotations

from typing import Literal

from longrm.models import is_sequence_classifier, resolve_model_path
from longrm.options import RewardModelOptions
from longrm.rm.base import RewardModel
from longrm.rm.prompts import PromptSet

Kind = Literal["scalar", "likelihood", "judge", "openai"]
KINDS: tuple[str, ...] = ("scalar", "likelihood", "judge", "openai")


def resolve_kind(spec: str | None, kind: str | None) -> str:
    """Return the backend kind for a spec, checking an explicit choice."""
    is_openai = bool(spec and spec.startswith("openai:"))
    if kind is None:
        if is_openai:
            return "openai"
        return "scalar" if is_sequence_classifier(resolve_model_path(spec)) else "judge"
    if kind not in KINDS:
        raise ValueError(f"unknown --kind {kind!r}: choose one of {', '.join(KINDS)}")
    if (kind == "openai") != is_openai:
        raise ValueError(
            "--kind openai goes with --model openai:NAME@URL, and openai: specs only with it"
        )
    return kind


def load_reward_model(spec: str | None, options: RewardModelOptions | None = None) -> RewardModel:
    """Return the reward model named by spec ('default', HF id, path, or openai:NAME@URL)."""
    opts = options or RewardModelOptions()
    kind = resolve_kind(spec, opts.kind)
    prompts = PromptSet.load(opts.prompts_file)
    if kind == "openai":
        from longrm.rm.openai_api import OpenAIJudge, parse_openai_params, parse_openai_spec

        name, url = parse_openai_spec(spec or "")
        return OpenAIJudge(
            name,
            url,
            verdict=opts.verdict,  # type: ignore[arg-type]
            prompts=prompts,
            max_concurrency=opts.concurrency,
            max_retries=opts.retries,
            timeout=opts.timeout,
            max_tokens=opts.max_new_tokens,
            prefill=opts.prefill,
            request_params=parse_openai_params(opts.openai_params),
            protocol=opts.protocol,
        )
    from longrm.rm.hf_common import load_hf

    loaded = load_hf(
        spec,
        sequence_classifier=kind == "scalar",
        dtype=opts.dtype,
        max_length=opts.max_length,
        attn_implementation=opts.attn_implementation,
        rope_scaling=opts.rope_scaling,
    )
    if kind == "scalar":
        from longrm.rm.hf_sequence import ScalarRewardModel

        return ScalarRewardModel(loaded, prefix_cache=opts.prefix_cache, thinking=opts.thinking)
    if kind == "likelihood":
        from longrm.rm.hf_sequence import LikelihoodRewardModel

        return LikelihoodRewardModel(loaded, prefix_cache=opts.prefix_cache, thinking=opts.thinking)
    from longrm.rm.hf_judge import JudgeRewardModel

    return JudgeRewardModel(
        loaded,
        verdict=opts.verdict,  # type: ignore[arg-type]
        prompts=prompts,
        max_new_tokens=opts.max_new_tokens,
        prefix_cache=opts.prefix_cache,
        protocol=opts.protocol,
        thinking=opts.thinking,
        force_score=opts.force_score,
    )

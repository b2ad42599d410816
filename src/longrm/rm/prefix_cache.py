"""Shared-prefix forward passes: the KV cache of the longest prefix shared with the previous
call is reused, so a long context is encoded once for all candidates and all response orders.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache, PreTrainedModel


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Return the number of leading token ids that a and b share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class PrefixForward:
    """Runs a model over token ids, reusing the cache of the previous call's shared prefix.

    With `enabled=False` every call encodes its ids from scratch: the baseline that
    `--no-prefix-cache` selects and the benchmark compares against.
    """

    def __init__(self, model: PreTrainedModel, enabled: bool = True) -> None:
        self.model = model
        self.enabled = enabled
        self._ids: list[int] = []
        self._cache: DynamicCache | None = None
        self.tokens_computed = 0  # tokens run through the model, for throughput figures
        self.tokens_reused = 0

    def reset(self) -> None:
        """Forget the cached prefix (frees its memory)."""
        self._ids, self._cache = [], None

    def _take_prefix(self, ids: list[int], must_compute_from: int) -> tuple[int, DynamicCache]:
        """Return (k, cache) where the cache holds ids[:k] and k <= must_compute_from."""
        if not self.enabled or self._cache is None:
            self.reset()
            return 0, DynamicCache(config=self.model.config)
        k = min(common_prefix_length(self._ids, ids), must_compute_from, len(ids) - 1)
        if k <= 0:
            self.reset()
            return 0, DynamicCache(config=self.model.config)
        _crop(self._cache, k)
        self._ids = self._ids[:k]
        return k, self._cache

    def _remember(self, ids: list[int], cache: DynamicCache) -> None:
        if self.enabled:
            self._ids, self._cache = list(ids), cache

    @torch.inference_mode()
    def forward(self, ids: list[int], outputs_from: int) -> torch.Tensor:
        """Return the model's outputs for positions outputs_from..len(ids)-1.

        A sequence classifier returns one row (its pooled head at the last position). For a
        causal LM, row j holds the next-token logits after ids[outputs_from + j]; only those
        rows go through the LM head, which keeps an 8K-token call from materialising 8K x vocab.
        """
        if not 0 <= outputs_from < len(ids):
            raise ValueError(f"outputs_from={outputs_from} outside 0..{len(ids) - 1}")
        k, cache = self._take_prefix(ids, outputs_from)
        new = torch.tensor([ids[k:]], dtype=torch.long, device=self.model.device)
        keep = len(ids) - outputs_from
        kwargs: dict[str, Any] = {"input_ids": new, "use_cache": self.enabled, "cache": cache}
        causal = _is_causal_lm(self.model)
        if causal:
            kwargs["logits_to_keep"] = keep
        out = self.model(**kwargs)
        self.tokens_computed += len(ids) - k
        self.tokens_reused += k
        self._remember(ids, cache)
        if not causal:  # a classifier pools the last position: one row of num_labels values
            return out.logits[0].float().reshape(1, -1)
        return out.logits[0, -keep:].float()

    @torch.inference_mode()
    def generate(self, ids: list[int], **gen_kwargs: Any) -> list[int]:
        """Return the ids generated after `ids` (greedy unless gen_kwargs say otherwise)."""
        k, cache = self._take_prefix(ids, len(ids) - 1)
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.model.device)
        out = self.model.generate(  # type: ignore[operator]
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            cache=cache,
            use_cache=True,
            **gen_kwargs,
        )
        self.tokens_computed += len(ids) - k
        self.tokens_reused += k
        generated = out[0, len(ids) :].tolist()
        # The cache now also holds the generated tokens: keep only the prompt for the next call.
        _crop(cache, len(ids))
        self._remember(ids, cache)
        return list(generated)


def _crop(cache: DynamicCache, length: int) -> None:
    """Cut the cache back to its first `length` positions (crop() takes a count to remove)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _is_causal_lm(model: PreTrainedModel) -> bool:
    return type(model).__name__.endswith("ForCausalLM")

"""Shared-prefix forward passes: the KV cache of the longest prefix shared with the previous
call is reused, so a long context is encoded once for all candidates and all response orders.

The cache keeps every position of every layer, sliding-window layers included: the model's own
masks still apply the window, and a cache that holds everything can be cut back to any prefix
(transformers' sliding-window cache layers keep only the last window and cannot). Models with
layers whose state cannot be cut back (convolutions, linear attention, shared KV) run uncached,
with the reason recorded in `PrefixForward.disabled_reason`.

Several sequences that share a prefix (one prompt, many responses) run as right-padded batches
over that prefix's cache, expanded to the batch for the pass and cut back to one row after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from transformers import DynamicCache, PreTrainedModel
from transformers.modeling_layers import GenericForSequenceClassification

# Layer kinds whose cached keys and values are plain per-position tensors, so cropping the cache
# to k positions gives exactly the state after k tokens.
_CROPPABLE_LAYERS = frozenset({"full_attention", "sliding_attention", "chunked_attention"})
# Attention kernels that take an arbitrary additive 4D mask (flash and flex attention do not).
_MASKABLE_ATTENTION = frozenset({"eager", "sdpa"})
# A prefix-tree pass takes at most this many uncached prompt tokens and mask entries with it;
# a longer tail is run first under the model's own causal mask.
_TREE_TAIL = 256
_TREE_MASK = 1 << 25
# A padded batch takes at most this many row positions (rows x longest row, padding included:
# it bounds activations and logits like one call of that length) and this many copied prefix
# positions (rows x prefix: the expanded cache holds one copy of the prefix per row).
_BATCH_TOKENS = 2048
_BATCH_CONTEXT = 1 << 15


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """Return the number of leading token ids that a and b share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def uncroppable_reason(model: PreTrainedModel) -> str | None:
    """Return why the model's cache cannot be cut back to a prefix, or None when it can."""
    config = model.config.get_text_config(decoder=True)
    if getattr(config, "is_encoder_decoder", False):
        return "encoder-decoder models have no single prefix to cache"
    kinds = set(getattr(config, "layer_types", None) or ["full_attention"])
    if getattr(config, "kv_sharing_modes", None) or getattr(config, "num_kv_shared_layers", 0):
        kinds.add("shared_kv")
    bad = sorted(kinds - _CROPPABLE_LAYERS)
    if bad:
        return f"layer types {bad} keep state that cannot be cut back to a shared prefix"
    return None


def sliding_window_of(model: PreTrainedModel) -> int | None:
    """Return the smallest attention window of any layer (sliding or chunked), else None."""
    config = model.config.get_text_config(decoder=True)
    sizes = [getattr(config, "sliding_window", None), getattr(config, "attention_chunk_size", None)]
    windows = [int(s) for s in sizes if isinstance(s, int) and s > 0]
    kinds = set(getattr(config, "layer_types", None) or [])
    if kinds and not kinds & {"sliding_attention", "chunked_attention"}:
        return None  # the config names a window that no layer uses
    return min(windows) if windows else None


class PrefixForward:
    """Runs a model over token ids, reusing the cache of the previous call's shared prefix.

    With `enabled=False` every call encodes its ids from scratch: the baseline that
    `--no-prefix-cache` selects and the benchmark compares against. A call that raises leaves no
    cache behind, so the next call never builds on a half-updated one.
    """

    def __init__(self, model: PreTrainedModel, enabled: bool = True) -> None:
        self.model = model
        reason = uncroppable_reason(model) if enabled else None
        self.enabled = enabled and reason is None
        self.disabled_reason = reason  # why a requested cache is off, for the run's record
        self._ids: list[int] = []
        self._cache: DynamicCache | None = None
        self.tokens_computed = 0  # tokens run through the model, for throughput figures
        self.tokens_reused = 0  # tokens served from the cache (or shared in a prefix tree)

    def reset(self) -> None:
        """Forget the cached prefix (frees its memory)."""
        self._ids, self._cache = [], None

    @contextmanager
    def _reset_on_error(self) -> Iterator[None]:
        """Drop the cache when the body raises: a failed pass may have updated some layers."""
        try:
            yield
        except BaseException:
            self.reset()
            raise

    def _take_prefix(
        self, ids: list[int], must_compute_from: int
    ) -> tuple[int, DynamicCache | None]:
        """Return (k, cache) where the cache holds ids[:k] and k <= must_compute_from; no cache
        when caching is off (the model then builds whatever state it needs itself).
        """
        if not self.enabled:
            return 0, None
        if self._cache is None:
            self.reset()
            return 0, DynamicCache()
        k = min(common_prefix_length(self._ids, ids), must_compute_from, len(ids) - 1)
        if k <= 0:
            self.reset()
            return 0, DynamicCache()
        _crop(self._cache, k)
        self._ids = self._ids[:k]
        return k, self._cache

    def _remember(self, ids: list[int], cache: DynamicCache | None) -> None:
        if cache is not None:
            self._ids, self._cache = list(ids), cache

    @torch.inference_mode()
    def forward(self, ids: list[int], outputs_from: int) -> torch.Tensor:
        """Return the model's outputs for positions outputs_from..len(ids)-1.

        A sequence classifier returns one row (its pooled head at the last position). For a
        causal LM, row j holds the next-token logits after ids[outputs_from + j]; only those
        rows go through the LM head, which keeps an 8K-token call from materialising 8K x vocab.
        """
        _check_outputs_from(ids, outputs_from)
        with self._reset_on_error():
            k, cache = self._take_prefix(ids, outputs_from)
            new = torch.tensor([ids[k:]], dtype=torch.long, device=self.model.device)
            keep = len(ids) - outputs_from
            kwargs: dict[str, Any] = {"input_ids": new, "use_cache": cache is not None}
            if cache is not None:
                kwargs["cache"] = cache
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

    def forward_many(
        self, sequences: list[list[int]], outputs_from: list[int]
    ) -> list[torch.Tensor]:
        """Return `forward(ids, start)` for every (ids, start), their shared prefix encoded once.

        One prompt scored with many responses is the case: the prompt runs once, then the
        responses run together as right-padded batches over its cache (chunks of at most
        _BATCH_TOKENS positions and _BATCH_CONTEXT copied prefix positions). Afterwards the cache
        holds exactly the shared prefix, so a next call with the same prompt still reuses it.
        Without a cache (its layers then could not be expanded to a batch either), for a model
        whose batched outputs are not known to match (a classifier other than transformers'
        generic one), or with under two shared tokens, each sequence runs on its own.
        """
        if len(sequences) != len(outputs_from):
            raise ValueError("one outputs_from per sequence")
        for ids, start in zip(sequences, outputs_from, strict=True):
            _check_outputs_from(ids, start)
        if len(sequences) < 2 or not self._batchable():
            return [self.forward(ids, s) for ids, s in zip(sequences, outputs_from, strict=True)]
        first = sequences[0]
        shared = min(common_prefix_length(first, ids) for ids in sequences[1:])
        p = min(shared, min(outputs_from) + 1)  # every output row comes after the prefix
        if p < 2:
            return [self.forward(ids, s) for ids, s in zip(sequences, outputs_from, strict=True)]
        return self._forward_padded(sequences, outputs_from, first[:p])

    def _batchable(self) -> bool:
        """Return whether padded batches give the outputs `forward` gives, row by row."""
        return self.enabled and (
            _is_causal_lm(self.model) or isinstance(self.model, GenericForSequenceClassification)
        )

    @torch.inference_mode()
    def _forward_padded(
        self, sequences: list[list[int]], outputs_from: list[int], prefix: list[int]
    ) -> list[torch.Tensor]:
        """Run the sequences (all starting with `prefix`) as padded batches over its cache.

        The cache holds the prefix but its last token; each row is that token and the row's own
        tail, padded on the right, so every output row is computed in the batch and row 0 also
        gives the prefix's last position, kept in the cache at the end.
        """
        model, device = self.model, self.model.device
        causal = _is_causal_lm(model)
        n = len(prefix) - 1  # cached positions; every row starts at position n
        pad = model.config.get_text_config(decoder=True).pad_token_id or 0
        results: list[torch.Tensor | None] = [None] * len(sequences)
        chunks = _chunks([len(ids) - n for ids in sequences], n)
        with self._reset_on_error():
            k, cache = self._take_prefix(prefix, n)
            if cache is None:
                raise RuntimeError("padded batches need the prefix cache")
            if k < n:  # the prefix's uncached part, once, as one row
                kwargs: dict[str, Any] = {"logits_to_keep": 1} if causal else {}
                model(
                    input_ids=torch.tensor([prefix[k:n]], device=device),
                    cache=cache,
                    use_cache=True,
                    **kwargs,
                )
            computed = n - k
            for c, chunk in enumerate(chunks):
                rows = [sequences[i][n:] for i in chunk]
                b, t = len(rows), max(map(len, rows))
                input_ids = torch.full((b, t), pad, dtype=torch.long, device=device)
                mask = torch.zeros(b, n + t, dtype=torch.long, device=device)
                mask[:, :n] = 1
                for r, row in enumerate(rows):
                    input_ids[r, : len(row)] = torch.tensor(row, device=device)
                    mask[r, n : n + len(row)] = 1
                batch: dict[str, Any] = {
                    "input_ids": input_ids,
                    "attention_mask": mask,
                    "position_ids": torch.arange(n, n + t, device=device).expand(b, t),
                    "cache": cache,
                    "use_cache": True,
                }
                if b > 1:
                    cache.batch_repeat_interleave(b)
                if causal:
                    skip = min(outputs_from[i] for i in chunk) - n  # rows before it not needed
                    logits = model(**batch, logits_to_keep=t - skip).logits
                    for r, i in enumerate(chunk):
                        start, end = outputs_from[i] - n - skip, len(rows[r]) - skip
                        results[i] = logits[r, start:end].float()
                else:  # the head at each row's last real token (transformers pools by pad id)
                    base = getattr(model, model.base_model_prefix)
                    hidden = base(**batch).last_hidden_state
                    last = torch.tensor([len(row) - 1 for row in rows], device=device)
                    values = cast(Any, model).score(hidden[torch.arange(b, device=device), last])
                    for r, i in enumerate(chunk):
                        results[i] = values[r].float().reshape(1, -1)
                if b > 1:
                    cache.batch_select_indices(torch.tensor([0], device=device))
                # back to the prefix but its last token; after the last chunk, all the prefix
                # (row 0 began with its last token)
                _crop(cache, n + 1 if c == len(chunks) - 1 else n)
                computed += sum(map(len, rows))
            self._remember(prefix, cache)
            # Count as separate passes would: what was not run counts as reused.
            self.tokens_computed += computed
            self.tokens_reused += sum(map(len, sequences)) - computed
        done = [r for r in results if r is not None]
        if len(done) != len(sequences):
            raise RuntimeError("a padded batch left a sequence without outputs")
        return done

    @torch.inference_mode()
    def generate(self, ids: list[int], **gen_kwargs: Any) -> list[int]:
        """Return the ids generated after `ids` (greedy unless gen_kwargs say otherwise)."""
        with self._reset_on_error():
            k, cache = self._take_prefix(ids, len(ids) - 1)
            input_ids = torch.tensor([ids], dtype=torch.long, device=self.model.device)
            if cache is not None:
                gen_kwargs = {**gen_kwargs, "cache": cache}
            out = self.model.generate(  # type: ignore[operator]
                input_ids=input_ids,
                attention_mask=torch.ones_like(input_ids),
                use_cache=True,
                **gen_kwargs,
            )
            self.tokens_computed += len(ids) - k
            self.tokens_reused += k
            generated = out[0, len(ids) :].tolist()
            if cache is not None:  # it also holds the generated tokens: keep only the prompt
                _crop(cache, len(ids))
                self._remember(ids, cache)
        return list(generated)

    def continuation_logprobs(
        self, ids: list[int], continuations: list[list[int]], tree: bool = True
    ) -> list[float]:
        """Return log P(c | ids) for each token list c.

        With `tree` (and a cache, an attention kernel that takes 4D masks, and no attention
        window the tree would cross), all continuations are scored in one forward pass over the
        cached prompt: their tokens form a prefix tree, each node attending to the prompt and its
        own ancestors. Otherwise each continuation is its own pass over the cached prompt.
        """
        if not tree or not self._tree_ok(len(ids) + max(map(len, continuations), default=0)):
            return [self._sequential_logprob(ids, cont) for cont in continuations]
        return self._tree_logprobs(ids, continuations)

    def _tree_ok(self, longest: int) -> bool:
        """Return whether one masked pass gives the same numbers as separate passes."""
        window = sliding_window_of(self.model)
        return (
            self.enabled
            and _is_causal_lm(self.model)
            and self.model.config._attn_implementation in _MASKABLE_ATTENTION
            and (window is None or longest <= window)  # inside the window, masks are causal
        )

    def _sequential_logprob(self, ids: list[int], cont: list[int]) -> float:
        """Return log P(cont | ids) from one pass over ids + cont."""
        if not cont:
            return 0.0
        logits = self.forward(ids + cont, len(ids) - 1)[:-1]
        logprobs = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(cont, device=logprobs.device)[:, None]
        return float(logprobs.gather(1, target).sum())

    @torch.inference_mode()
    def _tree_logprobs(self, ids: list[int], continuations: list[list[int]]) -> list[float]:
        """Return log P(c | ids) for every continuation from one pass over the prompt's
        uncached tail and the continuations' prefix tree.
        """
        if not continuations:
            return []
        n = len(ids)
        nodes, parents, depths, paths = _prefix_tree(continuations)
        inner = sorted({p for p in parents if p >= 0})  # leaves' logits are never needed
        row = {node: 1 + i for i, node in enumerate(inner)}  # row 0: the prompt's last token
        t = len(inner)
        device, dtype = self.model.device, self.model.dtype
        with self._reset_on_error():
            tail = n - min(common_prefix_length(self._ids, ids), n - 1)
            if n > 1 and (tail > _TREE_TAIL or (tail + t) * (n + t) > _TREE_MASK):
                # The model's own causal mask handles a long uncached tail: a 4D mask would take
                # tail x prompt memory. The tree pass then starts at the prompt's last token.
                self.forward(ids[:-1], n - 2)
            k, cache = self._take_prefix(ids, n - 1)
            if cache is None:
                raise RuntimeError("prefix trees need the prefix cache")
            m = n - k
            allowed = torch.zeros(m + t, n + t, dtype=torch.bool, device=device)
            # the prompt's tail sees the prompt causally; every node sees the whole prompt...
            allowed[:m, :n] = torch.ones(m, n, dtype=torch.bool, device=device).tril(k)
            allowed[m:, :n] = True
            for node in inner:
                a = node
                while a >= 0:  # ...and itself and its ancestors, which are inner nodes too
                    allowed[m - 1 + row[node], n - 1 + row[a]] = True
                    a = parents[a]
            mask = torch.zeros(1, 1, m + t, n + t, dtype=dtype, device=device)
            mask.masked_fill_(~allowed, torch.finfo(dtype).min)
            out = self.model(
                input_ids=torch.tensor([ids[k:] + [nodes[i] for i in inner]], device=device),
                position_ids=torch.tensor(
                    [list(range(k, n)) + [n + depths[i] for i in inner]], device=device
                ),
                attention_mask=mask,
                cache=cache,
                use_cache=True,
                logits_to_keep=t + 1,
            )
            _crop(cache, n)  # the tree's keys and values go; the prompt's stay for the next call
            self._remember(ids, cache)
        logprobs = torch.log_softmax(out.logits[0].float(), dim=-1)
        scores = []
        for path in paths:
            total = 0.0
            for parent, child in zip([-1, *path], path, strict=False):
                total += float(logprobs[row.get(parent, 0), nodes[child]])
            scores.append(total)
        # Count as separate passes would: each continuation scored after the whole prompt. What
        # was not run (the cached prompt, shared tree nodes, leaves) counts as reused.
        scored = sum(n + len(c) for c in continuations)
        self.tokens_computed += m + t
        self.tokens_reused += scored - m - t
        return scores


def _prefix_tree(
    continuations: list[list[int]],
) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """Return (token, parent, depth) per node of the continuations' prefix tree, and each
    continuation's path of nodes; parent -1 is the prompt.
    """
    nodes: list[int] = []
    parents: list[int] = []
    depths: list[int] = []
    children: dict[tuple[int, int], int] = {}
    paths = []
    for cont in continuations:
        parent, path = -1, []
        for depth, token in enumerate(cont):
            node = children.get((parent, token))
            if node is None:
                node = len(nodes)
                children[(parent, token)] = node
                nodes.append(token)
                parents.append(parent)
                depths.append(depth)
            path.append(node)
            parent = node
        paths.append(path)
    return nodes, parents, depths, paths


def _check_outputs_from(ids: list[int], outputs_from: int) -> None:
    """Raise ValueError unless outputs_from names a position of ids."""
    if not 0 <= outputs_from < len(ids):
        raise ValueError(f"outputs_from={outputs_from} outside 0..{len(ids) - 1}")


def _chunks(lengths: list[int], context: int) -> list[list[int]]:
    """Return row indices grouped into padded batches, shortest rows first (less padding),
    each within _BATCH_TOKENS row positions and _BATCH_CONTEXT copied prefix positions; a row
    over the limits goes alone.
    """
    chunks: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        rows = len(current) + 1
        if current and (rows * lengths[i] > _BATCH_TOKENS or rows * context > _BATCH_CONTEXT):
            chunks.append(current)
            current = []
        current.append(i)
    chunks.append(current)
    return chunks


def _crop(cache: DynamicCache, length: int) -> None:
    """Cut the cache back to its first `length` positions (crop() takes a count to remove)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


def _is_causal_lm(model: PreTrainedModel) -> bool:
    return type(model).__name__.endswith("ForCausalLM")

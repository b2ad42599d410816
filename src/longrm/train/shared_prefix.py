"""Log-probabilities (Stage II) or scalar rewards (DisRM) of V+1 responses to one long prompt,
with the prompt computed once.

Stage II scores a chosen judgment and V rejected ones after the same long prompt, and a DisRM
rewards a chosen and V rejected answers to it. Sending `[prompt | r_i]` once per response
repeats the prompt's work V+1 times; packing `[prompt | r0 | r1 | ...]` into one sequence does it
once. Each response's tokens see the prompt and their own earlier tokens, never another response
(a block attention mask), and their position ids restart where the prompt ends, so every response
is scored exactly as if it were alone.

How the mask reaches the model (transformers 5.24, `masking_utils._preprocess_mask_arguments`):
a 4-D `attention_mask` (or a FlexAttention `BlockMask`) is passed to the attention layers as
given. SDPA reads a boolean mask (True = attend); eager attention *adds* the mask to the scores,
so it needs a float mask of 0 and the dtype's minimum. Both are built here from one rule
(`_allowed`), and the FlexAttention mask_mod uses the same rule.

The dense mask holds L x L booleans per example (64 MiB at 8K tokens, 1 GiB at 32K): beyond
that, load the model with attn_implementation="flex_attention" on a GPU, which gets a BlockMask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.nn.attention.flex_attention import BlockMask, create_block_mask

from longrm.train.tokens import PromptResponses

PAD_SEGMENT = -1  # segment id of padding; the prompt is segment 0, response i is segment i + 1


@dataclass(frozen=True)
class Packed:
    """One prompt followed by all of its responses, as one sequence."""

    input_ids: list[int]
    position_ids: list[int]
    #: [start, end) of each response in `input_ids`
    spans: list[tuple[int, int]]
    #: per token of `input_ids`, whether its log-probability counts (None: every response token)
    scored: list[bool] | None = None

    @property
    def prompt_length(self) -> int:
        """Return the number of prompt tokens (everything before the first response)."""
        return self.spans[0][0]

    def segments(self) -> list[int]:
        """Return each token's segment: 0 for the prompt, i + 1 for response i."""
        ids = [0] * self.prompt_length
        for i, (start, end) in enumerate(self.spans):
            ids += [i + 1] * (end - start)
        return ids

    def targets(self) -> list[tuple[int, int, int]]:
        """Return (position whose output predicts it, token id, response index) per scored
        response token: a response's first token is predicted by the prompt's last position.
        """
        out = []
        for i, (start, end) in enumerate(self.spans):
            sources = [self.prompt_length - 1, *range(start, end - 1)]
            out += [
                (s, self.input_ids[t], i)
                for s, t in zip(sources, range(start, end), strict=True)
                if self.scored is None or self.scored[t]
            ]
        return out


@dataclass(frozen=True)
class ResponseLogps:
    """Summed log-probabilities of each response's tokens and how many tokens each has."""

    sums: Tensor  # (B, R), float32
    counts: Tensor  # (B, R), int64

    @property
    def means(self) -> Tensor:
        """Return the mean per-token log-probability of each response, (B, R)."""
        return self.sums / self.counts.to(self.sums.dtype)


def _check(example: PromptResponses, where: str) -> None:
    if not example.prompt:
        raise ValueError(f"{where}: the prompt is empty (its last token predicts each response)")
    if not example.responses or any(not r for r in example.responses):
        raise ValueError(f"{where}: every example needs at least one response, none empty")


def pack(example: PromptResponses, prompt_positions: Sequence[int] | None = None) -> Packed:
    """Return `[prompt | r0 | r1 | ...]` with each response's positions restarting at the
    prompt's end (`prompt_positions[-1] + 1`; the prompt is 0..P-1 unless given).
    """
    _check(example, "pack")
    positions = (
        list(range(len(example.prompt))) if prompt_positions is None else list(prompt_positions)
    )
    if len(positions) != len(example.prompt):
        raise ValueError(
            f"{len(positions)} prompt positions for {len(example.prompt)} prompt tokens"
        )
    ids, spans = list(example.prompt), []
    after = positions[-1] + 1
    for response in example.responses:
        spans.append((len(ids), len(ids) + len(response)))
        ids += response
        positions += range(after, after + len(response))
    scored = None
    if example.scored is not None:
        scored = [False] * len(example.prompt) + [f for flags in example.scored for f in flags]
    return Packed(ids, positions, spans, scored)


def segment_ids(packs: Sequence[Packed], length: int | None = None) -> Tensor:
    """Return (B, L) segment ids, right-padded with PAD_SEGMENT to `length` (default: longest)."""
    length = length or max(len(p.input_ids) for p in packs)
    out = torch.full((len(packs), length), PAD_SEGMENT, dtype=torch.long)
    for b, p in enumerate(packs):
        out[b, : len(p.input_ids)] = torch.tensor(p.segments())
    return out


def _allowed(seg_q: Tensor, seg_k: Tensor, q: Tensor, k: Tensor) -> Tensor:
    """Return whether query q may attend to key k (elementwise, broadcasting).

    Causal, and the key is the prompt or in the query's own response. A padding query sees only
    itself: a fully masked row would give NaN in the softmax, and its output is never read.
    """
    real = (seg_q != PAD_SEGMENT) & (seg_k != PAD_SEGMENT)
    same_or_prompt = (seg_k == 0) | (seg_k == seg_q)
    return ((k <= q) & real & same_or_prompt) | (q == k)


def dense_mask(segments: Tensor) -> Tensor:
    """Return the (B, 1, L, L) boolean mask for SDPA (True = attend) from (B, L) segment ids."""
    n = segments.shape[1]
    pos = torch.arange(n, device=segments.device)
    allowed = _allowed(segments[:, :, None], segments[:, None, :], pos[:, None], pos[None, :])
    return allowed[:, None]


def flex_block_mask(segments: Tensor) -> BlockMask:
    """Return a FlexAttention BlockMask with the same rule as `dense_mask`.

    It stores only which 128x128 blocks are needed, so long sequences skip the other responses'
    blocks instead of materialising an L x L mask. Training needs a GPU: torch 2.13 raises
    "FlexAttention does not support backward on CPU".
    """

    def mask_mod(b: Tensor, h: Tensor, q: Tensor, k: Tensor) -> Tensor:
        return _allowed(segments[b, q], segments[b, k], q, k)

    batch, n = segments.shape
    return create_block_mask(mask_mod, batch, None, n, n, device=segments.device)


def attention_mask_for(model: torch.nn.Module, segments: Tensor) -> Tensor | BlockMask:
    """Return the 4-D mask in the form the model's attention implementation reads."""
    # DDP wraps the model without forwarding `.config`; DeepSpeed and FSDP forward it.
    impl = getattr(getattr(model, "module", model).config, "_attn_implementation", None)
    if impl == "sdpa":
        return dense_mask(segments)
    if impl == "eager":
        dtype = next(model.parameters()).dtype
        zero = torch.zeros((), dtype=dtype, device=segments.device)
        return torch.where(dense_mask(segments), zero, torch.finfo(dtype).min)
    if impl == "flex_attention":
        return flex_block_mask(segments)
    raise ValueError(
        f"shared-prefix packing needs attn_implementation 'sdpa', 'eager' or 'flex_attention' "
        f"(got {impl!r}); load the model with one of those, or pass --no-shared-prefix"
    )


def check_parallel_support(
    shared_prefix: bool, context_parallel: int, sequence_parallel: int
) -> None:
    """Return None; raise ValueError when shared-prefix packing meets a parallelism that only
    takes plain causal masks (accelerate context parallelism, DeepSpeed Ulysses).
    """
    if not shared_prefix:
        return
    used = []
    if context_parallel > 1:
        used.append(f"context parallelism (cp_size={context_parallel})")
    if sequence_parallel > 1:
        used.append(f"DeepSpeed Ulysses sequence parallelism (sp_size={sequence_parallel})")
    if used:
        raise ValueError(
            f"shared-prefix packing needs a block attention mask, but {' and '.join(used)} "
            "accepts only plain causal masks: pass --no-shared-prefix (each response as its own "
            "causal sequence) or drop the parallelism"
        )


def _rows(
    batch: Sequence[PromptResponses],
    shared_prefix: bool,
    prompt_positions: Sequence[Sequence[int]] | None,
) -> list[Packed]:
    """Return the sequences to run: one per example packed, or one per (example, response)."""
    if prompt_positions is not None and len(prompt_positions) != len(batch):
        raise ValueError(f"{len(prompt_positions)} prompt_positions for {len(batch)} examples")
    n = len(batch[0].responses) if batch else 0
    rows = []
    for b, example in enumerate(batch):
        _check(example, f"example {b}")
        if len(example.responses) != n:
            raise ValueError(
                f"example {b} has {len(example.responses)} responses, example 0 has {n}: "
                "every example in a batch needs the same number"
            )
        positions = None if prompt_positions is None else prompt_positions[b]
        if shared_prefix:
            rows.append(pack(example, positions))
        else:
            flags: Sequence[list[bool] | None] = (
                example.scored if example.scored is not None else [None] * len(example.responses)
            )
            rows += [
                pack(PromptResponses(example.prompt, [r], None if f is None else [f]), positions)
                for r, f in zip(example.responses, flags, strict=True)
            ]
    return rows


def _inputs(
    batch: Sequence[PromptResponses],
    shared_prefix: bool,
    prompt_positions: Sequence[Sequence[int]] | None,
    pad_id: int,
) -> tuple[list[Packed], Tensor, Tensor, Tensor]:
    """Return the rows to run and their (input_ids, position_ids, segment ids), each (rows, L),
    right-padded."""
    if not batch:
        raise ValueError("empty batch")
    rows = _rows(batch, shared_prefix, prompt_positions)
    length = max(len(r.input_ids) for r in rows)
    input_ids = torch.full((len(rows), length), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        input_ids[i, : len(r.input_ids)] = torch.tensor(r.input_ids)
        position_ids[i, : len(r.input_ids)] = torch.tensor(r.position_ids)
    return rows, input_ids, position_ids, segment_ids(rows, length)


def _mask(model: torch.nn.Module, segments: Tensor, shared_prefix: bool) -> Tensor | BlockMask:
    """Return the block mask of packed rows, or the 2-D padding mask of one sequence per row."""
    if shared_prefix:
        return attention_mask_for(model, segments)
    # An explicit 2-D mask also stops transformers from reading gaps in position ids
    # (positional indices synthesis) as boundaries between packed sequences.
    return (segments != PAD_SEGMENT).long()


def response_logps(
    model: torch.nn.Module,
    batch: Sequence[PromptResponses],
    *,
    shared_prefix: bool = True,
    pad_id: int,
    prompt_positions: Sequence[Sequence[int]] | None = None,
) -> ResponseLogps:
    """Return the summed log-probability and token count of every response given its prompt
    (over the tokens `scored` marks, when an example has it).

    `shared_prefix=False` runs one causal sequence `[prompt | r_i]` per response (the baseline,
    and the only form context parallelism accepts); the numbers are the same either way.
    """
    rows, input_ids, position_ids, segments = _inputs(
        batch, shared_prefix, prompt_positions, pad_id
    )
    n_responses, length = len(batch[0].responses), input_ids.shape[1]
    device = next(model.parameters()).device

    # Each target: the row and position whose output predicts it, its id, and its (example,
    # response) slot. In a packed row the prompt's last position predicts R first tokens.
    row_idx, src, tgt, slot = [], [], [], []
    for i, r in enumerate(rows):
        for s, t, k in r.targets():
            example, response = (i, k) if shared_prefix else divmod(i, n_responses)
            row_idx.append(i)
            src.append(s)
            tgt.append(t)
            slot.append(example * n_responses + response)
    row_t, src_t = torch.tensor(row_idx), torch.tensor(src)
    keep = torch.zeros((len(rows), length), dtype=torch.bool)
    keep[row_t, src_t] = True
    # logits_to_keep as a boolean (rows, L) mask returns logits for the kept positions only,
    # flattened row-major to (kept, vocab); `kept_index` maps (row, position) into that.
    kept_index = keep.view(-1).cumsum(0).view_as(keep) - 1

    logits = model(
        input_ids=input_ids.to(device),
        position_ids=position_ids.to(device),
        attention_mask=_mask(model, segments.to(device), shared_prefix),
        logits_to_keep=keep.to(device),
        use_cache=False,
    ).logits
    which = kept_index[row_t, src_t].to(device)
    picked = logits[which, torch.tensor(tgt, device=device)].float()
    token_logps = picked - torch.logsumexp(logits.float(), dim=-1)[which]

    slots = len(batch) * n_responses
    slot_t = torch.tensor(slot, device=device)
    sums = torch.zeros(slots, device=device).index_add(0, slot_t, token_logps)
    counts = torch.bincount(slot_t, minlength=slots)
    return ResponseLogps(sums.view(len(batch), n_responses), counts.view(len(batch), n_responses))


def tokens_read(batch: tuple[PromptResponses, ...], shared_prefix: bool) -> int:
    """Return the tokens a step reads: the prompt once per row when shared, once per response
    otherwise.
    """
    if shared_prefix:
        return sum(len(x.prompt) + sum(len(r) for r in x.responses) for x in batch)
    return sum(len(x.prompt) * len(x.responses) + sum(len(r) for r in x.responses) for x in batch)


def score_head(model: torch.nn.Module) -> torch.nn.Module:
    """Return the scalar head (`score`) of a sequence-classification model, through the DDP or
    DeepSpeed wrapper (`module`) and a peft model (`get_base_model`)."""
    inner: Any = getattr(model, "module", model)
    if hasattr(inner, "get_base_model"):
        inner = inner.get_base_model()
    head = getattr(inner, "score", None)
    if not isinstance(head, torch.nn.Module):
        raise ValueError(
            f"{type(inner).__name__} has no `score` head: scalar rewards need a model loaded "
            "as AutoModelForSequenceClassification"
        )
    return head


def response_rewards(
    model: torch.nn.Module,
    batch: Sequence[PromptResponses],
    *,
    shared_prefix: bool = True,
    pad_id: int,
) -> Tensor:
    """Return the scalar reward of every response given its prompt, (B, R): the score head at
    the response's last token, where `longrm eval --kind scalar` reads it.

    The model is called whole, so DDP, DeepSpeed and FSDP run their own forward; the head's
    output at every position is read by a forward hook, since the model itself pools only the
    last non-padding token of each row and a packed row holds R responses. `shared_prefix=False`
    runs one sequence `[prompt | r_i]` per response (the baseline); the rewards are the same.
    """
    rows, input_ids, position_ids, segments = _inputs(batch, shared_prefix, None, pad_id)
    n_responses = len(batch[0].responses)
    device = next(model.parameters()).device
    # Row and position of each response's last token, in (example, response) order either way:
    # a packed row holds an example's responses in order, separate rows follow one another.
    row_idx = [i for i, r in enumerate(rows) for _ in r.spans]
    last = [end - 1 for r in rows for _, end in r.spans]

    outputs: list[Tensor] = []
    hook = score_head(model).register_forward_hook(lambda _m, _i, out: outputs.append(out))
    try:
        model(
            input_ids=input_ids.to(device),
            position_ids=position_ids.to(device),
            attention_mask=_mask(model, segments.to(device), shared_prefix),
            use_cache=False,
        )
    finally:
        hook.remove()
    if len(outputs) != 1:
        raise RuntimeError(f"the score head ran {len(outputs)} times in one forward pass")
    values = outputs[0][torch.tensor(row_idx, device=device), torch.tensor(last, device=device)]
    return values[:, 0].float().view(len(batch), n_responses)

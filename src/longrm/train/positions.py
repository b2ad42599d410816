"""Positional indices synthesis (LOGO): short real sequences with position ids of a long window.

Training at 64K tokens costs 64K tokens of activations; LOGO trains on ~8K real tokens whose
position ids spread over the 64K target window, so the model sees long-range position gaps at a
short sequence's cost. The context is cut into chunks (512 tokens) and each chunk is shifted:
- "continuous": one random offset per chunk, ids inside a chunk stay consecutive;
- "sparse": a random offset per token, so ids are scattered across the window;
- "mixed": continuous with probability 0.9, else sparse (drawn once per example).

Offsets are sorted draws from [0, target - length], so ids rise strictly, start at 0 and stay
below `target`. The last `tail` tokens (the question and generation prompt after the context) form
one chunk of their own: they keep consecutive ids in every mode, as in real use, where the question
is read as ordinary text. Responses need nothing here: `response_logps` continues them from the
prompt's last id.
"""

from __future__ import annotations

import random

from longrm.train.tokens import PromptResponses

MODES = ("continuous", "sparse", "mixed")
CONTINUOUS_SHARE = 0.9


def spread_positions(
    length: int,
    target: int,
    rng: random.Random,
    *,
    chunk: int = 512,
    mode: str = "mixed",
    tail: int = 0,
) -> list[int]:
    """Return `length` strictly increasing position ids from 0, all below `target`."""
    if length > target:
        raise ValueError(f"{length} tokens do not fit a target window of {target} positions")
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1 (got {chunk})")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)} (got {mode!r})")
    if not 0 <= tail <= length:
        raise ValueError(f"tail must be between 0 and the length {length} (got {tail})")
    if mode == "mixed":
        mode = "continuous" if rng.random() < CONTINUOUS_SHARE else "sparse"
    body = length - tail
    # Which group each token's offset comes from: its chunk, or itself in sparse mode; the tail
    # is always one group.
    groups = [i // chunk if mode == "continuous" else i for i in range(body)]
    tail_group = (groups[-1] + 1) if groups else 0
    groups += [tail_group] * tail
    n_groups = (groups[-1] + 1) if groups else 0
    slack = target - length
    # The first group starts at 0; non-decreasing offsets keep ids strictly increasing.
    offsets = [0, *sorted(rng.randint(0, slack) for _ in range(n_groups - 1))]
    return [i + offsets[g] for i, g in enumerate(groups)]


def spread_prompt(
    example: PromptResponses,
    target: int,
    rng: random.Random,
    *,
    chunk: int = 512,
    mode: str = "mixed",
    tail: int = 0,
) -> list[int]:
    """Return position ids for the example's prompt, leaving room below `target` for its
    longest response (whose ids follow the prompt's last one).
    """
    room = target - max(len(r) for r in example.responses)
    return spread_positions(len(example.prompt), room, rng, chunk=chunk, mode=mode, tail=tail)

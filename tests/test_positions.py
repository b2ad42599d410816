"""Positional indices synthesis: ids spread over a long window, and they reach the model."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import AutoModelForCausalLM

from longrm.train.positions import spread_positions, spread_prompt
from longrm.train.shared_prefix import response_logps
from longrm.train.tokens import PromptResponses


@pytest.mark.parametrize("mode", ["continuous", "sparse", "mixed"])
def test_ids_rise_from_zero_inside_the_window(mode: str) -> None:
    for seed in range(20):
        ids = spread_positions(100, 1000, random.Random(seed), chunk=16, mode=mode, tail=5)
        assert len(ids) == 100 and ids[0] == 0 and ids[-1] < 1000
        assert all(a < b for a, b in zip(ids, ids[1:], strict=False))


def test_continuous_chunks_stay_consecutive() -> None:
    ids = spread_positions(10, 40, random.Random(0), chunk=4, mode="continuous")
    chunks = [ids[0:4], ids[4:8], ids[8:10]]
    for c in chunks:
        assert c == list(range(c[0], c[0] + len(c)))
    assert ids[-1] > 9  # the chunks did move apart


def test_sparse_spreads_tokens_and_keeps_the_tail() -> None:
    ids = spread_positions(10, 1000, random.Random(0), chunk=4, mode="sparse", tail=3)
    assert ids[-3:] == [ids[-3], ids[-3] + 1, ids[-3] + 2]
    gaps = [b - a for a, b in zip(ids[:7], ids[1:8], strict=False)]
    assert max(gaps) > 1  # per-token offsets, not one per chunk


def test_mixed_draws_mostly_continuous() -> None:
    def consecutive_in_chunk(ids: list[int]) -> bool:
        return all(ids[i + 1] - ids[i] == 1 for i in range(len(ids) - 1) if (i + 1) % 4)

    kinds = [
        consecutive_in_chunk(spread_positions(12, 10_000, random.Random(s), chunk=4))
        for s in range(200)
    ]
    assert 160 <= sum(kinds) < 200  # about 90% continuous; sparse is almost never consecutive


def test_seeded_and_exact_fit() -> None:
    a = spread_positions(50, 500, random.Random(7), chunk=8)
    assert a == spread_positions(50, 500, random.Random(7), chunk=8)
    assert a != spread_positions(50, 500, random.Random(8), chunk=8)
    assert spread_positions(6, 6, random.Random(0), chunk=2) == [0, 1, 2, 3, 4, 5]


def test_too_long_raises() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        spread_positions(11, 10, random.Random(0))


def test_spread_prompt_leaves_room_for_the_longest_response() -> None:
    example = PromptResponses(list(range(8)), [[1, 2], [1, 2, 3, 4, 5]])
    for seed in range(20):
        ids = spread_prompt(example, 20, random.Random(seed), chunk=2, mode="sparse")
        assert ids[-1] + 5 < 20


@pytest.mark.parametrize("shared_prefix", [True, False])
def test_prompt_positions_reach_the_model(tiny_causal, tokenizer, shared_prefix) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal, attn_implementation="sdpa").eval()
    prompt, response = [5, 6, 7, 8, 9, 10], [11, 12, 13]
    example = PromptResponses(prompt, [response, [14]])
    positions = [0, 1, 900, 901, 2500, 2501]  # sparse gaps, as synthesis gives
    with torch.no_grad():
        got = response_logps(
            model, [example], pad_id=0, shared_prefix=shared_prefix, prompt_positions=[positions]
        )
        plain = response_logps(model, [example], pad_id=0, shared_prefix=shared_prefix)
        ids = torch.tensor([prompt + response])
        position_ids = torch.tensor([positions + [2502, 2503, 2504]])
        # a 2-D mask keeps transformers from reading the gaps as packed-sequence boundaries
        logits = model(ids, position_ids=position_ids, attention_mask=torch.ones_like(ids)).logits
    logps = torch.log_softmax(logits[0].float(), dim=-1)
    want = sum(float(logps[5 + j, t]) for j, t in enumerate(response))
    assert float(got.sums[0, 0]) == pytest.approx(want, abs=1e-4)
    assert abs(float(plain.sums[0, 0]) - want) > 1e-3  # the ids changed the scores


def test_trainer_positions_leave_room_for_the_longest_response() -> None:
    from longrm.train.features import prompt_positions

    example = PromptResponses(list(range(30)), [[1] * 9, [2] * 4])
    assert prompt_positions(example, None, "sparse", random.Random(0)) is None
    for seed in range(20):
        ids = prompt_positions(example, 40, "sparse", random.Random(seed))
        assert ids is not None and len(ids) == 30
        assert ids[-1] + 9 < 40  # the 9-token response's last id stays inside the window

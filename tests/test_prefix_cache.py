"""Shared-prefix forward passes give the same numbers as encoding every sequence from scratch."""

from __future__ import annotations

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

from longrm.rm.prefix_cache import PrefixForward, common_prefix_length


def test_common_prefix_length() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4, 5]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([1, 2], [1, 2]) == 2


def test_cached_logits_equal_full_forward(tiny_causal: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    runner = PrefixForward(model, enabled=True)
    prompt = list(range(100, 400))
    calls = [(prompt + [5, 6, 7], 290), (prompt + [8, 9], 290), (prompt[:250] + [11, 12], 240)]
    for ids, start in calls:
        got = runner.forward(ids, start)
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0, start:]
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4)
    # the second call reused the whole prompt (300 tokens, capped at its start 290), the third
    # the 250 tokens it shares with the second (capped at 240)
    assert runner.tokens_reused == 290 + 240
    assert runner.tokens_computed == 303 + (302 - 290) + (252 - 240)


def test_disabled_cache_reuses_nothing(tiny_causal: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    runner = PrefixForward(model, enabled=False)
    for _ in range(2):
        runner.forward(list(range(100, 200)), 150 - 100)
    assert runner.tokens_reused == 0 and runner.tokens_computed == 200


def test_generate_with_cache_matches_uncached(tiny_causal: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    cached, plain = PrefixForward(model, True), PrefixForward(model, False)
    a = list(range(300, 500))
    b = a[:150] + list(range(900, 940))
    for ids in (a, b, a):
        assert cached.generate(ids, max_new_tokens=6, do_sample=False) == plain.generate(
            ids, max_new_tokens=6, do_sample=False
        )
    assert cached.tokens_reused >= 150


def test_classifier_scores_match(tiny_scalar: str) -> None:
    model = AutoModelForSequenceClassification.from_pretrained(tiny_scalar).eval()
    runner = PrefixForward(model, True)
    for ids in (list(range(100, 300)), list(range(100, 250)) + [3, 4], list(range(100, 300))):
        got = runner.forward(ids, len(ids) - 1)
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits
        assert got.shape == (1, 1)
        assert torch.allclose(got, want, atol=1e-5)

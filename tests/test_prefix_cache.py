"""Shared-prefix forward passes give the same numbers as encoding every sequence from scratch."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    Gemma2Config,
    Gemma2ForCausalLM,
    Lfm2Config,
    Lfm2ForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedModel,
)

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


class _FailOnce:
    """A forward (pre-)hook that raises on its `at`-th call and never again."""

    def __init__(self, at: int = 1) -> None:
        self.calls, self.at = 0, at

    def __call__(self, *_: object) -> None:
        self.calls += 1
        if self.calls == self.at:
            raise RuntimeError("injected failure")


def test_failed_forward_leaves_no_half_updated_cache(tiny_causal: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    runner = PrefixForward(model, enabled=True)
    prompt = list(range(100, 400))
    runner.forward(prompt + [5, 6], 290)
    # layer 0 appends the new tokens to its cache, then layer 1 fails before its own update
    handle = model.model.layers[1].register_forward_pre_hook(_FailOnce())
    with pytest.raises(RuntimeError, match="injected"):
        runner.forward(prompt + [7, 8, 9], 299)
    for ids in (prompt + [7, 8, 9], prompt[:200] + [3]):
        got = runner.forward(ids, len(ids) - 3)
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0, len(ids) - 3 :]
        assert torch.allclose(got, want, atol=1e-4)
    handle.remove()


def test_failed_generate_leaves_no_half_updated_cache(tiny_causal: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    cached, plain = PrefixForward(model, True), PrefixForward(model, False)
    a = list(range(300, 500))
    cached.generate(a, max_new_tokens=4, do_sample=False)
    # fails at the third decoding step, after the cache grew by the prompt's tail and two tokens
    handle = model.model.layers[0].register_forward_hook(_FailOnce(at=3))
    with pytest.raises(RuntimeError, match="injected"):
        cached.generate(a[:150] + list(range(900, 940)), max_new_tokens=6, do_sample=False)
    for ids in (a[:150] + list(range(900, 940)), a):
        assert cached.generate(ids, max_new_tokens=6, do_sample=False) == plain.generate(
            ids, max_new_tokens=6, do_sample=False
        )
    handle.remove()


# The size of every tiny random model built here: a few thousand parameters, one shape.
_TINY_SHAPE: dict[str, int] = dict(
    vocab_size=600,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def _sliding(kind: str, window: int) -> PreTrainedModel:
    """Return a tiny random model whose attention window is `window` tokens."""
    torch.manual_seed(0)
    common = dict(**_TINY_SHAPE, max_position_embeddings=1024, sliding_window=window)
    if kind == "mistral":  # every layer slides
        return MistralForCausalLM(MistralConfig(**common)).eval()
    # Gemma-2: sliding and full layers alternate
    return Gemma2ForCausalLM(Gemma2Config(head_dim=16, **common)).eval()


@pytest.mark.parametrize("kind", ["mistral", "gemma2"])
def test_sliding_window_models_crop_exactly(kind: str) -> None:
    model = _sliding(kind, window=32)
    wide = _sliding(kind, window=4096)  # same weights, a window wider than every prompt
    wide.load_state_dict(model.state_dict())
    runner = PrefixForward(model, enabled=True)
    assert runner.enabled and runner.disabled_reason is None
    prompt = list(range(100, 300))  # 200 tokens: six windows
    calls = [(prompt + [5, 6, 7], 190), (prompt + [8, 9], 195), (prompt[:120] + [11, 12], 100)]
    for ids, start in calls:
        got = runner.forward(ids, start)
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0, start:]
            unwindowed = wide(torch.tensor([ids])).logits[0, start:]
        assert torch.allclose(got, want, atol=1e-4)
        assert not torch.allclose(got, unwindowed, atol=1e-2)  # the window shaped the numbers
    assert runner.tokens_reused == 195 + 100
    plain = PrefixForward(model, enabled=False)
    for ids in (prompt, prompt[:150] + [3, 4, 5], prompt):
        assert runner.generate(ids, max_new_tokens=5, do_sample=False) == plain.generate(
            ids, max_new_tokens=5, do_sample=False
        )
    # a prefix tree would cross the window: verdicts fall back to one pass each, same numbers
    conts = [[5, 6, 7], [5, 6, 8], [9]]
    tree = runner.continuation_logprobs(prompt, conts, tree=True)
    assert tree == pytest.approx(runner.continuation_logprobs(prompt, conts, tree=False), abs=1e-4)


def test_uncroppable_layers_run_uncached() -> None:
    torch.manual_seed(0)
    config = Lfm2Config(**_TINY_SHAPE, layer_types=["conv", "full_attention"])
    model = Lfm2ForCausalLM(config).eval()
    runner = PrefixForward(model, enabled=True)
    assert not runner.enabled and "conv" in str(runner.disabled_reason)
    prompt = list(range(100, 200))
    for ids in (prompt + [5, 6], prompt + [7, 8]):
        got = runner.forward(ids, 90)
        with torch.no_grad():
            want = model(torch.tensor([ids])).logits[0, 90:]
        assert torch.allclose(got, want, atol=1e-4)
    assert runner.tokens_reused == 0
    assert PrefixForward(model, enabled=False).disabled_reason is None  # nothing was asked


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_prefix_tree_logprobs_equal_one_pass_each(tiny_causal: str, attn: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal, attn_implementation=attn).eval()
    runner = PrefixForward(model, enabled=True)
    prompt = list(range(100, 400))
    # shared prefixes, a continuation that is a prefix of another, one token, and none
    conts = [[5, 6, 7, 8], [5, 6, 9], [5, 11], [12], [5, 6, 7, 8, 13], []]
    before = runner.tokens_computed
    tree = runner.continuation_logprobs(prompt, conts, tree=True)
    tree_cost = runner.tokens_computed - before
    one_by_one = runner.continuation_logprobs(prompt, conts, tree=False)
    assert tree == pytest.approx(one_by_one, abs=1e-4)
    assert tree[-1] == 0.0 and len(set(tree)) == len(tree)
    # the prompt once, then the tree's inner nodes 5, 5-6, 5-6-7, 5-6-7-8 (leaves never run)
    assert tree_cost == 300 + 4
    with torch.no_grad():  # and both agree with a plain forward over the whole sequence
        ids = prompt + conts[0]
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, 299:-1], dim=-1)
    want = float(logp.gather(1, torch.tensor(conts[0])[:, None]).sum())
    assert tree[0] == pytest.approx(want, abs=1e-4)
    # a prompt sharing 250 tokens: its 30-token tail runs in the same pass as the tree
    other = prompt[:250] + list(range(900, 930))
    before = runner.tokens_computed
    tree = runner.continuation_logprobs(other, conts, tree=True)
    assert runner.tokens_computed - before == 30 + 4
    assert tree == pytest.approx(runner.continuation_logprobs(other, conts, tree=False), abs=1e-4)
    # the prompt's cache is intact: the next call reuses it
    before = runner.tokens_reused
    assert runner.forward(other + [3], 280).shape == (1, model.config.vocab_size)
    assert runner.tokens_reused - before == 280


# ------------------------------------------------------------------------------------------------
# several sequences over one shared prefix: right-padded batches over its cache


def _plain_outputs(model: PreTrainedModel, ids: list[int], start: int) -> torch.Tensor:
    """Return what `PrefixForward.forward(ids, start)` should give, from one uncached pass."""
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits
    return logits if logits.dim() == 2 else logits[0, start:]


def _assert_forward_many_matches(
    runner: PrefixForward, seqs: list[list[int]], starts: list[int], atol: float = 1e-4
) -> int:
    """Check forward_many against one uncached pass per sequence; return its model passes."""
    calls: list[int] = []
    handle = runner.model.base_model.register_forward_hook(lambda *_: calls.append(1))
    try:
        got = runner.forward_many(seqs, starts)
    finally:
        handle.remove()
    assert len(got) == len(seqs)
    for out, ids, start in zip(got, seqs, starts, strict=True):
        want = _plain_outputs(runner.model, ids, start)
        assert out.shape == want.shape
        assert torch.allclose(out, want, atol=atol), (out - want).abs().max()
    return len(calls)


def test_padded_batch_logits_equal_one_pass_each(tiny_causal: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    runner = PrefixForward(model, enabled=True)
    prefix = list(range(100, 400))
    # one token, sixty, none, a pad token inside, a repeat of the prefix's start
    tails = [[5], list(range(700, 760)), [], [9, 2, 9], prefix[:40]]
    seqs = [prefix + t for t in tails]
    starts = [299, 310, 299, 299, 330]
    # the prefix once, then all five rows in one padded pass
    assert _assert_forward_many_matches(runner, seqs, starts) == 2
    # the prefix but its last token computed once, then each row: that token and its tail
    computed = 299 + sum(1 + len(t) for t in tails)
    assert runner.tokens_computed == computed
    assert runner.tokens_reused == sum(map(len, seqs)) - computed
    # the cache holds exactly the prefix, one row: the next call reuses all of it, same numbers
    before = runner.tokens_reused
    assert torch.allclose(
        runner.forward(prefix + [7, 8], 300), _plain_outputs(model, prefix + [7, 8], 300), atol=1e-4
    )
    assert runner.tokens_reused - before == 300
    # warm: a prompt sharing 250 tokens encodes its 49 new ones (not the last) before the rows
    other = prefix[:250] + list(range(800, 850))
    before = runner.tokens_computed
    _assert_forward_many_matches(runner, [other + [1, 2], other + [3]], [299, 299])
    assert runner.tokens_computed - before == 49 + 3 + 2


def test_padded_batch_classifier_values_equal_one_pass_each(tiny_scalar: str) -> None:
    """The head is read at each row's own last token, whatever padding follows it."""
    model = AutoModelForSequenceClassification.from_pretrained(tiny_scalar).eval()
    runner = PrefixForward(model, enabled=True)
    prefix = list(range(100, 300))
    tails = [[5], list(range(700, 790)), [], [9, 2, 9], [4, 4]]
    seqs = [prefix + t for t in tails]
    assert _assert_forward_many_matches(runner, seqs, [len(s) - 1 for s in seqs], 1e-5) == 2
    assert runner.tokens_computed == 199 + sum(1 + len(t) for t in tails)
    values = [float(v) for v in runner.forward_many(seqs, [len(s) - 1 for s in seqs])]
    assert len({round(v, 5) for v in values}) == len(values)  # padding did not pool one row


def test_padded_batches_split_into_chunks(
    tiny_causal: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from longrm.rm import prefix_cache

    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    prefix = list(range(100, 400))
    tails = [list(range(500, 500 + n)) for n in (3, 40, 1, 25, 60, 8)]
    seqs = [prefix + t for t in tails]
    starts = [299] * len(seqs)
    for tokens, context in ((90, 1 << 15), (4096, 700)):
        monkeypatch.setattr(prefix_cache, "_BATCH_TOKENS", tokens)
        monkeypatch.setattr(prefix_cache, "_BATCH_CONTEXT", context)
        runner = PrefixForward(model, enabled=True)
        # the prefix, then three chunks within the limits
        assert _assert_forward_many_matches(runner, seqs, starts) == 1 + 3
        before = runner.tokens_reused
        runner.forward(prefix + [7], 299)
        assert runner.tokens_reused - before == 299  # the cache is the prefix after chunks too


@pytest.mark.parametrize("kind", ["mistral", "gemma2"])
def test_padded_batches_on_sliding_window_models(kind: str) -> None:
    model = _sliding(kind, window=32)
    runner = PrefixForward(model, enabled=True)
    prefix = list(range(100, 300))
    tails = [[5], list(range(400, 450)), [6, 7, 8]]  # fifty tokens cross the window
    _assert_forward_many_matches(runner, [prefix + t for t in tails], [199, 210, 199])


def test_without_a_cache_each_sequence_runs_alone() -> None:
    torch.manual_seed(0)
    model = Lfm2ForCausalLM(Lfm2Config(**_TINY_SHAPE, layer_types=["conv", "full_attention"]))
    runner = PrefixForward(model.eval(), enabled=True)
    prefix = list(range(100, 200))
    seqs = [prefix + [5, 6], prefix + [7]]
    assert _assert_forward_many_matches(runner, seqs, [99, 99]) == 2
    assert runner.tokens_computed == sum(map(len, seqs)) and runner.tokens_reused == 0


def test_failed_padded_batch_leaves_no_half_updated_cache(tiny_causal: str) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_causal).eval()
    runner = PrefixForward(model, enabled=True)
    prefix = list(range(100, 400))
    seqs = [prefix + [5, 6], prefix + list(range(600, 630))]
    # the second pass is the padded one: layer 0 grows the expanded cache, layer 1 fails
    handle = model.model.layers[1].register_forward_pre_hook(_FailOnce(at=2))
    with pytest.raises(RuntimeError, match="injected"):
        runner.forward_many(seqs, [299, 299])
    handle.remove()
    _assert_forward_many_matches(runner, seqs, [299, 299])
    _assert_forward_many_matches(runner, [prefix[:200] + [3], prefix[:200] + [4, 5]], [199, 199])

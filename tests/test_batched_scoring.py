"""Responses to one prompt scored together (one encoded prompt, one padded batch of responses)
give the numbers of one pass per response, and the serve batcher makes one `score_many` call per
prompt of a batch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict, ranking_from_scores
from longrm.rm.hf_sequence import SequenceScorer
from longrm.rm.load import RewardModelOptions, load_reward_model
from longrm.serve.batching import Batcher, Unit
from longrm.serve.service import RewardService, ServeSettings, prompt_key

CONTEXT = " ".join(f"Entry {i}: the tug Marit towed {i % 5} barges of gravel." for i in range(40))
PROMPT: Messages = [{"role": "user", "content": f"{CONTEXT}\nHow many barges in entry 7?"}]
LONG = " ".join(f"Entry {i} names {i % 5} barges." for i in range(30))
# one word, a long answer, an empty one, one that ends in the pad (= eos) token, two that differ
# only at their end
RESPONSES = ["Two.", LONG, "", "Two barges.<|im_end|>", "Entry 7: two barges.", "Entry 7: none."]
# the default template ends a turn with "<|im_end|>\n"; this one ends it with the pad token
# itself, so the scalar model's trailing-pad rule applies to every response
NO_NEWLINE = ("'<|im_end|>' + '\n'", "'<|im_end|>'")


def _load(path: str, kind: str, template: str, room: int | None = None) -> SequenceScorer:
    """Load a scorer; with `room`, its window leaves that many tokens beside PROMPT."""
    rm = load_reward_model(path, RewardModelOptions(kind=kind))
    assert isinstance(rm, SequenceScorer)
    if room is not None:
        rm.window = len(rm._head(PROMPT)) + room
    if template == "no-newline":
        old, new = NO_NEWLINE
        assert old in str(rm.tokenizer.chat_template)
        rm.tokenizer.chat_template = str(rm.tokenizer.chat_template).replace(old, new)
    return rm


def _sequential(rm: SequenceScorer, prompt: Messages, responses: list[str]) -> Any:
    """Return scores() as one pass per response gives it (the reference), from a cold cache."""
    rm.close()
    rm.batched = False
    try:
        return rm.scores(prompt, responses)
    finally:
        rm.batched = True
        rm.close()


@pytest.mark.parametrize("template", ["default", "no-newline"])
@pytest.mark.parametrize("kind", ["scalar", "likelihood"])
def test_batched_scores_equal_one_pass_each(
    kind: str, template: str, tiny_scalar: str, tiny_causal: str
) -> None:
    rm = _load(tiny_scalar if kind == "scalar" else tiny_causal, kind, template)
    values, truncated, n_tokens = _sequential(rm, PROMPT, RESPONSES)
    calls: list[int] = []
    handle = rm.loaded.model.model.register_forward_hook(lambda *_: calls.append(1))
    before = rm.runner.tokens_computed
    got = rm.scores(PROMPT, RESPONSES)
    computed = rm.runner.tokens_computed - before
    handle.remove()
    # the random scalar head's values lie within 1e-3 of each other: compare closer than that
    assert got[0] == pytest.approx(values, abs=1e-5)
    assert len({round(v, 5) for v in values}) == len(RESPONSES)  # ... and no two alike
    assert got[1:] == (truncated, n_tokens) and not truncated
    assert len(calls) == 2  # the prompt, then every response in one padded pass
    splits = [rm._split(PROMPT, r) for r in RESPONSES]
    # the prompt was encoded once: what ran beyond the responses' own tokens is one prompt
    response_tokens = sum(len(r) for _, r in splits)
    assert computed - response_tokens <= n_tokens + len(RESPONSES)
    rm.close()


@pytest.mark.parametrize("kind", ["scalar", "likelihood"])
def test_batched_scores_of_a_cut_prompt(kind: str, tiny_scalar: str, tiny_causal: str) -> None:
    rm = _load(tiny_scalar if kind == "scalar" else tiny_causal, kind, "default", room=40)
    values, truncated, n_tokens = _sequential(rm, PROMPT, RESPONSES)
    assert truncated
    got = rm.scores(PROMPT, RESPONSES)
    assert got[0] == pytest.approx(values, abs=1e-5) and got[1:] == (True, n_tokens)
    rm.close()


@pytest.mark.parametrize("kind", ["scalar", "likelihood"])
def test_score_many_gives_what_score_gives(kind: str, tiny_scalar: str, tiny_causal: str) -> None:
    """Each response's prompt is cut as `score` would cut it alone: the long response's prompt
    is cut more than the short ones', which still run together.
    """
    rm = _load(tiny_scalar if kind == "scalar" else tiny_causal, kind, "default", room=40)
    alone = [rm.score(PROMPT, r) for r in RESPONSES]
    rm.close()
    calls: list[int] = []
    handle = rm.loaded.model.model.register_forward_hook(lambda *_: calls.append(1))
    many = rm.score_many(PROMPT, RESPONSES)
    handle.remove()
    assert many == pytest.approx(alone, abs=1e-5)
    assert len(calls) == 2 + 1  # the whole prompt and the short ones' batch; the long one alone
    assert rm._fit(PROMPT, LONG)[1] and not rm._fit(PROMPT, RESPONSES[0])[1]
    assert rm.score_many(PROMPT, []) == []
    rm.close()


# ------------------------------------------------------------------------------------------------
# the serve batcher: one score_many call per prompt of a batch


class CountingModel(RewardModel):
    """Scores a response by its length (plus 100 per prompt turn); records every call and fails
    any call on the prompt 'bad'.
    """

    name = "counting"

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, list[str]]] = []

    def _value(self, prompt: Messages, response: str) -> float:
        if prompt[0]["content"] == "bad":
            raise ValueError("bad prompt")
        return 100.0 * len(prompt) + len(response)

    def score(self, prompt: Messages, response: str) -> float:
        self.calls.append(("score", prompt[0]["content"], [response]))
        return self._value(prompt, response)

    def score_many(self, prompt: Messages, responses: Sequence[str]) -> list[float]:
        self.calls.append(("score_many", prompt[0]["content"], list(responses)))
        return [self._value(prompt, r) for r in responses]

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        scores = [self._value(prompt, r) for r in responses]
        return Verdict(ranking=ranking_from_scores(scores), scores=scores)


def _user(text: str) -> Messages:
    return [{"role": "user", "content": text}]


@pytest.fixture
def batcher() -> Iterator[tuple[Batcher, CountingModel, RewardService]]:
    model = CountingModel()
    service = RewardService(model, ServeSettings())
    batcher = Batcher(model, queue_size=32, max_batch=32, batch_wait=0.3)
    yield batcher, model, service
    batcher.close()


def _hold(batcher: Batcher, gate: threading.Event) -> Any:
    """Queue a call that blocks the worker until `gate` opens; return its future."""
    return batcher.submit([Unit("", lambda _: gate.wait(10))])


def test_batcher_scores_each_prompt_of_a_batch_in_one_call(
    batcher: tuple[Batcher, CountingModel, RewardService],
) -> None:
    b, model, service = batcher
    first, second = threading.Event(), threading.Event()
    _hold(b, first)
    while not b.busy:
        time.sleep(0.01)
    a, c = _user("A"), _user("C")
    jobs = {
        "a12": b.submit(service.score_units(a, ["a1", "a22"])),
        "c1": b.submit(service.score_units(c, ["c333"])),
        "mixed": b.submit(service.score_units(c, ["c4"]) + service.score_units(a, ["a5"])),
        "bad": b.submit(service.score_units(_user("bad"), ["x", "y"])),
        "gone": b.submit(service.score_units(a, ["a6"])),
        # a call on prompt A that is no score: it runs on its own
        "rank": b.submit([Unit(prompt_key(a), lambda m: m.rank(a, ["r1"]).scores)]),
    }
    held = _hold(b, second)  # in the same batch, it runs first (its prompt key ran last)
    first.set()
    while b.depth:  # the batch is taken: withdraw a request that is running
        time.sleep(0.01)
    b.withdraw(jobs["gone"])
    second.set()
    assert held.result(10) == [True]
    assert jobs["a12"].result(10) == [102.0, 103.0]
    assert jobs["c1"].result(10) == [104.0]
    assert jobs["mixed"].result(10) == [102.0, 102.0]  # in the request's order
    assert jobs["rank"].result(10) == [[102.0]]
    with pytest.raises(ValueError, match="bad prompt"):
        jobs["bad"].result(10)
    with pytest.raises(RuntimeError, match="withdrawn"):
        jobs["gone"].result(10)
    # one call per prompt, in key order; the withdrawn request's response dropped out
    expected = [
        ("score_many", "A", ["a1", "a22", "a5"]),
        ("score_many", "C", ["c333", "c4"]),
        ("score_many", "bad", ["x", "y"]),
    ]
    expected.sort(key=lambda call: prompt_key(_user(call[1])))
    assert model.calls == expected
    # the next batch starts with the prompt that ran last (the model has it cached)
    model.calls.clear()
    later = [b.submit(service.score_units(p, ["z"])) for p in (a, c, _user("bad"))]
    assert later[0].result(10) == [101.0] and later[1].result(10) == [101.0]
    with pytest.raises(ValueError, match="bad prompt"):
        later[2].result(10)
    order = [call[1] for call in expected]
    assert [call[1] for call in model.calls] == [order[-1], *order[:-1]]


def test_models_that_do_not_batch_keep_one_call_per_unit() -> None:
    """A model without its own score_many gets one score call per unit, as before."""

    class Plain(RewardModel):
        def __init__(self) -> None:
            self.calls: list[str] = []

        def score(self, prompt: Messages, response: str) -> float:
            self.calls.append(response)
            return float(len(response))

        def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
            raise NotImplementedError

    model = Plain()
    service = RewardService(model, ServeSettings())
    b = Batcher(model, queue_size=8, max_batch=8, batch_wait=0.3)
    gate = threading.Event()
    _hold(b, gate)
    while not b.busy:
        time.sleep(0.01)
    futures = [b.submit(service.score_units(_user("A"), [r])) for r in ("x", "yy")]
    gate.set()
    assert [f.result(10) for f in futures] == [[1.0], [2.0]]
    assert model.calls == ["x", "yy"]
    b.close()

"""In-process reward models on tiny random models: same numbers with and without the prefix
cache, verdict modes, pointwise scores, and cutting over-long prompts in the middle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from longrm.rm.hf_common import TRUNCATION_MARKER, PromptTooLongError
from longrm.rm.load import RewardModelOptions, load_reward_model, resolve_kind

CONTEXT = " ".join(f"Record {i}: the barge Tilde carried {i % 7} sacks of salt." for i in range(60))
PROMPT = [{"role": "user", "content": f"<context>{CONTEXT}</context>\nHow many sacks on record 9?"}]
GOOD = "Record 9 says the barge carried 2 sacks of salt."
BAD = "Record 9 says the barge carried 5 sacks of flour."
MEH = "The barge carried salt."


def _load(path: str, **kw: object):  # type: ignore[no-untyped-def]
    return load_reward_model(path, RewardModelOptions(**kw))  # type: ignore[arg-type]


def test_kind_resolution(tiny_causal: str, tiny_scalar: str) -> None:
    assert resolve_kind(tiny_causal, None) == "judge"
    assert resolve_kind(tiny_scalar, None) == "scalar"
    assert resolve_kind("openai:m@http://127.0.0.1:1/v1", None) == "openai"
    with pytest.raises(ValueError, match="unknown --kind"):
        resolve_kind(tiny_causal, "oracle")
    with pytest.raises(ValueError, match="openai"):
        resolve_kind(tiny_causal, "openai")


@pytest.mark.parametrize("kind", ["likelihood", "scalar"])
def test_sequence_scores_same_with_and_without_cache(
    kind: str, tiny_causal: str, tiny_scalar: str
) -> None:
    path = tiny_scalar if kind == "scalar" else tiny_causal
    cached = _load(path, kind=kind)
    plain = _load(path, kind=kind, prefix_cache=False)
    for responses in ([GOOD, BAD, MEH], [MEH, GOOD, BAD]):
        a, b = cached.rank(PROMPT, responses), plain.rank(PROMPT, responses)
        assert a.scores == pytest.approx(b.scores, abs=1e-4)
        assert a.ranking == sorted(range(3), key=lambda i: -a.scores[i])
        assert not a.truncated and a.prompt_tokens > 500
    assert cached.runner.tokens_reused > 3 * 500  # the prompt was encoded once per call
    assert plain.runner.tokens_reused == 0
    assert cached.score(PROMPT, GOOD) == pytest.approx(a.scores[1], abs=1e-4)


def test_likelihood_is_length_normalised(tiny_causal: str) -> None:
    rm = _load(tiny_causal, kind="likelihood")
    short = rm.score(PROMPT, GOOD)
    repeated = rm.score(PROMPT, " ".join([GOOD] * 8))
    assert -20 < short < 0 and -20 < repeated < 0  # a mean, not a sum over tokens


def test_logprob_judge_probabilities(tiny_causal: str) -> None:
    rm = _load(tiny_causal, kind="judge", verdict="logprob")
    pair = rm.rank(PROMPT, [GOOD, BAD])
    assert sum(pair.scores) == pytest.approx(1.0, abs=1e-5)
    assert pair.ranking == ([0, 1] if pair.scores[0] >= pair.scores[1] else [1, 0])
    assert pair.text in ("[[A]]", "[[B]]")
    three = rm.rank(PROMPT, [GOOD, BAD, MEH])
    assert sorted(three.ranking) == [0, 1, 2] and sum(three.scores) == pytest.approx(1.0, abs=1e-5)
    plain = _load(tiny_causal, kind="judge", verdict="logprob", prefix_cache=False)
    assert plain.rank(PROMPT, [GOOD, BAD]).scores == pytest.approx(pair.scores, abs=1e-4)
    assert 0.0 <= rm.score(PROMPT, GOOD) <= 10.0


def test_generate_judge_keeps_text_and_counts_failures(tiny_causal: str) -> None:
    cached = _load(tiny_causal, kind="judge", max_new_tokens=8)
    plain = _load(tiny_causal, kind="judge", max_new_tokens=8, prefix_cache=False)
    first = cached.rank(PROMPT, [GOOD, BAD])
    swapped = cached.rank(PROMPT, [BAD, GOOD])
    assert first.text and first.scores is None
    assert first.ranking is None  # a random model does not write [[A]]: a parse failure
    assert swapped.text == plain.rank(PROMPT, [BAD, GOOD]).text
    assert cached.runner.tokens_reused > 500  # the context's cache served the second order


def test_over_long_prompt_is_cut_in_the_middle(tiny_causal: str) -> None:
    rm = _load(tiny_causal, kind="judge", verdict="logprob", max_length=400)
    verdict = rm.rank(PROMPT, [GOOD, BAD])
    assert verdict.truncated and verdict.prompt_tokens <= 400 - 24
    seq = _load(tiny_causal, kind="likelihood", max_length=300)
    assert seq.rank(PROMPT, [GOOD, BAD]).truncated
    fitted = rm.prompts.judge_messages(PROMPT, [GOOD, BAD])
    assert TRUNCATION_MARKER not in fitted[1]["content"]  # the caller's prompt is not modified


def test_responses_longer_than_the_window_raise(tiny_causal: str) -> None:
    rm = _load(tiny_causal, kind="likelihood", max_length=64)
    with pytest.raises(PromptTooLongError, match="responses alone are too long"):
        rm.rank(PROMPT, [GOOD * 20, BAD])


def test_prompt_file_overrides(tiny_causal: str, tmp_path: Path) -> None:
    custom = tmp_path / "prompts.toml"
    custom.write_text('pairwise_user = """TASK {task} ANSWERS {responses} Say [[A]] or [[B]]."""\n')
    rm = _load(tiny_causal, kind="judge", verdict="logprob", prompts_file=custom)
    messages = rm.prompts.judge_messages(PROMPT, [GOOD, BAD])
    assert messages[1]["content"].startswith("TASK <context>")
    assert "[Answer A]\n" + GOOD in messages[1]["content"]
    bad = tmp_path / "bad.toml"
    bad.write_text('pairwise_usr = "x"\n')
    with pytest.raises(ValueError, match="unknown prompt keys"):
        _load(tiny_causal, kind="judge", prompts_file=bad)


@pytest.mark.parametrize("n", [2, 3, 4])
def test_batched_verdicts_equal_one_pass_each(tiny_causal: str, n: int) -> None:
    rm = _load(tiny_causal, kind="judge", verdict="logprob")
    responses = [GOOD, BAD, MEH, GOOD + " " + MEH][:n]
    batched = rm.rank(PROMPT, responses)
    computed = rm.runner.tokens_computed
    rm.batch_verdicts = False
    sequential = rm.rank(PROMPT, responses)
    assert batched.scores == pytest.approx(sequential.scores, abs=1e-5)
    assert batched.ranking == sequential.ranking and batched.text == sequential.text
    # one pass over the verdicts' prefix tree costs fewer tokens than a pass per verdict
    assert computed - batched.prompt_tokens < rm.runner.tokens_computed - computed
    rm.batch_verdicts = True
    pointwise = rm.score(PROMPT, GOOD)
    rm.batch_verdicts = False
    assert pointwise == pytest.approx(rm.score(PROMPT, GOOD), abs=1e-5)


def test_forced_score_closes_a_judgment_without_one(tiny_causal: str) -> None:
    free = _load(tiny_causal, kind="judge", max_new_tokens=8)
    forced = _load(tiny_causal, kind="judge", max_new_tokens=8, force_score=True)
    plain = free.judge_score(PROMPT, GOOD)
    assert plain.score is None and not plain.forced  # a random model writes no [Score: n]
    closed = forced.judge_score(PROMPT, GOOD)
    assert closed.forced and closed.score is not None and 0 <= closed.score <= 10
    assert closed.text == f"{plain.text.rstrip()}\n[Score: {int(closed.score)}]"
    # the forced score is the likeliest score string after the prompt and the judge's own text
    ids, _ = forced._fit(PROMPT, lambda p: forced.prompts.score_messages(p, GOOD))
    new = forced._generate_ids(ids)
    special = set(forced.tokenizer.all_special_ids)
    while new and new[-1] in special:
        new = new[:-1]
    options = [f"\n[Score: {k}]" for k in range(11)]
    logps = forced._continuation_logprobs([*ids, *new], options)
    assert closed.score == max(range(11), key=logps.__getitem__)

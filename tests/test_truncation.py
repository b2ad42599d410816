"""Key-preserving truncation cuts distractors nearest-the-key last and never cuts the key context,
the question, the response or a protected string; rows whose kept parts cannot fit are refused.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import RELEASE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import PreTrainedTokenizerBase

from longrm.items import Messages
from longrm.rm.hf_common import TRUNCATION_MARKER, PromptTooLongError, chat_ids, encode
from longrm.train.tokens import tokenize_judgments
from longrm.train.truncation import MARGIN, TruncationError, fit_example, key_tags

SYSTEM = {
    "role": "system",
    "content": "Judge the response against the part between <LD> and </LD>.",
}
KEY = "<LD>The barge Tilde carried 7 sacks of salt.</LD>"
QUESTION = "<question>How many sacks did the Tilde carry?</question>"
INSTRUCTION = "\nThe following is the given response to evaluate.\n"
RESPONSE = "<response>It carried 7 sacks.</response>"


def row(before: int, after: int, key: str = KEY) -> Messages:
    """Return a judging chat whose key sits between `before` ' ox' and `after` ' elk' tokens
    (each word is one token, so the counts can be read off the text).
    """
    user = (
        f"<context>{' ox' * before}{key}{' elk' * after}</context>\n"
        f"{QUESTION}{INSTRUCTION}{RESPONSE}\n\n"
    )
    return [SYSTEM, {"role": "user", "content": user}]


def size(tokenizer: PreTrainedTokenizerBase, messages: Messages) -> int:
    return len(chat_ids(tokenizer, messages, add_generation_prompt=True))


def test_a_row_that_fits_comes_back_as_is(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = row(50, 50)
    fitted, cut = fit_example(tokenizer, messages, (), size(tokenizer, messages))
    assert fitted is messages
    assert cut == 0


def test_distractors_are_cut_nearest_the_key_last(tokenizer: PreTrainedTokenizerBase) -> None:
    messages = row(400, 400)
    before = size(tokenizer, messages)
    fitted, cut = fit_example(tokenizer, messages, (), 400)
    user = fitted[1]["content"]
    after = size(tokenizer, fitted)
    assert after <= 400
    assert after >= 400 - MARGIN - 3  # one radius step removes at most 3 tokens
    for part in (SYSTEM["content"], KEY, QUESTION, INSTRUCTION, RESPONSE):
        assert part in user or part == SYSTEM["content"] == fitted[0]["content"]
    assert user.count(TRUNCATION_MARKER) == 2
    oxen, elks = user.count(" ox"), user.count(" elk")
    # the ' ox' run touches the key on one side only, the ' elk' run lies between the key and
    # the question: both keep everything within the same radius of a key
    assert elks == 2 * oxen > 0
    assert user.startswith("<context>" + TRUNCATION_MARKER)  # the oxen far from the key went
    assert KEY + " elk" * (elks // 2) + TRUNCATION_MARKER in user
    assert cut == (400 - oxen) + (400 - elks)
    marker = len(encode(tokenizer, TRUNCATION_MARKER))
    assert before - after == cut - 2 * marker


def test_a_key_at_the_context_edge_keeps_the_other_side(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    fitted, cut = fit_example(tokenizer, row(0, 600), (), 300)
    user = fitted[1]["content"]
    assert user.startswith("<context>" + KEY)
    assert user.count(TRUNCATION_MARKER) == 1
    assert cut == 600 - user.count(" elk")


def test_protected_strings_survive_wherever_they_stand(tokenizer: PreTrainedTokenizerBase) -> None:
    clue = " (clue: the salt came from Hallein)"
    messages = row(300, 300)
    user = messages[1]["content"].replace(" ox" * 100, " ox" * 50 + clue + " ox" * 50, 1)
    messages = [SYSTEM, {"role": "user", "content": user.replace(" elk" * 20, clue, 1)}]
    fitted, _ = fit_example(tokenizer, messages, (clue,), 250)
    assert fitted[1]["content"].count(clue) == 2
    assert size(tokenizer, fitted) <= 250


def test_a_string_in_the_response_is_not_pinned_elsewhere(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    # the answer "7 sacks" is in <response>; its copies among the distractors may go
    messages = row(300, 300)
    user = messages[1]["content"].replace(" ox" * 10, " 7 sacks" + " ox" * 10)
    messages = [SYSTEM, {"role": "user", "content": user}]
    assert user.count("7 sacks") == 32  # 30 among the distractors, the key's, the response's
    # pinning the 30 copies (with a marker between each) could never fit 150 tokens
    fitted, _ = fit_example(tokenizer, messages, ("7 sacks",), 150)
    assert fitted[1]["content"].count("7 sacks") < 32
    assert RESPONSE in fitted[1]["content"]


def test_a_tag_named_by_the_rubric_marks_the_key(tokenizer: PreTrainedTokenizerBase) -> None:
    system = {"role": "system", "content": "Focus on the part between <YJ6> and </YJ6>."}
    assert key_tags([system]) == ("LD", "question", "prompt", "response", "YJ6")
    key = "<YJ6>The barge Tilde carried 7 sacks of salt.</YJ6>"
    messages = [system, row(300, 300, key)[1]]
    fitted, _ = fit_example(tokenizer, messages, (), 200)
    assert key in fitted[1]["content"]


def test_the_caller_counts_the_target_by_measure(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    target = "[Analysis]\nThe response gives the 7 sacks of the key context.\n[Score: 10]"

    def measure(m: Messages) -> int:
        return tokenize_judgments(tokenizer, m, [target]).longest

    fitted, _ = fit_example(tokenizer, row(400, 400), (), 300, measure)
    assert measure(fitted) <= 300
    assert size(tokenizer, fitted) <= 300 - len(encode(tokenizer, target))


def test_kept_parts_over_budget_are_refused_with_numbers(
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    messages = row(400, 400)
    floor = [SYSTEM, dict(messages[1])]
    floor[1]["content"] = re.sub(r"( ox)+| elk( elk)+", TRUNCATION_MARKER, floor[1]["content"])
    need = size(tokenizer, floor)
    with pytest.raises(TruncationError) as caught:
        fit_example(tokenizer, messages, (), need - 1)
    assert (caught.value.need, caught.value.budget) == (need, need - 1)
    assert f"need {need} tokens" in str(caught.value)
    assert f"budget is {need - 1}" in str(caught.value)
    assert isinstance(caught.value, PromptTooLongError)  # one handler for eval and training
    fitted, _ = fit_example(tokenizer, messages, (), need)
    assert fitted == floor


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    before=st.integers(0, 300),
    after=st.integers(0, 300),
    budget=st.integers(60, 400),
)
def test_any_key_position_and_budget_fits_or_is_refused(
    tokenizer: PreTrainedTokenizerBase, before: int, after: int, budget: int
) -> None:
    messages = row(before, after)
    try:
        fitted, cut = fit_example(tokenizer, messages, (), budget)
    except TruncationError as error:
        assert error.need > budget
        return
    user = fitted[1]["content"]
    assert size(tokenizer, fitted) <= budget
    assert all(part in user for part in (KEY, QUESTION, INSTRUCTION, RESPONSE))
    assert cut == (before - user.count(" ox")) + (after - user.count(" elk"))
    assert (cut > 0) == (TRUNCATION_MARKER in user)


# ---------------------------------------------------------------------------------------------
# the authors' rows

ROWS = [
    ("sft-test.jsonl", 0),  # Chinese, no <context> wrapper
    ("sft-test.jsonl", 1),  # English, 343K characters
    ("preference-train.jsonl", 0),  # key tagged <LD>
    ("preference-test.jsonl", 0),  # key tagged <RUOA>, answer repeated among the distractors
    ("preference-test.jsonl", 1),  # key right after <context>
]


def release_row(name: str, line: int) -> tuple[Messages, list[str], list[str]]:
    """Return a row's messages, its protected strings and the key parts it must keep."""
    path = RELEASE / name
    if not path.exists():
        pytest.skip(f"{path} is not here")
    record = json.loads(path.read_text(encoding="utf-8").splitlines()[line])
    messages = record["chat_template"]
    protected = [record[k] for k in ("context", "query", "answer") if k in record]
    user = messages[-1]["content"]
    tags = "|".join(re.escape(t) for t in key_tags(messages))
    parts = [m.group(0) for m in re.finditer(rf"<({tags})>.*?</\1>", user, re.S)]
    return messages, protected, parts


@pytest.mark.parametrize(("name", "line"), ROWS)
def test_real_rows_keep_their_key_parts(
    tokenizer: PreTrainedTokenizerBase, name: str, line: int
) -> None:
    messages, protected, parts = release_row(name, line)
    assert len(parts) == (3 if protected else 2)  # key, question/prompt, response
    core = size(tokenizer, [messages[0], {"role": "user", "content": "\n".join(parts)}])
    for budget in (1024, core + 256):
        try:
            fitted, cut = fit_example(tokenizer, messages, protected, budget)
        except TruncationError as error:
            assert core > budget - 256, f"{name}:{line + 1} refused at {budget}: {error}"
            assert error.need >= core
            continue
        user = fitted[-1]["content"]
        assert size(tokenizer, fitted) <= budget
        assert fitted[0] == messages[0]
        assert all(part in user for part in [*parts, *protected])
        assert cut > 0 and TRUNCATION_MARKER in user
        if budget == 1024:
            assert core <= budget

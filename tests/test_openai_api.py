"""The OpenAI-compatible judge: against a real llama.cpp server, a scripted one, and none."""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
import uvicorn
from conftest import free_port, start_llama_server
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from longrm.rm.openai_api import (
    DEFAULT_BASE_URL,
    PARAM_PROFILES,
    PREFILL_FIELDS,
    OpenAIJudge,
    letter_probabilities,
    parse_openai_params,
    parse_openai_spec,
)
from longrm.rm.prompts import PromptSet
from longrm.rm.verdicts import parse_ranking

# runs a pytest session inside a test, to check what a failing test's report says
pytest_plugins = ["pytester"]

PROMPT = [
    {
        "role": "user",
        "content": "Context: The Eiffel Tower is in Paris. It was finished in 1889.\n\n"
        "Question: When was the Eiffel Tower finished?",
    }
]
GOOD, BAD, OFF = "It was finished in 1889.", "It was finished in 1925.", "It is made of iron."


# --- parse_openai_spec --------------------------------------------------------------------------


def test_spec_with_url() -> None:
    assert parse_openai_spec("openai:Qwen/Qwen3-8B@http://127.0.0.1:8000/v1") == (
        "Qwen/Qwen3-8B",
        "http://127.0.0.1:8000/v1",
    )
    # a trailing slash is dropped; the URL follows the last '@'
    assert parse_openai_spec("openai:team@model@https://host.example/v1/") == (
        "team@model",
        "https://host.example/v1",
    )


def test_spec_without_url_uses_env_then_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://10.0.0.5:30000/v1")
    assert parse_openai_spec("openai:gpt-4o") == ("gpt-4o", "http://10.0.0.5:30000/v1")
    monkeypatch.delenv("OPENAI_BASE_URL")
    assert parse_openai_spec("openai:gpt-4o") == ("gpt-4o", DEFAULT_BASE_URL)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt-4o", "not an OpenAI-compatible model spec"),
        ("hf:gpt-4o@http://x/v1", "not an OpenAI-compatible model spec"),
        ("openai:", "model name is empty"),
        ("openai:@http://127.0.0.1:8000/v1", "model name is empty"),
        ("openai:m@127.0.0.1:8000/v1", "is not a server URL"),
        ("openai:m@http://", "is not a server URL"),
        ("openai:m@", "is not a server URL"),
    ],
)
def test_spec_malformed(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_openai_spec(spec)


def test_judge_from_spec_and_bad_mode() -> None:
    judge = OpenAIJudge.from_spec("openai:m@http://127.0.0.1:9/v1", max_concurrency=3)
    assert (judge.name, judge.max_concurrency, judge.base_url) == (
        "openai:m",
        3,
        "http://127.0.0.1:9/v1",
    )
    judge.close()
    with pytest.raises(ValueError, match="verdict must be"):
        OpenAIJudge("m", "http://127.0.0.1:9/v1", verdict="sample")  # type: ignore[arg-type]


# --- letter probabilities, computed by hand ----------------------------------------------------


def test_letter_probabilities_after_brackets() -> None:
    log = math.log
    tokens = [
        ("[[", [("[[", log(0.9))]),
        ("B", [("B", log(0.6)), ("A", log(0.2)), (" A", log(0.1)), ("Answer", log(0.05))]),
        ("]]", [("]]", log(0.99))]),
    ]
    # A = 0.2 + 0.1 (two spellings), B = 0.6; "Answer" is not a verdict letter
    assert letter_probabilities(tokens, ["A", "B"]) == pytest.approx([1 / 3, 2 / 3])


def test_letter_probabilities_single_token_and_missing_letters() -> None:
    log = math.log
    tokens = [
        ("Verdict:", [("Verdict:", log(0.5))]),
        (" [[C", [(" [[C", log(0.5)), (" [[A", log(0.25)), ("[[", log(0.2))]),
        (">A>B]]", [(">A>B]]", log(0.9))]),
    ]
    # B never appears among the alternatives: probability 0
    assert letter_probabilities(tokens, ["A", "B", "C"]) == pytest.approx([1 / 3, 0.0, 2 / 3])


def test_letter_probabilities_need_a_verdict_opening() -> None:
    log = math.log
    prose = [
        ("Answer", [("Answer", log(0.5)), ("A", log(0.3))]),
        (" B", [(" B", log(0.3)), (" A", log(0.1)), ("B", log(0.1))]),
        (" is", [(" is", log(0.7))]),
    ]
    # a bare letter in prose is no verdict letter: there is nothing to read probabilities at
    assert letter_probabilities(prose, ["A", "B"]) is None
    # brackets around a letter that is not a response letter (D of two) open no verdict either
    assert (
        letter_probabilities([("[[D]]", [("[[D]]", 0.0), ("[[A", log(0.1))])], ["A", "B"]) is None
    )
    assert letter_probabilities([("Hello", [("Hello", 0.0)])], ["A", "B"]) is None
    assert letter_probabilities([], ["A", "B"]) is None


# --- no server: error records -------------------------------------------------------------------


def test_unreachable_server_gives_an_error_record() -> None:
    judge = OpenAIJudge("m", f"http://127.0.0.1:{free_port()}/v1", max_retries=1, timeout=3.0)
    for mode in ("generate", "logprob"):
        judge.verdict = mode
        verdict = judge.rank(PROMPT, [GOOD, BAD])
        assert verdict.ranking is None and verdict.scores is None
        assert verdict.error is not None
        assert verdict.error.startswith("APIConnectionError: ")
    with pytest.raises(openai.APIConnectionError):
        judge.score(PROMPT, GOOD)
    judge.close()


# --- a scripted server: retries and the wire format ---------------------------------------------


def completion_body(content: str, logprobs: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Return a minimal valid chat-completion response."""
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "finish_reason": "stop",
                "logprobs": None if logprobs is None else {"content": logprobs},
            }
        ],
        "usage": {"prompt_tokens": 123, "completion_tokens": 5, "total_tokens": 128},
    }


@dataclass
class Scripted:
    """A loopback server that answers with queued (status, body) pairs and records requests."""

    url: str
    replies: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def script(self, *replies: tuple[int, dict[str, Any]]) -> None:
        self.replies[:] = list(replies)
        self.requests.clear()


@pytest.fixture(scope="module")
def scripted() -> Iterator[Scripted]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    state = Scripted(url=f"http://127.0.0.1:{sock.getsockname()[1]}/v1")
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        state.requests.append(await request.json())
        status, body = state.replies.pop(0)
        return JSONResponse(body, status_code=status)

    server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the scripted server did not start"
        time.sleep(0.02)
    yield state
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


def test_retries_after_server_errors(scripted: Scripted) -> None:
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    scripted.script((500, error), (500, error), (200, completion_body("B is right. [[B]]")))
    judge = OpenAIJudge("m", scripted.url, max_retries=3, timeout=10.0)
    verdict = judge.rank(PROMPT, [BAD, GOOD])
    assert verdict.error is None
    assert verdict.ranking == [1, 0]
    assert verdict.prompt_tokens == 123
    assert len(scripted.requests) == 3


def test_retries_exhausted_and_client_errors_give_error_records(scripted: Scripted) -> None:
    error = {"error": {"message": "overloaded", "type": "server_error"}}
    scripted.script((500, error), (500, error))
    judge = OpenAIJudge("m", scripted.url, max_retries=1, timeout=10.0)
    verdict = judge.rank(PROMPT, [GOOD, BAD])
    assert verdict.ranking is None
    assert verdict.error is not None and verdict.error.startswith("InternalServerError: ")
    assert len(scripted.requests) == 2

    # a 400 (say, a prompt longer than the context) is not retried
    too_long = {"error": {"message": "context length exceeded", "type": "invalid_request"}}
    scripted.script((400, too_long))
    verdict = OpenAIJudge("m", scripted.url, max_retries=3).rank(PROMPT, [GOOD, BAD])
    assert verdict.error is not None and verdict.error.startswith("BadRequestError: ")
    assert "context length exceeded" in verdict.error
    assert len(scripted.requests) == 1


def test_generate_request_and_unparsed_verdict(scripted: Scripted) -> None:
    scripted.script((200, completion_body("Both are fine.")))
    judge = OpenAIJudge("judge-7b", scripted.url, max_tokens=77, seed=5)
    verdict = judge.rank(PROMPT, [GOOD, BAD, OFF])
    assert verdict.ranking is None and verdict.error is None
    assert verdict.text == "Both are fine."
    sent = scripted.requests[0]
    assert (sent["model"], sent["max_tokens"], sent["seed"], sent["temperature"]) == (
        "judge-7b",
        77,
        5,
        0.0,
    )
    assert "logprobs" not in sent
    assert GOOD in sent["messages"][-1]["content"]


def token(text: str, *alternatives: tuple[str, float]) -> dict[str, Any]:
    """Return one generated token in the wire format: its text, probability and alternatives."""
    probability = dict(alternatives).get(text, 0.9)
    return {
        "token": text,
        "logprob": math.log(probability),
        "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alternatives],
    }


def test_logprob_request_and_scores(scripted: Scripted) -> None:
    content = [
        token("[[", ("[[", 0.9)),
        token("C", ("C", 0.5), ("A", 0.3), ("B", 0.2)),
        token(">", (">", 0.9)),
    ]
    # "[[C>" is no full ranking: a parse failure, though the letter probabilities are kept
    scripted.script((200, completion_body("[[C>", content)))
    verdict = OpenAIJudge("m", scripted.url, verdict="logprob").rank(PROMPT, [BAD, OFF, GOOD])
    assert verdict.ranking is None and verdict.error is None
    assert verdict.scores == pytest.approx([0.3, 0.2, 0.5])
    sent = scripted.requests[0]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20
    assert sent["max_tokens"] < 32
    assert sent["messages"][-1]["role"] == "user"
    assert sent["messages"][-1]["content"].endswith(
        "Answer with the verdict only, in the form [[C>B>A]], and nothing else."
    )
    assert "continue_final_message" not in sent and "add_generation_prompt" not in sent

    # a parsed verdict is the ranking; no logprobs at all leaves scores None
    scripted.script((200, completion_body("[[B]]")))
    verdict = OpenAIJudge("m", scripted.url, verdict="logprob").rank(PROMPT, [BAD, GOOD])
    assert (verdict.ranking, verdict.scores) == ([1, 0], None)


def test_logprob_reply_without_a_verdict_is_a_parse_failure(scripted: Scripted) -> None:
    prose = [
        token("Answer", ("Answer", 0.6), ("A", 0.2)),
        token(" A", (" A", 0.7), (" B", 0.3)),
        token(" is", (" is", 0.9)),
    ]
    scripted.script((200, completion_body("Answer A is", prose)))
    judge = OpenAIJudge("m", scripted.url, verdict="logprob")
    verdict = judge.rank(PROMPT, [GOOD, BAD])
    # no ranking is made up from the " A" token, and it is no verdict letter to read
    assert (verdict.ranking, verdict.scores, verdict.error) == (None, None, None)
    assert verdict.text == "Answer A is"

    # a verdict naming two of three letters opens a verdict (scores) but ranks nothing
    partial = [token("[[", ("[[", 0.9)), token("B", ("B", 0.6), ("C", 0.4)), token(">A]]")]
    scripted.script((200, completion_body("[[B>A]]", partial)))
    verdict = judge.rank(PROMPT, [GOOD, BAD, OFF])
    assert verdict.ranking is None
    assert verdict.scores == pytest.approx([0.0, 0.6, 0.4])


def test_prefill_continues_the_verdict_opening(scripted: Scripted) -> None:
    continuation = [token("B", ("B", 0.7), (" A", 0.2), ("A", 0.1)), token("]]", ("]]", 0.99))]
    scripted.script((200, completion_body("B]]", continuation)))
    judge = OpenAIJudge("m", scripted.url, verdict="logprob", prefill=True)
    verdict = judge.rank(PROMPT, [BAD, GOOD])
    assert verdict.text == "[[B]]"
    assert verdict.ranking == [1, 0]
    # read at the first generated token: A = 0.2 + 0.1, B = 0.7
    assert verdict.scores == pytest.approx([0.3, 0.7])
    sent = scripted.requests[0]
    assert sent["messages"][-1] == {"role": "assistant", "content": "[["}
    assert sent["messages"][-2]["role"] == "user"
    assert sent["messages"][-2]["content"].endswith("in the form [[A]], and nothing else.")
    assert (sent["continue_final_message"], sent["add_generation_prompt"]) == (True, False)
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20

    # a full ranking in three tokens; the continuation is what gets parsed
    ranked = [token("C", ("C", 0.5), ("A", 0.5)), token(">A"), token(">B]]")]
    scripted.script((200, completion_body("C>A>B]]", ranked)))
    verdict = judge.rank(PROMPT, [BAD, OFF, GOOD])
    assert (verdict.ranking, verdict.text) == ([2, 0, 1], "[[C>A>B]]")
    assert verdict.scores == pytest.approx([0.5, 0.0, 0.5])


def test_prefill_is_refused_in_generate_mode() -> None:
    with pytest.raises(ValueError, match="prefill applies to verdict='logprob' only"):
        OpenAIJudge("m", "http://127.0.0.1:9/v1", prefill=True)


# --- request parameter profiles -----------------------------------------------------------------


def test_parse_openai_params_profiles_and_json() -> None:
    assert parse_openai_params(None) == parse_openai_params("") == parse_openai_params("default")
    assert parse_openai_params("default") == {}
    reasoning = parse_openai_params(" reasoning ")
    assert reasoning["max_completion_tokens"] == "{max_tokens}"
    assert {k for k, v in reasoning.items() if v is None} == {
        "temperature",
        "seed",
        "logprobs",
        "top_logprobs",
        "max_tokens",
    }
    # a fresh copy each time: changing one judge's params leaves the profile alone
    parse_openai_params("vllm-no-thinking")["extra_body"]["chat_template_kwargs"] = {}
    assert parse_openai_params("vllm-no-thinking") == {
        "extra_body": {"chat_template_kwargs": {"enable_thinking": False}}
    }
    assert parse_openai_params('{"seed": null, "top_p": 0.9, "top_k": 20}') == {
        "seed": None,
        "top_p": 0.9,
        "top_k": 20,
    }


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("resoning", "unknown request-params profile 'resoning'"),
        ('{"temperature": 0.5', "are not valid JSON"),
        ('["temperature"]', "are not a JSON object"),
        ('{"model": "gpt-5"}', "'model' cannot be set"),
        ('{"stream": true}', "'stream' cannot be set"),
        ('{"temperature": "hot"}', "'temperature' must be a number or null, got 'hot'"),
        ('{"max_completion_tokens": 1.5}', "'max_completion_tokens' must be an integer"),
        ('{"seed": true}', "'seed' must be an integer or null, got True"),
        ('{"logprobs": 1}', "'logprobs' must be true, false or null, got 1"),
        ('{"extra_body": [1]}', "'extra_body' must be a JSON object, got \\[1\\]"),
    ],
)
def test_parse_openai_params_errors_name_the_bad_part(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_openai_params(value)


def test_reasoning_profile_sends_what_reasoning_models_accept(scripted: Scripted) -> None:
    params = parse_openai_params("reasoning")
    judge = OpenAIJudge("o3", scripted.url, max_tokens=4000, request_params=params)
    scripted.script(
        (200, completion_body("B is supported. [[B]]")),
        (200, completion_body("[Score: 8]")),
    )
    assert judge.rank(PROMPT, [BAD, GOOD]).ranking == [1, 0]
    assert judge.score(PROMPT, GOOD) == 8.0
    for sent in scripted.requests:
        assert set(sent) == {"model", "messages", "max_completion_tokens"}
        assert sent["max_completion_tokens"] == 4000

    with pytest.raises(ValueError, match="request_params set 'logprobs' to None"):
        OpenAIJudge("o3", scripted.url, verdict="logprob", request_params=params)
    with pytest.raises(ValueError, match="'top_logprobs' to 0"):
        OpenAIJudge("m", scripted.url, verdict="logprob", request_params={"top_logprobs": 0})
    with pytest.raises(ValueError, match="'model' cannot be set"):
        OpenAIJudge("m", scripted.url, request_params={"model": "other"})


def test_json_params_and_profiles_reach_the_server(scripted: Scripted) -> None:
    params = parse_openai_params(
        '{"temperature": 0.6, "seed": null, "top_p": 0.95, "reasoning_effort": "low",'
        ' "top_k": 20, "max_completion_tokens": "{max_tokens}",'
        ' "extra_body": {"chat_template_kwargs": {"enable_thinking": false}}}'
    )
    scripted.script((200, completion_body("[[A]]")))
    OpenAIJudge("m", scripted.url, max_tokens=99, request_params=params).rank(PROMPT, [GOOD, BAD])
    sent = scripted.requests[0]
    # client arguments (top_p, reasoning_effort) and body-only fields (top_k) arrive alike
    assert "seed" not in sent
    assert sent["temperature"] == 0.6 and sent["top_p"] == 0.95 and sent["top_k"] == 20
    assert sent["reasoning_effort"] == "low"
    assert sent["max_tokens"] == sent["max_completion_tokens"] == 99
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}

    # a profile's extra_body and prefill's fields go together; the default fields stay
    no_thinking = parse_openai_params("vllm-no-thinking")
    judge = OpenAIJudge(
        "m", scripted.url, verdict="logprob", prefill=True, seed=3, request_params=no_thinking
    )
    scripted.script((200, completion_body("A]]")))
    assert judge.rank(PROMPT, [GOOD, BAD]).ranking == [0, 1]
    sent = scripted.requests[0]
    assert sent["chat_template_kwargs"] == {"enable_thinking": False}
    assert {k: sent[k] for k in PREFILL_FIELDS} == PREFILL_FIELDS
    assert (sent["temperature"], sent["seed"], sent["logprobs"]) == (0.0, 3, True)
    assert set(PARAM_PROFILES) >= {"default", "reasoning", "vllm-no-thinking"}


def test_score_parses_or_is_nan(scripted: Scripted) -> None:
    scripted.script(
        (200, completion_body("Supported by the context.\n[Score: 7]")),
        (200, completion_body("Looks fine to me.")),
    )
    judge = OpenAIJudge("m", scripted.url)
    assert judge.score(PROMPT, GOOD) == 7.0
    assert math.isnan(judge.score(PROMPT, GOOD))
    assert "[Analysis]" in scripted.requests[0]["messages"][-1]["content"]


# --- a real llama.cpp server with the default model ---------------------------------------------

# SmolLM2-135M follows no verdict instruction: asked for "[[A]]" it answers with prose (checked in
# test_real_logprob_default_prompt_invents_no_verdict). Continuing a list of verdicts is what it
# can do, so these prompts give real letter probabilities at a real verdict opening.
PATTERN = dataclasses.replace(
    PromptSet.load(),
    pairwise_system="",
    pairwise_user="Verdicts:\n[[A]]\n[[B]]\n[[A]]\n[[B]]\n{responses}\n[[B]]\n[[A]]",
    rank_system="",
    rank_user="Verdicts:\n[[A>B>C]]\n[[C>B>A]]\n[[B>A>C]]\n{responses}\n[[C>A>B]]\n[[B>C>A]]",
)
# How far llama.cpp's letter probabilities for one input may move between requests: the server
# reuses the KV cache of the prompt prefix it shares with the previous request and evaluates only
# the rest, in batches of another size that round differently. Measured on the Makefile's build
# (GGML_NATIVE=OFF, 2-core x86-64 CPU): with PATTERN prompts, 192 requests on 4 fresh servers
# (4 orders, sequential and 4 at a time) gave bit-equal scores, but asking for [BAD, GOOD] right
# after itself (only its last prompt token evaluated) gave A = 0.6903 instead of 0.6874 (0.003);
# with the default prompts, 48 requests on 2 servers gave two values per input, 0.6539/0.6514
# and 0.6747/0.6564 (0.018, the 0.654 vs 0.675 seen before). The tolerance is about 2.5 times the
# largest of those; the pairs' margins (0.37 and 0.40) are far above twice it.
PROBABILITY_TOLERANCE = 0.05


@pytest.fixture()
def judge(llama_server: str) -> Iterator[OpenAIJudge]:
    # llama.cpp serves one model whatever the name says
    model = OpenAIJudge("SmolLM2-135M-Instruct", llama_server, max_tokens=48)
    yield model
    model.close()


def check_permutation(ranking: list[int] | None, n: int) -> None:
    assert ranking is not None and sorted(ranking) == list(range(n))


@pytest.mark.integration
def test_real_generate_pairwise(judge: OpenAIJudge) -> None:
    verdict = judge.rank(PROMPT, [GOOD, BAD])
    assert verdict.error is None
    assert verdict.text.strip()
    assert verdict.prompt_tokens > 50  # the judge prompt, context and both answers
    if verdict.ranking is not None:
        check_permutation(verdict.ranking, 2)


@pytest.mark.integration
def test_real_logprob_default_prompt_invents_no_verdict(judge: OpenAIJudge) -> None:
    judge.verdict = "logprob"
    for responses in ([GOOD, BAD], [GOOD, BAD, OFF]):
        verdict = judge.rank(PROMPT, responses)
        assert verdict.error is None, verdict.error
        assert verdict.text.strip()
        # the ranking is what the text says, nothing else; letters are read only in a verdict
        assert verdict.ranking == parse_ranking(verdict.text, len(responses))
        assert verdict.scores is None or "[[" in verdict.text


@pytest.mark.integration
def test_real_logprob_pairwise_and_best_of_3(judge: OpenAIJudge) -> None:
    judge.verdict, judge.prompts = "logprob", PATTERN
    pair = judge.rank(PROMPT, [GOOD, BAD])
    assert pair.error is None, pair.error
    assert pair.scores is not None and len(pair.scores) == 2
    assert sum(pair.scores) == pytest.approx(1.0)
    check_permutation(pair.ranking, 2)

    three = judge.rank(PROMPT, [GOOD, BAD, OFF])
    assert three.error is None, three.error
    assert three.scores is not None and len(three.scores) == 3
    assert sum(three.scores) == pytest.approx(1.0)
    assert all(0.0 <= p <= 1.0 for p in three.scores)
    check_permutation(three.ranking, 3)
    assert three.prompt_tokens > pair.prompt_tokens  # one more answer in the prompt
    for verdict in (pair, three):
        # greedy decoding writes the likeliest letter first (these margins are far from a tie)
        assert verdict.scores is not None and verdict.ranking is not None
        assert verdict.ranking[0] == max(range(len(verdict.scores)), key=verdict.scores.__getitem__)


@pytest.mark.integration
def test_real_concurrent_calls(judge: OpenAIJudge) -> None:
    judge.verdict, judge.prompts = "logprob", PATTERN
    # pairs only, to keep it short: Best-of-3 behaved alike in the measurements above
    orders = [(GOOD, BAD), (BAD, GOOD)]
    alone, again = {}, {}
    for order in orders:
        # twice in a row: the second reuses the whole cached prompt but its last token
        alone[order] = judge.rank(PROMPT, list(order))
        again[order] = judge.rank(PROMPT, list(order))
    with ThreadPoolExecutor(max_workers=4) as pool:
        together = list(pool.map(lambda order: judge.rank(PROMPT, list(order)), orders * 2))
    repeats = [*again.items(), *zip(orders * 2, together, strict=True)]
    for order, verdict in repeats:
        first = alone[order]
        assert verdict.error is None and first.error is None, (verdict.error, first.error)
        assert verdict.scores is not None and first.scores is not None
        # equal inputs, near-equal probabilities: the server does not promise bit-equal ones
        assert verdict.scores == pytest.approx(first.scores, abs=PROBABILITY_TOLERANCE)
        best, runner_up = sorted(first.scores, reverse=True)[:2]
        if best - runner_up > 2 * PROBABILITY_TOLERANCE:
            assert verdict.ranking == first.ranking


@pytest.mark.integration
def test_real_prefill_is_not_continued_by_llama_cpp(
    judge: OpenAIJudge, llama_server: str, tokenizer: Any
) -> None:
    asked = [{"role": "user", "content": "Which is better, A or B? Answer [[A]] or [[B]]."}]
    prefilled = [*asked, {"role": "assistant", "content": "[["}]
    closed = tokenizer.apply_chat_template(prefilled, add_generation_prompt=True, tokenize=False)
    continued = tokenizer.apply_chat_template(
        prefilled, continue_final_message=True, tokenize=False
    )
    count = {
        text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
        for text in (closed, continued)
    }
    assert count[closed] != count[continued]
    client = openai.OpenAI(base_url=llama_server, api_key="EMPTY")
    reply = client.chat.completions.create(
        model="m",
        messages=prefilled,  # type: ignore[arg-type]
        max_tokens=1,
        extra_body=PREFILL_FIELDS,
    )
    client.close()
    # llama_cpp.server 0.3.36 drops both fields: it closes the assistant turn and opens a new one
    assert reply.usage is not None and reply.usage.prompt_tokens == count[closed]

    # the judge still reads the verdict the reply opens itself ("[[" + "[[A]]...")
    judge.verdict, judge.prompts, judge.prefill = "logprob", PATTERN, True
    verdict = judge.rank(PROMPT, [GOOD, BAD])
    assert verdict.error is None and verdict.text.startswith("[[")
    check_permutation(verdict.ranking, 2)
    assert verdict.scores is not None and sum(verdict.scores) == pytest.approx(1.0)


@pytest.mark.integration
def test_real_score(judge: OpenAIJudge) -> None:
    value = judge.score(PROMPT, GOOD)
    assert isinstance(value, float)
    assert math.isnan(value) or 0.0 <= value <= 10.0


# --- a server that dies: its exit code and log explain the failure -------------------------------


@pytest.mark.integration
def test_dead_server_reports_exit_code_and_log(tmp_path: Path) -> None:
    with start_llama_server(tmp_path / "server.log") as server:
        assert server.exit_report() is None
        os.kill(server.process.pid, signal.SIGSEGV)
        judge = OpenAIJudge("m", server, verdict="logprob", max_retries=1, timeout=10.0)
        verdict = judge.rank(PROMPT, [GOOD, BAD])
        judge.close()
        assert verdict.error is not None and verdict.error.startswith("APIConnectionError")
        report = server.exit_report(wait=10.0)
    assert report is not None
    assert report.startswith("llama_cpp.server exited with code -11 (SIGSEGV); log tail:\n")
    port = server.split(":")[2].split("/")[0]
    assert f"Uvicorn running on http://127.0.0.1:{port}" in report


INNER_TESTS = """
import os
import signal

import openai
import pytest


@pytest.fixture()
def connection(llama_server):
    client = openai.OpenAI(base_url=llama_server, api_key="EMPTY", max_retries=0, timeout=10.0)
    return client, llama_server.process


def test_fails_beside_a_live_server(llama_server):
    assert llama_server.exit_report() is None
    assert False, "an ordinary failure"


def test_fails_after_the_server_died(connection):
    # the server comes through another fixture, as it does through the judge fixtures
    client, process = connection
    os.kill(process.pid, signal.SIGKILL)
    client.models.list()
"""


@pytest.mark.integration
def test_failing_test_gets_the_dead_servers_report(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text(encoding="utf-8"))
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    assert "an ordinary failure" in output and "APIConnectionError" in output
    # only the failure after the crash gets the report, with the exit code and the log's tail
    assert output.count("llama_cpp.server exited with code") == 1
    assert "llama_cpp.server exited with code -9 (SIGKILL); log tail:" in output
    assert "Uvicorn running on http://127.0.0.1:" in output


def test_paper_protocol_parses_and_asks_by_the_authors_rules(scripted: Scripted) -> None:
    reply = "At first [[A]], but then [[B]]."
    scripted.script((200, completion_body(reply)), (200, completion_body(reply)))
    ours = OpenAIJudge("m", scripted.url).rank_item(PROMPT, [GOOD, BAD], pairwise=True)
    paper = OpenAIJudge("m", scripted.url, protocol="paper")
    theirs = paper.rank_item(PROMPT, [GOOD, BAD], pairwise=True)
    assert ours.ranking == [1, 0]  # longrm: the last verdict
    assert theirs.ranking == [0, 1]  # the authors: any [[A]] wins
    # a Best-of-2 item is asked for a ranking under their protocol, and parsed as one
    scripted.script((200, completion_body("[Ranking]\n[[B>A]]")))
    ranked = paper.rank_item(PROMPT, [GOOD, BAD], pairwise=False)
    assert ranked.ranking == [1, 0]
    assert "[[B>A]]" in scripted.requests[0]["messages"][-1]["content"]  # the ranking example
    with pytest.raises(ValueError, match="unknown protocol"):
        OpenAIJudge("m", scripted.url, protocol="mine")

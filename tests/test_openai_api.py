"""The OpenAI-compatible judge: against a real llama.cpp server, a scripted one, and none."""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest
import uvicorn
from conftest import free_port
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from longrm.rm.openai_api import (
    DEFAULT_BASE_URL,
    OpenAIJudge,
    letter_probabilities,
    parse_openai_spec,
)

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


def test_letter_probabilities_falls_back_to_a_bare_letter() -> None:
    log = math.log
    tokens = [
        ("Answer", [("Answer", log(0.5)), ("A", log(0.3))]),  # not the verdict position
        (" B", [(" B", log(0.3)), (" A", log(0.1)), ("B", log(0.1))]),
        (" is", [(" is", log(0.7))]),
    ]
    assert letter_probabilities(tokens, ["A", "B"]) == pytest.approx([0.2, 0.8])
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


def test_logprob_request_and_scores(scripted: Scripted) -> None:
    log = math.log
    content = [
        {
            "token": "[[",
            "logprob": log(0.9),
            "top_logprobs": [{"token": "[[", "logprob": log(0.9)}],
        },
        {
            "token": "C",
            "logprob": log(0.5),
            "top_logprobs": [
                {"token": "C", "logprob": log(0.5)},
                {"token": "A", "logprob": log(0.3)},
                {"token": "B", "logprob": log(0.2)},
            ],
        },
        {"token": ">", "logprob": log(0.9), "top_logprobs": []},
    ]
    # the text is not a full ranking, so the ranking comes from the probabilities
    scripted.script((200, completion_body("[[C>", content)))
    verdict = OpenAIJudge("m", scripted.url, verdict="logprob").rank(PROMPT, [BAD, OFF, GOOD])
    assert verdict.scores == pytest.approx([0.3, 0.2, 0.5])
    assert verdict.ranking == [2, 0, 1]
    sent = scripted.requests[0]
    assert sent["logprobs"] is True and sent["top_logprobs"] == 20
    assert sent["max_tokens"] < 32
    assert sent["messages"][-1]["content"].endswith(
        "Answer with the verdict only, in the form [[C>B>A]], and nothing else."
    )

    # a parsed verdict wins over the probabilities; no logprobs at all leaves scores None
    scripted.script((200, completion_body("[[B]]")))
    verdict = OpenAIJudge("m", scripted.url, verdict="logprob").rank(PROMPT, [BAD, GOOD])
    assert (verdict.ranking, verdict.scores) == ([1, 0], None)


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
def test_real_logprob_pairwise_and_best_of_3(judge: OpenAIJudge) -> None:
    judge.verdict = "logprob"
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


@pytest.mark.integration
def test_real_concurrent_calls(judge: OpenAIJudge) -> None:
    judge.verdict = "logprob"
    orders = [[GOOD, BAD], [BAD, GOOD], [GOOD, BAD], [BAD, GOOD]]
    with ThreadPoolExecutor(max_workers=4) as pool:
        verdicts = list(pool.map(lambda order: judge.rank(PROMPT, order), orders))
    assert all(v.error is None and v.scores is not None for v in verdicts)
    # greedy decoding: the same input gives the same verdict, whatever ran beside it
    assert verdicts[0].scores == pytest.approx(verdicts[2].scores)
    assert verdicts[1].scores == pytest.approx(verdicts[3].scores)


@pytest.mark.integration
def test_real_score(judge: OpenAIJudge) -> None:
    value = judge.score(PROMPT, GOOD)
    assert isinstance(value, float)
    assert math.isnan(value) or 0.0 <= value <= 10.0

"""The reward service over real HTTP on loopback.

Two `longrm serve` processes on tiny random models (a scalar RM without auth, a causal judge with
an API key) answer every endpoint; their numbers are checked against the same models in this
process. The queue and timeout tests run the app under uvicorn in a thread, with a model that
blocks until the test lets it go, so that "busy" and "full" are states the test controls.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch
from conftest import OFFICIAL, free_port
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner

from longrm.items import Messages
from longrm.rm.base import RewardModel, Verdict, ranking_from_scores
from longrm.rm.hf_common import chat_ids
from longrm.rm.load import RewardModelOptions, load_reward_model
from longrm.serve.app import ServeSettings, create_app
from longrm.serve.batching import Batcher, QueueFullError, Unit

KEY = "s3cret"
CONTEXT = "The ferry Orla returned at dusk with two crates of lamp oil. " * 6
PROMPTS: list[Messages] = [
    [{"role": "user", "content": f"{CONTEXT}\nQuestion {i}: what did the ferry carry?"}]
    for i in range(3)
]
RESPONSES = ["Two crates of lamp oil.", "Fish.", "It carried nothing at all.", "Lamp oil."]


class ServeProcess:
    """A `python -m longrm serve ARGS` process, its base URL and its log."""

    def __init__(self, log: Path, *args: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        cmd = [sys.executable, "-m", "longrm", "serve", "--port", str(port), *args]
        with log.open("wb") as fh:
            self.process = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 300.0) -> str:
        """Return the URL once /health answers; fail with the log if the server died."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(
                    f"longrm serve exited with {self.process.returncode}:\n{self.log_text()}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self.url
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"longrm serve did not answer /health in {timeout} s:\n{self.log_text()}"
                )
            time.sleep(0.2)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module")
def servers(
    tiny_scalar: str, tiny_causal: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Start both servers at once (their start-up is mostly imports), yield their URLs."""
    logs = tmp_path_factory.mktemp("servers")
    started = {
        "scalar": ServeProcess(
            logs / "scalar.log", "--model", tiny_scalar, "--kind", "scalar", "--name", "tiny-rm",
            "--max-body-bytes", "200000", "--max-request-tokens", "3000",
        ),
        "judge": ServeProcess(
            logs / "judge.log", "--model", tiny_causal, "--kind", "judge", "--verdict", "logprob",
            "--api-key", KEY, "--name", "tiny-judge",
        ),
    }  # fmt: skip
    try:
        yield {name: server.wait_ready() for name, server in started.items()}
    finally:
        for server in started.values():
            server.stop()
    for server in started.values():  # nothing crashed while the tests ran
        assert "Traceback" not in server.log_text(), server.log_text()


@pytest.fixture(scope="module")
def scalar_url(servers: dict[str, str]) -> str:
    return servers["scalar"]


@pytest.fixture(scope="module")
def judge_url(servers: dict[str, str]) -> str:
    return servers["judge"]


@pytest.fixture(scope="module")
def scalar_rm(tiny_scalar: str) -> Iterator[RewardModel]:
    rm = load_reward_model(tiny_scalar, RewardModelOptions(kind="scalar"))
    yield rm
    rm.close()


@pytest.fixture(scope="module")
def judge_rm(tiny_causal: str) -> Iterator[RewardModel]:
    rm = load_reward_model(tiny_causal, RewardModelOptions(kind="judge", verdict="logprob"))
    yield rm
    rm.close()


def _post(url: str, path: str, body: Any, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{url}{path}", json=body, headers=headers, timeout=60)


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and error["message"]
    return dict(error)


# ------------------------------------------------------------------------------------------------
# /v1/score, /v1/compare, /v1/rank on a scalar RM


def test_score_matches_the_model_in_process(scalar_url: str, scalar_rm: RewardModel) -> None:
    body = {"messages": PROMPTS[0], "responses": RESPONSES}
    got = _post(scalar_url, "/v1/score", body).json()
    expected = [scalar_rm.score(PROMPTS[0], r) for r in RESPONSES]
    assert got["model"] == "tiny-rm"
    assert got["scores"] == pytest.approx(expected, abs=1e-4)
    # a text prompt is one user turn
    as_text = {"prompt": PROMPTS[0][0]["content"], "responses": RESPONSES}
    assert _post(scalar_url, "/v1/score", as_text).json()["scores"] == pytest.approx(
        expected, abs=1e-4
    )


def test_compare_and_rank_follow_the_scores(scalar_url: str, scalar_rm: RewardModel) -> None:
    scores = [scalar_rm.score(PROMPTS[1], r) for r in RESPONSES]
    got = _post(scalar_url, "/v1/compare", {"messages": PROMPTS[1], "responses": RESPONSES[:2]})
    compare = got.json()
    assert compare["preferred"] == (0 if scores[0] >= scores[1] else 1)
    assert compare["probability"] == pytest.approx(1 / (1 + math.exp(scores[1] - scores[0])), 1e-4)
    ranked = _post(scalar_url, "/v1/rank", {"messages": PROMPTS[1], "responses": RESPONSES}).json()
    assert ranked["ranking"] == ranking_from_scores(scores)
    assert ranked["best"] == ranked["ranking"][0]
    assert ranked["scores"] == pytest.approx(scores, abs=1e-4)


# ------------------------------------------------------------------------------------------------
# OpenRLHF's /get_reward and vLLM's /classify: texts with the chat template already applied


def _template(tokenizer: Any, prompt: Messages) -> str:
    return str(tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))


def test_get_reward_contract(scalar_url: str, scalar_rm: RewardModel, tokenizer: Any) -> None:
    prompts = [_template(tokenizer, p) for p in PROMPTS]
    queries = [p + r + "<|im_end|>" for p, r in zip(prompts, RESPONSES, strict=False)]
    # the parsed turns hold the template's default system turn, which renders the same text
    expected = [scalar_rm.score(p, r) for p, r in zip(PROMPTS, RESPONSES, strict=False)]
    with_prompts = _post(
        scalar_url, "/get_reward", {"query": queries, "prompts": prompts, "labels": ["a"] * 3}
    ).json()
    assert set(with_prompts) == {"rewards", "scores", "extra_logs", "splits"}
    assert with_prompts["rewards"] == pytest.approx(expected, abs=1e-4)
    assert with_prompts["scores"] == with_prompts["rewards"]
    # read with the reward model's own template (code 2), cut at the prompt
    assert with_prompts["extra_logs"] == {
        "scored": [1.0] * 3, "split_family": [2.0] * 3, "split_at_prompt": [1.0] * 3,
        "reasoning_removed": [0.0] * 3,
    }  # fmt: skip
    assert with_prompts["splits"][0] == {
        "template": "reward_model", "at": "prompt", "turns": 1, "reasoning_removed": False
    }  # fmt: skip
    # without prompts the split comes from the chat template: same rewards
    alone = _post(scalar_url, "/get_reward", {"query": queries}).json()
    assert alone["rewards"] == pytest.approx(expected, abs=1e-4)
    assert alone["extra_logs"]["split_at_prompt"] == [0.0] * 3
    # a prompt without template markup is one user turn
    plain = _post(scalar_url, "/get_reward", {"query": ["2+2? 4"], "prompts": ["2+2? "]}).json()
    assert plain["rewards"][0] == pytest.approx(
        scalar_rm.score([{"role": "user", "content": "2+2? "}], "4"), abs=1e-4
    )


def test_get_reward_bad_queries_are_named(scalar_url: str) -> None:
    mismatch = _post(scalar_url, "/get_reward", {"query": ["a", "b"], "prompts": ["a"]})
    assert "give one prompt per query" in _error(mismatch, 422)["message"]
    broken = "<|im_start|>user\nno end of turn"
    error = _error(_post(scalar_url, "/get_reward", {"query": ["x", broken + "r"]}), 422)
    assert error["param"] == "query[0]" and "--policy-template" in error["message"]
    error = _error(_post(scalar_url, "/get_reward", {"query": [broken + "r"]}), 422)
    assert error["param"] == "query[0]"


def test_openrlhf_remote_reward_client(
    scalar_url: str, scalar_rm: RewardModel, tokenizer: Any
) -> None:
    """OpenRLHF 0.11's own HTTP call (SingleTurnAgentExecutor._fetch_rewards_via_http)."""
    agent = pytest.importorskip(
        "openrlhf.utils.agent",
        reason="pip install --no-deps openrlhf==0.11.2 && pip install aiohttp pylatexenc",
    )
    executor = agent.SingleTurnAgentExecutor(f"{scalar_url}/get_reward")
    prompt = _template(tokenizer, PROMPTS[2])
    query = prompt + RESPONSES[2] + "<|im_end|>"
    [info] = asyncio.run(executor._fetch_rewards_via_http([query], [prompt], ["label"]))
    expected = scalar_rm.score(PROMPTS[2], RESPONSES[2])
    assert info["rewards"] == pytest.approx([expected], abs=1e-4)
    assert info["scores"] == info["rewards"] and "extra_logs" in info


def test_classify_contract(scalar_url: str, scalar_rm: RewardModel, tokenizer: Any) -> None:
    # verl sends the templated text with the BOS token's text stripped, activation off
    text = _template(tokenizer, PROMPTS[0]) + RESPONSES[0] + "<|im_end|>\n"
    text = text.removeprefix(tokenizer.bos_token)
    expected = scalar_rm.score(PROMPTS[0], RESPONSES[0])
    raw = _post(scalar_url, "/classify", {"model": "rm", "input": text, "activation": False})
    out = raw.json()
    assert out["object"] == "list" and out["model"] == "rm"
    assert out["data"][-1]["probs"][-1] == pytest.approx(expected, abs=1e-4)
    assert out["usage"]["prompt_tokens"] == len(tokenizer(text, add_special_tokens=False).input_ids)
    both = _post(scalar_url, "/classify", {"input": [text, text], "use_activation": True}).json()
    assert [d["index"] for d in both["data"]] == [0, 1]
    assert both["data"][1]["probs"] == pytest.approx([1 / (1 + math.exp(-expected))], abs=1e-4)
    error = _error(_post(scalar_url, "/classify", {"input": ["no template here"]}), 422)
    assert error["param"] == "input[0]"


# ------------------------------------------------------------------------------------------------
# limits, malformed requests, metrics


def test_oversize_requests_get_413_and_the_server_lives_on(scalar_url: str) -> None:
    huge = {"prompt": "x" * 300_000, "responses": ["a"]}
    assert "--max-body-bytes" in _error(_post(scalar_url, "/v1/score", huge), 413)["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies as the body streams
        yield b'{"prompt": "'
        for _ in range(30):
            yield b"y" * 10_000
        yield b'", "responses": ["a"]}'

    streamed = httpx.post(f"{scalar_url}/v1/score", content=chunks(), timeout=60)
    assert "--max-body-bytes" in _error(streamed, 413)["message"]
    many_tokens = {"prompt": "lamp oil " * 2000, "responses": ["a"]}
    message = _error(_post(scalar_url, "/v1/score", many_tokens), 413)["message"]
    assert "--max-request-tokens" in message and "3000" in message
    assert httpx.get(f"{scalar_url}/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/v1/score", {"prompt": "q"}, "responses"),
        ("/v1/score", {"prompt": "q", "responses": "not a list"}, "responses"),
        ("/v1/score", {"prompt": "q", "messages": [{"role": "user", "content": "q"}],
                       "responses": ["a"]}, None),
        ("/v1/score", {"messages": [{"content": "q"}], "responses": ["a"]}, "messages.0.role"),
        ("/v1/compare", {"prompt": "q", "responses": ["a", "b", "c"]}, "responses"),
        ("/get_reward", {"prompts": ["p"]}, "query"),
        ("/classify", {"model": "m"}, "input"),
    ],
)  # fmt: skip
def test_validation_errors_name_the_field(
    scalar_url: str, path: str, body: dict[str, Any], param: str | None
) -> None:
    error = _error(_post(scalar_url, path, body), 422)
    if param is not None:
        assert error["param"] == param and param in error["message"]
    else:
        assert "exactly one of 'messages'" in error["message"]


def test_malformed_json_and_unknown_routes(scalar_url: str) -> None:
    bad = httpx.post(
        f"{scalar_url}/v1/score",
        content=b'{"prompt": ',
        headers={"content-type": "application/json"},
    )
    assert "JSON" in _error(bad, 422)["message"]
    _error(httpx.get(f"{scalar_url}/v1/nothing"), 404)
    no_generation = _post(
        scalar_url, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}
    )
    assert "cannot generate" in _error(no_generation, 400)["message"]


def _metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"{url}/metrics").text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def test_metrics_count_requests_tokens_and_batches(scalar_url: str, tokenizer: Any) -> None:
    ok = (("endpoint", "/v1/score"), ("status", "200"))
    invalid = (("endpoint", "/v1/score"), ("status", "422"))
    tokens = (("endpoint", "/v1/score"), ("kind", "prompt"))
    before = _metrics(scalar_url)
    body = {"messages": PROMPTS[2], "responses": RESPONSES[:2]}
    assert _post(scalar_url, "/v1/score", body).status_code == 200
    assert _post(scalar_url, "/v1/score", {"responses": []}).status_code == 422
    after = _metrics(scalar_url)

    def grew(name: str, labels: tuple[tuple[str, str], ...] = ()) -> float:
        return after[(name, labels)] - before.get((name, labels), 0.0)

    assert grew("longrm_requests_total", ok) == 1 and grew("longrm_requests_total", invalid) == 1
    texts = [PROMPTS[2][0]["content"], *RESPONSES[:2]]
    n = sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts)
    assert grew("longrm_tokens_total", tokens) == n
    assert grew("longrm_request_latency_seconds_count", (("endpoint", "/v1/score"),)) == 2
    assert grew("longrm_batch_size_sum") == 2  # two model calls, in one batch or two
    assert ("longrm_queue_depth", ()) in after


def test_concurrent_clients_get_the_sequential_scores(scalar_url: str, tokenizer: Any) -> None:
    requests: list[tuple[str, dict[str, Any]]] = [
        ("/v1/score", {"messages": p, "responses": [r]}) for p in PROMPTS for r in RESPONSES
    ]
    prompts = [_template(tokenizer, p) for p in PROMPTS]
    requests += [
        ("/get_reward", {"query": [p + r], "prompts": [p]}) for p in prompts for r in RESPONSES
    ]

    def value(item: tuple[str, dict[str, Any]]) -> float:
        out = _post(scalar_url, *item).json()
        return float(
            out["scores"][0] if "scores" in out and "rewards" not in out else out["rewards"][0]
        )

    sequential = [value(item) for item in requests]
    order = list(range(len(requests)))
    random.Random(0).shuffle(order)
    with ThreadPoolExecutor(8) as pool:
        shuffled = list(pool.map(value, [requests[i] for i in order]))
    concurrent = [0.0] * len(requests)
    for i, v in zip(order, shuffled, strict=True):
        concurrent[i] = v
    assert concurrent == pytest.approx(sequential, abs=1e-4)
    assert len(set(round(v, 4) for v in sequential)) > 3  # the scores differ from each other


# ------------------------------------------------------------------------------------------------
# a causal judge: auth, chat completions, longrm's own openai backend through them


def test_auth(judge_url: str) -> None:
    body = {"prompt": "q", "responses": ["a"]}
    missing = _post(judge_url, "/v1/score", body)
    assert _error(missing, 401)["type"] == "authentication_error"
    assert missing.headers["www-authenticate"] == "Bearer"
    _error(_post(judge_url, "/v1/score", body, key="wrong"), 401)
    assert _post(judge_url, "/v1/score", body, key=KEY).status_code == 200
    assert httpx.get(f"{judge_url}/health").status_code == 200  # probes need no key
    assert httpx.get(f"{judge_url}/metrics").status_code == 200


def test_judge_compare_gives_the_verdict_probability(judge_url: str, judge_rm: RewardModel) -> None:
    body = {"messages": PROMPTS[0], "responses": RESPONSES[:2]}
    out = _post(judge_url, "/v1/compare", body, key=KEY).json()
    expected = judge_rm.compare(PROMPTS[0], RESPONSES[0], RESPONSES[1])
    assert expected.scores is not None and expected.ranking is not None
    assert out["scores"] == pytest.approx(expected.scores, abs=1e-4)
    assert out["probability"] == pytest.approx(expected.scores[0], abs=1e-4)
    assert out["preferred"] == expected.ranking[0]


def test_chat_completions_match_greedy_generation_in_process(judge_url: str, judge_rm: Any) -> None:
    import openai

    client = openai.OpenAI(base_url=f"{judge_url}/v1", api_key=KEY, max_retries=0)
    messages = [{"role": "user", "content": "Which is better, A or B?"}]
    done = client.chat.completions.create(
        model="tiny-judge", messages=messages, max_tokens=6, temperature=0,  # type: ignore[arg-type]
        logprobs=True, top_logprobs=3,
    )  # fmt: skip
    ids = chat_ids(judge_rm.tokenizer, messages, add_generation_prompt=True)
    new = judge_rm.runner.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=0)
    choice = done.choices[0]
    assert choice.message.content == judge_rm.tokenizer.decode(new, skip_special_tokens=True)
    assert done.usage is not None and done.usage.prompt_tokens == len(ids)
    assert done.usage.completion_tokens == len(new)
    logits = judge_rm.runner.forward(ids + new, len(ids) - 1)[0]
    first = torch.log_softmax(logits, dim=-1)
    assert choice.logprobs is not None and choice.logprobs.content is not None
    token = choice.logprobs.content[0]
    assert token.logprob == pytest.approx(float(first[new[0]]), abs=1e-4)
    assert token.top_logprobs[0].token == token.token  # greedy: the top alternative was taken
    assert len(token.top_logprobs) == 3
    # the prefill that `--prefill` sends: the reply continues the assistant's "[["
    prefilled = client.chat.completions.create(
        model="tiny-judge", messages=[*messages, {"role": "assistant", "content": "[["}],  # type: ignore[list-item]
        max_tokens=2, temperature=0,
        extra_body={"continue_final_message": True, "add_generation_prompt": False},
    )  # fmt: skip
    continued = judge_rm.tokenizer.apply_chat_template(
        [*messages, {"role": "assistant", "content": "[["}],
        tokenize=True, return_dict=False, continue_final_message=True,
    )  # fmt: skip
    assert prefilled.usage is not None and prefilled.usage.prompt_tokens == len(continued)


def test_openai_backend_evaluates_a_suite_through_the_server(
    judge_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from longrm.cli import app

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    result = CliRunner().invoke(
        app,
        ["eval", "--model", f"openai:tiny-judge@{judge_url}/v1", "--bench", str(OFFICIAL),
         "--out", str(tmp_path), "--verdict", "logprob", "--concurrency", "2", "--retries", "0",
         "--timeout", "60"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["n_records"] == 8 and results["errors"] == 0
    records = [json.loads(line) for line in (tmp_path / "predictions.jsonl").open()]
    assert all(r["prompt_tokens"] > 100 for r in records)  # the server's usage came back


# ------------------------------------------------------------------------------------------------
# the queue: a model that blocks until the test lets it go


class GateModel(RewardModel):
    """Scores by response length once `gate` is open; records the calls it ran."""

    name = "gate"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[str] = []

    def score(self, prompt: Messages, response: str) -> float:
        self.gate.wait(timeout=30)
        self.calls.append(response)
        return float(len(response))

    def rank(self, prompt: Messages, responses: Sequence[str]) -> Verdict:
        scores = [self.score(prompt, r) for r in responses]
        return Verdict(ranking=ranking_from_scores(scores), scores=scores)


@contextmanager
def serve_in_thread(model: RewardModel, **settings: Any) -> Iterator[str]:
    import uvicorn

    port = free_port()
    app = create_app(model, ServeSettings(**{"kind": "scalar", **settings}))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _wait_for(url: str, **state: Any) -> None:
    deadline = time.monotonic() + 20
    while True:
        health = httpx.get(f"{url}/health").json()
        if all(health[k] == v for k, v in state.items()):
            return
        assert time.monotonic() < deadline, f"/health never showed {state}: {health}"
        time.sleep(0.02)


def test_full_queue_answers_429() -> None:
    model = GateModel()
    settings = {"queue_size": 1, "max_batch": 1, "queue_wait": 0.0}
    with serve_in_thread(model, **settings) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(_post, url, "/v1/score", {"prompt": "q", "responses": ["first"]})
        _wait_for(url, busy=True, queue_depth=0)  # the worker holds the first request
        second = pool.submit(_post, url, "/v1/score", {"prompt": "q", "responses": ["second"]})
        _wait_for(url, queue_depth=1)  # the one queue place is taken
        refused = _post(url, "/v1/score", {"prompt": "q", "responses": ["third"]})
        assert "queue" in _error(refused, 429)["message"]
        assert refused.headers["retry-after"] == "1"
        model.gate.set()
        assert first.result().json()["scores"] == [5.0]
        assert second.result().json()["scores"] == [6.0]
    assert model.calls == ["first", "second"]


def test_request_timeout_answers_504_and_drops_queued_work() -> None:
    model = GateModel()
    with serve_in_thread(model, request_timeout=0.5, queue_size=4, max_batch=1) as url:
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(_post, url, "/v1/score", {"prompt": "q", "responses": ["run"]})
            _wait_for(url, busy=True)
            queued = _post(url, "/v1/score", {"prompt": "q", "responses": ["queued"]})
            assert "--request-timeout" in _error(queued, 504)["message"]
            _error(running.result(), 504)
        model.gate.set()
        _wait_for(url, busy=False, queue_depth=0)
        assert _post(url, "/v1/score", {"prompt": "q", "responses": ["after"]}).status_code == 200
    assert model.calls == ["run", "after"]  # the timed-out queued request never ran


def test_batches_run_units_grouped_by_prompt(tiny_causal: str) -> None:
    """Requests queued together run prompt by prompt, so the prefix cache serves each prompt
    once: fewer tokens computed than the same requests run in arrival order.
    """
    rm = load_reward_model(tiny_causal, RewardModelOptions(kind="likelihood"))
    a = [{"role": "user", "content": "Alpha context. " * 60 + "Question?"}]
    b = [{"role": "user", "content": "Beta text here. " * 60 + "Question?"}]
    arrivals = [(a, "r1"), (b, "r1"), (a, "r2"), (b, "r2")]

    def unit(prompt: Messages, response: str) -> Unit:
        return Unit(prompt[0]["content"], lambda m: m.score(prompt, response))

    def run(max_batch: int, hold: bool) -> tuple[list[Any], int, list[int]]:
        rm.close()  # forget the cached prefix
        sizes: list[int] = []
        batcher = Batcher(rm, queue_size=8, max_batch=max_batch, on_batch=sizes.append)
        gate = threading.Event()
        if hold:
            batcher.submit([Unit("", lambda _: gate.wait(10))])
            while not batcher.busy:
                time.sleep(0.01)
        before = rm.runner.tokens_computed  # type: ignore[attr-defined]
        futures = []
        for prompt, response in arrivals:
            futures.append(batcher.submit([unit(prompt, response)]))
            if not hold:
                futures[-1].result()
        gate.set()
        values = [f.result()[0] for f in futures]
        batcher.close()
        return values, rm.runner.tokens_computed - before, sizes  # type: ignore[attr-defined]

    one_by_one, computed_alone, _ = run(max_batch=1, hold=False)
    batched, computed_batched, sizes = run(max_batch=8, hold=True)
    assert sizes[-1] == 4  # the four requests queued behind the held one ran as one batch
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    # in arrival order each prompt is encoded twice (A, B, A, B); grouped, once
    assert computed_batched < computed_alone - 100
    rm.close()


def test_a_full_batcher_refuses_work() -> None:
    model = GateModel()
    full = Batcher(model, queue_size=1, max_batch=1)
    held = full.submit([Unit("", lambda m: m.score([], "x"))])
    while not full.busy:
        time.sleep(0.01)
    waiting = full.submit([Unit("", lambda m: 1)])
    with pytest.raises(QueueFullError):
        full.submit([Unit("", lambda m: 2)])
    model.gate.set()
    assert held.result() == [1.0] and waiting.result() == [1]
    full.close()


def test_rl_endpoints_give_a_number_where_the_judge_gave_none(tiny_causal: str) -> None:
    """A generating judge that writes no [Score: n] (a random model never does) has no reward:
    null by default, `--unscored-reward` on every RL endpoint (OpenRLHF's /get_reward, verl's
    /classify, slime's /slime/reward) when a trainer needs a number; extra_logs marks it.
    """
    judge = load_reward_model(tiny_causal, RewardModelOptions(kind="judge", max_new_tokens=4))
    body = {"query": ["2+2? 4"], "prompts": ["2+2? "]}
    templated = "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n"
    classify = {"input": templated, "use_activation": False}
    slime = {"prompt": "2+2? ", "response": "4", "label": None}
    try:
        with serve_in_thread(judge, kind="judge") as url:
            plain = _post(url, "/get_reward", body).json()
            assert _post(url, "/classify", classify).json()["data"][0]["probs"] == [None]
            assert _post(url, "/slime/reward", slime).json() is None
        with serve_in_thread(judge, kind="judge", unscored_reward=-1.0) as url:
            filled = _post(url, "/get_reward", body).json()
            assert _post(url, "/classify", classify).json()["data"][0]["probs"] == [-1.0]
            squashed = _post(url, "/classify", {"input": templated}).json()["data"][0]["probs"]
            assert squashed == pytest.approx([1 / (1 + math.exp(1.0))])
            assert _post(url, "/slime/reward", slime).json() == -1.0
            keyed = _post(url, "/slime/reward?object=true", slime).json()
            assert keyed == {"reward": -1.0}
            # /v1/score stays the model's own answer: no score is null
            assert _post(url, "/v1/score", {"prompt": "2+2?", "responses": ["4"]}).json()[
                "scores"
            ] == [None]
    finally:
        judge.close()
    assert plain["rewards"] == [None] and plain["extra_logs"]["scored"] == [0.0]
    assert filled["rewards"] == filled["scores"] == [-1.0]
    assert filled["extra_logs"]["scored"] == [0.0]


def test_a_withdrawn_request_frees_its_place_at_once() -> None:
    model = GateModel()
    freed: list[int] = []
    batcher = Batcher(model, queue_size=1, max_batch=1, on_free=lambda: freed.append(1))
    held = batcher.submit([Unit("", lambda m: m.score([], "held")), Unit("", lambda m: 9)])
    while not batcher.busy:
        time.sleep(0.01)
    queued = batcher.submit([Unit("", lambda m: m.score([], "queued"))])
    with pytest.raises(QueueFullError):
        batcher.submit([Unit("", lambda m: 1)])
    before = len(freed)
    batcher.withdraw(queued)
    assert queued.cancelled() and batcher.depth == 0 and len(freed) == before + 1
    after = batcher.submit([Unit("", lambda m: m.score([], "after"))])  # the place is free
    batcher.withdraw(held)  # running: its second call is skipped
    model.gate.set()
    with pytest.raises(RuntimeError, match="withdrawn"):
        held.result(timeout=10)
    assert after.result(timeout=10) == [5.0]
    assert model.calls == ["held", "after"]
    batcher.close()


def test_concurrent_rollouts_run_as_one_batch_with_one_at_a_time_rewards(
    tiny_causal: str, tmp_path: Path
) -> None:
    """Two prompts x 4 rollouts sent at once run as one batch (each prompt's rollouts as one
    padded pass over it) and get the rewards that one request at a time gets. The texts come
    from a policy with a Llama-3 template, not the reward model's ChatML, as in RL.
    """
    common = ("--model", tiny_causal, "--kind", "likelihood")
    alone = ServeProcess(tmp_path / "alone.log", *common, "--max-batch", "1")
    # the worker waits (up to 10 s) until all eight requests are queued, then runs them together
    together = ServeProcess(
        tmp_path / "together.log", *common, "--max-batch", "8", "--batch-wait-ms", "10000"
    )
    prompts = [
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n"
        f"{p[0]['content']}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
        for p in PROMPTS[:2]
    ]
    bodies = [{"query": [p + r + "<|eot_id|>"], "prompts": [p]} for p in prompts for r in RESPONSES]
    try:
        alone_url, together_url = alone.wait_ready(), together.wait_ready()

        def reward(url: str, body: dict[str, Any]) -> float:
            response = _post(url, "/get_reward", body)
            assert response.status_code == 200, response.text
            assert response.json()["extra_logs"]["split_family"] == [4]  # read as Llama 3
            return float(response.json()["rewards"][0])

        sequential = [reward(alone_url, body) for body in bodies]
        with ThreadPoolExecutor(len(bodies)) as pool:
            concurrent = list(pool.map(lambda body: reward(together_url, body), bodies))
        batches = _metrics(together_url)
    finally:
        alone.stop()
        together.stop()
    assert concurrent == pytest.approx(sequential, abs=1e-4)
    assert len({round(v, 4) for v in sequential}) == len(bodies)  # every rollout its own reward
    assert batches[("longrm_batch_size_count", ())] == 1  # ... all from one batch
    assert batches[("longrm_batch_size_sum", ())] == len(bodies)
    for server in (alone, together):
        assert "Traceback" not in server.log_text(), server.log_text()

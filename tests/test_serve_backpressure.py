"""Backpressure that clients survive, against a real `longrm serve` process.

The served model is an OpenAI-API judge (`--model openai:gate@URL`, one call at a time) whose
upstream is a fake chat-completions server in this process: every call waits until the test
opens its gate, so "busy", "queue full" and "still running" are states the test controls. The
upstream records each call's response text, so the test knows which requests ran.

- a request that finds the queue full waits up to --queue-wait seconds: answered when a place
  frees in time, 429 when none does;
- --request-timeout counts from arrival: a 504 before the RL clients' own timeouts (its default
  is below slime's 120 s);
- a client that disconnects frees its queue place at once, and a running request whose client
  left stops before its next model call.
"""

from __future__ import annotations

import inspect
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from conftest import free_port
from test_serve import ServeProcess, _error, _post

# long enough that a loaded test machine's polling stays well inside them
QUEUE_WAIT = 3.0
REQUEST_TIMEOUT = 6.0
SCORE = 7.0


class Upstream:
    """A chat-completions server whose replies wait for `gate`; it records what it judged."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.calls: list[str] = []
        self.waiting = 0
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                text = " ".join(str(m.get("content", "")) for m in body["messages"])
                tag = re.search(r"resp-[a-z0-9-]+", text)
                upstream.calls.append(tag.group(0) if tag else "?")
                upstream.waiting += 1
                upstream.gate.wait(60)
                upstream.waiting -= 1
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "created": 0,
                    "model": "gate",
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": f"[Score: {SCORE:g}]"},
                            "finish_reason": "stop",
                        }
                    ],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.close()


@pytest.fixture(scope="module")
def url(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("backpressure") / "serve.log"
    server = ServeProcess(
        log, "--model", f"openai:gate@{upstream.url}", "--kind", "openai", "--concurrency", "1",
        "--retries", "0", "--timeout", "60", "--queue-size", "1", "--max-batch", "1",
        "--queue-wait", str(QUEUE_WAIT), "--request-timeout", str(REQUEST_TIMEOUT),
        "--unscored-reward", "0",
    )  # fmt: skip
    try:
        yield server.wait_ready(timeout=300)
    finally:
        server.stop()
    assert "Traceback" not in server.log_text(), server.log_text()


@pytest.fixture
def gate(url: str, upstream: Upstream) -> Iterator[threading.Event]:
    """The upstream's gate, closed; opened after the test and the server drained."""
    upstream.gate.clear()
    upstream.calls.clear()
    yield upstream.gate
    upstream.gate.set()
    _until(url, busy=False, queue_depth=0, waiting=0)


def _until(url: str, timeout: float = 30, **state: Any) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        health = httpx.get(f"{url}/health", timeout=5).json()
        if all(health[k] == v for k, v in state.items()):
            return dict(health)
        assert time.monotonic() < deadline, f"/health never showed {state}: {health}"
        time.sleep(0.02)


def _score(url: str, *tags: str, timeout: float = 60) -> httpx.Response:
    body = {"prompt": "What did the ferry carry?", "responses": list(tags)}
    return httpx.post(f"{url}/v1/score", json=body, timeout=timeout)


def _fill(url: str, pool: ThreadPoolExecutor, upstream: Upstream) -> tuple[Any, Any]:
    """Occupy the model (resp-running, held at the gate) and the one queue place (resp-queued)."""
    running = pool.submit(_score, url, "resp-running")
    _until(url, busy=True, queue_depth=0)
    queued = pool.submit(_score, url, "resp-queued")
    _until(url, queue_depth=1)
    return running, queued


def test_a_full_queue_waits_then_answers(url: str, upstream: Upstream, gate: Any) -> None:
    with ThreadPoolExecutor(3) as pool:
        running, queued = _fill(url, pool, upstream)
        start = time.monotonic()
        late = pool.submit(_score, url, "resp-late")
        _until(url, waiting=1)  # it waits for a place instead of a 429
        gate.set()
        answer = late.result()
        assert answer.status_code == 200, answer.text  # a place freed within --queue-wait
        assert answer.json()["scores"] == [SCORE]
        assert time.monotonic() - start < REQUEST_TIMEOUT
        assert running.result().status_code == queued.result().status_code == 200
    assert upstream.calls == ["resp-running", "resp-queued", "resp-late"]


def test_a_queue_full_for_the_whole_wait_answers_429(
    url: str, upstream: Upstream, gate: Any
) -> None:
    with ThreadPoolExecutor(2) as pool:
        _fill(url, pool, upstream)
        start = time.monotonic()
        refused = _score(url, "resp-refused")
        waited = time.monotonic() - start
        error = _error(refused, 429)
        assert "--queue-wait" in error["message"] and refused.headers["retry-after"] == "1"
        assert QUEUE_WAIT - 0.1 <= waited < QUEUE_WAIT + 10
    assert "resp-refused" not in upstream.calls


def test_request_timeout_answers_504_before_the_clients_give_up(
    url: str, upstream: Upstream, gate: Any
) -> None:
    start = time.monotonic()
    late = _score(url, "resp-slow")
    assert "--request-timeout" in _error(late, 504)["message"]
    assert REQUEST_TIMEOUT - 0.1 <= time.monotonic() - start < REQUEST_TIMEOUT + 5
    # the default leaves room under the shortest RL client timeout (slime: 120 s)
    from longrm.cli_serve import serve_command
    from longrm.serve.app import ServeSettings

    default = inspect.signature(serve_command).parameters["request_timeout"].default
    assert default == ServeSettings().request_timeout < 120


def test_a_client_that_disconnects_frees_its_place(url: str, upstream: Upstream, gate: Any) -> None:
    with ThreadPoolExecutor(3) as pool:
        running = pool.submit(_score, url, "resp-running")
        _until(url, busy=True, queue_depth=0)
        # this client gives up after 0.5 s and closes its connection while its request is queued
        gone = pool.submit(_score, url, "resp-gone", timeout=0.5)
        with pytest.raises(httpx.TimeoutException):
            gone.result()
        _until(url, queue_depth=0, timeout=5)  # its place is free, the model still busy
        assert _until(url)["busy"]
        admitted = pool.submit(_score, url, "resp-next")
        _until(url, queue_depth=1)  # queued in the freed place while the gate is still shut
        gate.set()
        assert admitted.result().json()["scores"] == [SCORE]
        assert running.result().status_code == 200
    assert upstream.calls == ["resp-running", "resp-next"]  # the withdrawn request never ran


def test_a_running_request_whose_client_left_stops(url: str, upstream: Upstream, gate: Any) -> None:
    with ThreadPoolExecutor(1) as pool:
        three = pool.submit(_score, url, "resp-a1", "resp-a2", "resp-a3", timeout=0.5)
        with pytest.raises(httpx.TimeoutException):
            three.result()
    _until(url, busy=True)
    deadline = time.monotonic() + 10
    while upstream.waiting == 0:  # its first model call is held at the gate
        assert time.monotonic() < deadline
        time.sleep(0.02)
    gate.set()
    _until(url, busy=False, queue_depth=0)
    assert _post(url, "/v1/score", {"prompt": "q", "responses": ["resp-after"]}).status_code == 200
    assert upstream.calls == ["resp-a1", "resp-after"]  # the two calls left were skipped

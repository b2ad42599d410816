"""Shared fixtures: the default model's tokenizer and tiny random models built on the spot."""

from __future__ import annotations

import importlib.util
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official"
# The authors' sample rows live in shared/, beside the project's root (developers and CI).
_SHARED = [Path(__file__).resolve().parents[2] / "shared", Path("/work/shared")]
RELEASE = next((p for p in _SHARED if p.exists()), _SHARED[0]) / "data" / "longrm-release"


@pytest.fixture(autouse=True)
def run_folders_read_back(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every run folder a test leaves in its tmp_path must read back with `longrm.read_run`
    (typed run.json, results.json and records), so no code path writes a run file the typed
    models refuse. Tests that write broken run files on purpose carry `bad_run_files`.
    """
    wanted = "tmp_path" in request.fixturenames and not request.node.get_closest_marker(
        "bad_run_files"
    )
    root: Path | None = request.getfixturevalue("tmp_path") if wanted else None
    yield
    if root is None:
        return
    from longrm import read_run

    for results in sorted(root.rglob("results.json")):
        if (results.parent / "run.json").exists():
            read_run(results.parent, records=True)


@pytest.fixture(scope="session")
def default_model_path() -> str:
    """The default model converted into the cache (once per machine)."""
    from longrm.models import resolve_model_path

    return resolve_model_path("default")


@pytest.fixture(scope="session")
def tokenizer(default_model_path: str):  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(default_model_path)


def _tiny(tokenizer, tmp_dir: Path, scalar: bool, window: int) -> str:  # type: ignore[no-untyped-def]
    """Save a randomly initialised few-million-parameter Llama that uses the real tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=window,
        pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        num_labels=1,
        tie_word_embeddings=True,
    )
    model = (LlamaForSequenceClassification if scalar else LlamaForCausalLM)(config)
    model.save_pretrained(tmp_dir)
    tokenizer.save_pretrained(tmp_dir)
    return str(tmp_dir)


@pytest.fixture(scope="session")
def tiny_causal(tokenizer, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    return _tiny(tokenizer, tmp_path_factory.mktemp("tiny-causal"), scalar=False, window=4096)


@pytest.fixture(scope="session")
def tiny_scalar(tokenizer, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    return _tiny(tokenizer, tmp_path_factory.mktemp("tiny-scalar"), scalar=True, window=4096)


def free_port() -> int:
    """Return a loopback port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer(str):
    """A running `llama_cpp.server`: its base URL (a str, so specs can be formatted from it),
    with the process and the log that explain a request that failed because the server died.
    """

    process: subprocess.Popen[bytes]
    log_path: Path

    def __new__(cls, url: str, process: subprocess.Popen[bytes], log_path: Path) -> LlamaServer:
        server = super().__new__(cls, url)
        server.process, server.log_path = process, log_path
        return server

    def log_tail(self, lines: int = 40) -> str:
        """Return the last `lines` lines of the server's log."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def exit_report(self, wait: float = 0.0) -> str | None:
        """Return 'llama_cpp.server exited with code X; log tail: ...' if it has exited, else None.

        `wait` gives a process whose sockets are already closed time to be reaped.
        """
        try:
            code = self.process.wait(timeout=wait) if wait > 0 else self.process.poll()
        except subprocess.TimeoutExpired:
            return None
        if code is None:
            return None
        name = ""
        if -code in signal.valid_signals():
            name = f" ({signal.Signals(-code).name})"
        return f"llama_cpp.server exited with code {code}{name}; log tail:\n{self.log_tail()}"


def _no_core_dump() -> None:
    """Return None; keeps a crashing test server from writing a ~1 GB core file."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


@contextmanager
def start_llama_server(log_path: Path, startup_s: float = 60.0) -> Iterator[LlamaServer]:
    """Yield a `llama_cpp.server` on the default model once it answers; stop it on exit."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama_cpp is not installed (pip install 'longrm[server-test]')")
    from longrm.models import default_model_gguf

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(default_model_gguf()),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "4096",
        "--logits_all",  # logprobs need the logits of every position
        "True",
        "--seed",
        "0",
    ]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_no_core_dump
        )
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", process, log_path)
    try:
        deadline = time.monotonic() + startup_s
        while True:
            report = server.exit_report()
            if report is not None:
                pytest.fail(f"before answering, {report}")
            try:
                if httpx.get(f"{server}/models", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"llama_cpp.server did not answer /v1/models within {startup_s:.0f} s; "
                    f"log tail:\n{server.log_tail()}"
                )
            time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """Start `python -m llama_cpp.server` on the default model; yield it (its base URL).

    A test that uses it and fails after the server died gets the exit code and the log's tail
    appended to its failure (see `pytest_runtest_makereport`).
    """
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with start_llama_server(log_path) as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Return nothing; appends the server's exit code and log tail to failures after it died.

    Without this, a crashed server (llama.cpp's SIGSEGV on CPUs with AMX, say) shows up as a
    bare `APIConnectionError` in whatever test ran next.
    """
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    server = getattr(item, "funcargs", {}).get("llama_server")
    if not (report.failed and isinstance(server, LlamaServer)):
        return
    note = server.exit_report(wait=2.0)
    if note is None:
        return
    if hasattr(report.longrepr, "addsection"):
        report.longrepr.addsection("llama_cpp.server", note)
    else:
        report.sections.append(("llama_cpp.server", note))

"""Shared fixtures: the default model's tokenizer and tiny random models built on the spot."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Start `python -m llama_cpp.server` on the default model; yield its base URL."""
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
    base_url = f"http://127.0.0.1:{port}/v1"
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{tail}")
                try:
                    if httpx.get(f"{base_url}/models", timeout=1.0).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("llama_cpp.server did not answer /v1/models within 60 s")
                time.sleep(0.2)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

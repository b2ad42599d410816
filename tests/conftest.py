"""Shared fixtures: the default model's tokenizer and tiny random models built on the spot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official"
RELEASE = Path(__file__).resolve().parents[2] / "shared" / "data" / "longrm-release"


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

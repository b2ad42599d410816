"""Judge prompts: our own words, kept in a TOML file a user can replace key by key."""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from longrm.items import Messages

_PLACEHOLDER = re.compile(r"\{(task|responses|response|letters|example)\}")
_KEYS = (
    "pairwise_system",
    "pairwise_user",
    "rank_system",
    "rank_user",
    "score_system",
    "score_user",
)


def letters(n: int) -> list[str]:
    """Return the display letters of n responses: A, B, C, ..."""
    if not 1 <= n <= 26:
        raise ValueError(f"between 1 and 26 responses can be judged, got {n}")
    return list(string.ascii_uppercase[:n])


def example_verdict(n: int) -> str:
    """Return the verdict shown to the judge as the format to use: [[A]], or a full ranking
    listed in reverse ([[C>B>A]]) so the example does not suggest an answer order.
    """
    return "[[A]]" if n == 2 else "[[" + ">".join(reversed(letters(n))) + "]]"


def fill(template: str, **values: str) -> str:
    """Return `template` with known {placeholders} replaced in one pass (text braces stay)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def render_task(prompt: Messages) -> str:
    """Return the task prompt as one text: a lone user message as is, otherwise role-labelled."""
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def render_responses(responses: Sequence[str]) -> str:
    """Return the responses block, each between lettered markers."""
    return "\n\n".join(
        f"[Answer {letter}]\n{text}\n[End of answer {letter}]"
        for letter, text in zip(letters(len(responses)), responses, strict=True)
    )


@dataclass(frozen=True)
class PromptSet:
    """The judge's templates; `load` overrides the packaged defaults from a user file."""

    pairwise_system: str
    pairwise_user: str
    rank_system: str
    rank_user: str
    score_system: str
    score_user: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptSet:
        """Return the default prompts, with the keys of the TOML file at `path` replacing them."""
        text = resources.files("longrm.rm").joinpath("prompts.toml").read_text(encoding="utf-8")
        values = tomllib.loads(text)
        if path is not None:
            try:
                user = tomllib.loads(Path(path).read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"{path}: not valid TOML: {err}") from None
            unknown = sorted(set(user) - set(_KEYS))
            if unknown:
                raise ValueError(f"{path}: unknown prompt keys {unknown}; known: {list(_KEYS)}")
            values.update(user)
        return cls(**{k: values[k] for k in _KEYS})

    def judge_messages(self, prompt: Messages, responses: Sequence[str]) -> Messages:
        """Return the chat asking for a pairwise verdict (n == 2) or a ranking (n > 2)."""
        n = len(responses)
        tags = letters(n)
        values = {
            "task": render_task(prompt),
            "responses": render_responses(responses),
            "letters": ", ".join(tags),
            "example": example_verdict(n),
        }
        system, user = (
            (self.pairwise_system, self.pairwise_user)
            if n == 2
            else (self.rank_system, self.rank_user)
        )
        return [
            {"role": "system", "content": fill(system, **values)},
            {"role": "user", "content": fill(user, **values)},
        ]

    def score_messages(self, prompt: Messages, response: str) -> Messages:
        """Return the chat asking for a pointwise `[Analysis] ... [Score: n]` judgment."""
        values = {"task": render_task(prompt), "response": response}
        return [
            {"role": "system", "content": fill(self.score_system, **values)},
            {"role": "user", "content": fill(self.score_user, **values)},
        ]

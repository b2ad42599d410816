"""Judge prompts: our own words, kept in a TOML file a user can replace key by key."""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from longrm.items import Messages

_PLACEHOLDER = re.compile(
    r"\{(task|task_plain|responses|response|letters|example|pattern|n|letter|number|answer)\}"
)
_KEYS = (
    "pairwise_system",
    "pairwise_user",
    "rank_system",
    "rank_user",
    "score_system",
    "score_user",
    "answer_block",
    "answer_separator",
)


def letters(n: int) -> list[str]:
    """Return the display letters of n responses: A, B, C, ..."""
    if not 1 <= n <= 26:
        raise ValueError(f"between 1 and 26 responses can be judged, got {n}")
    return list(string.ascii_uppercase[:n])


def example_verdict(n: int, as_ranking: bool | None = None) -> str:
    """Return the verdict shown to the judge as the format to use: [[A]] for a pair, or a full
    ranking listed in reverse ([[C>B>A]]) so the example does not suggest an answer order.
    `as_ranking` True asks for a ranking even of two (see `judge_messages`).
    """
    ranking = n > 2 if as_ranking is None else as_ranking
    return "[[" + ">".join(reversed(letters(n))) + "]]" if ranking else "[[A]]"


def fill(template: str, **values: str) -> str:
    """Return `template` with known {placeholders} replaced in one pass (text braces stay)."""
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def ranking_pattern(n: int) -> str:
    """Return the ranking format in letter order, [[A>B>C]]: the authors' `{pattern}`."""
    return "[[" + ">".join(letters(n)) + "]]"


def render_task(prompt: Messages) -> str:
    """Return the task prompt as one text: a lone user message as is, otherwise role-labelled."""
    if len(prompt) == 1:
        return prompt[0]["content"]
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in prompt)


def render_task_plain(prompt: Messages) -> str:
    """Return the contents of all task messages joined by blank lines, roles dropped (as the
    authors' judge sees the task).
    """
    return "\n\n".join(m["content"] for m in prompt)


def read_overrides(path: str | Path, keys: Sequence[str]) -> dict[str, Any]:
    """Return the prompt templates a user's TOML file replaces; unknown keys are an error that
    names the file, so a typo never silently keeps the default.
    """
    try:
        user = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path}: not valid TOML: {err}") from None
    unknown = sorted(set(user) - set(keys))
    if unknown:
        raise ValueError(f"{path}: unknown prompt keys {unknown}; known: {list(keys)}")
    return user


@dataclass(frozen=True)
class PromptSet:
    """The judge's templates; `load` overrides the packaged defaults from a user file."""

    pairwise_system: str
    pairwise_user: str
    rank_system: str
    rank_user: str
    score_system: str
    score_user: str
    answer_block: str
    answer_separator: str

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptSet:
        """Return the default prompts, with the keys of the TOML file at `path` replacing them."""
        text = resources.files("longrm.rm").joinpath("prompts.toml").read_text(encoding="utf-8")
        values = tomllib.loads(text)
        if path is not None:
            values.update(read_overrides(path, _KEYS))
        return cls(**{k: values[k] for k in _KEYS})

    def render_responses(self, responses: Sequence[str]) -> str:
        """Return the responses block: `answer_block` per response, joined by the separator."""
        return self.answer_separator.join(
            fill(self.answer_block, letter=letter, number=str(i + 1), answer=text)
            for i, (letter, text) in enumerate(zip(letters(len(responses)), responses, strict=True))
        )

    def judge_messages(
        self, prompt: Messages, responses: Sequence[str], as_ranking: bool | None = None
    ) -> Messages:
        """Return the chat asking for a pairwise verdict or a ranking.

        `as_ranking` None asks pairs for a pairwise verdict and more responses for a ranking;
        True asks for a ranking even of two (Best-of-2 items under the authors' protocol).
        """
        n = len(responses)
        tags = letters(n)
        values = {
            "task": render_task(prompt),
            "task_plain": render_task_plain(prompt),
            "responses": self.render_responses(responses),
            "letters": ", ".join(tags),
            "example": example_verdict(n, as_ranking),
            "pattern": ranking_pattern(n),
            "n": str(n),
        }
        ranking = n > 2 if as_ranking is None else as_ranking
        system, user = (
            (self.rank_system, self.rank_user)
            if ranking
            else (self.pairwise_system, self.pairwise_user)
        )
        return [
            {"role": "system", "content": fill(system, **values)},
            {"role": "user", "content": fill(user, **values)},
        ]

    def score_messages(self, prompt: Messages, response: str) -> Messages:
        """Return the chat asking for a pointwise `[Analysis] ... [Score: n]` judgment."""
        values = {
            "task": render_task(prompt),
            "task_plain": render_task_plain(prompt),
            "response": response,
        }
        return [
            {"role": "system", "content": fill(self.score_system, **values)},
            {"role": "user", "content": fill(self.score_user, **values)},
        ]

"""Examples to token ids that fit `max_length`, cutting distractor text only, with a count.

A row that cannot fit even after cutting (its key context, question, responses or target alone
are too long) is an error naming its source, or is skipped and counted with --skip-invalid.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from transformers import PreTrainedTokenizerBase

from longrm.items import ItemError, Messages
from longrm.train.positions import spread_prompt
from longrm.train.tokens import PromptResponses, scalar_ids, tokenize_judgments
from longrm.train.truncation import TruncationError, fit_example

ExampleT = TypeVar("ExampleT")
FeatureT = TypeVar("FeatureT")


@dataclass
class FitStats:
    """What fitting the rows to max_length did, for the log and the run record."""

    rows: int = 0
    truncated_rows: int = 0
    cut_tokens: int = 0
    skipped: list[str] = field(default_factory=list)
    #: indices of the examples whose features were kept, in order (not recorded)
    kept: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        """Return the counts (and the first reasons rows were skipped)."""
        return {
            "rows": self.rows,
            "truncated_rows": self.truncated_rows,
            "cut_tokens": self.cut_tokens,
            "skipped": len(self.skipped),
            "skipped_first": self.skipped[:5],
        }


def source_parts(source: str) -> tuple[str, int]:
    """Return (path, line) of a "file:line" source (line 0 when it names no line)."""
    path, _, line = source.rpartition(":")
    return (path, int(line)) if line.isdigit() else (source, 0)


def _cut_to_fit(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    keep: Sequence[str],
    budget: int,
    max_length: int,
    source: str,
    stats: FitStats,
) -> Messages:
    """Return the messages with distractor text cut so the prompt takes at most `budget`
    tokens (generation prompt included); a row that cannot fit is an ItemError at its source.
    """

    def prompt_tokens(m: Messages) -> int:
        return len(tokenize_judgments(tokenizer, m, []).prompt)

    try:
        fitted, cut = fit_example(tokenizer, messages, keep, budget, prompt_tokens)
    except TruncationError as err:
        path, line = source_parts(source)
        raise ItemError(
            path, line, "chat_template", f"cannot fit --max-length {max_length}: {err}"
        ) from None
    stats.truncated_rows += 1
    stats.cut_tokens += cut
    return fitted


def fit_judgments(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    responses: Sequence[str],
    protected: Sequence[str],
    max_length: int,
    source: str,
    stats: FitStats,
) -> PromptResponses:
    """Return the prompt's and responses' ids with prompt + longest response <= max_length."""
    stats.rows += 1
    ids = tokenize_judgments(tokenizer, messages, list(responses))
    if ids.longest <= max_length:
        return ids
    budget = max_length - max(len(r) for r in ids.responses)
    keep = [*protected, *responses]
    fitted = _cut_to_fit(tokenizer, messages, keep, budget, max_length, source, stats)
    return tokenize_judgments(tokenizer, fitted, list(responses))


def fit_scalar(
    tokenizer: PreTrainedTokenizerBase,
    messages: Messages,
    responses: Sequence[str],
    protected: Sequence[str],
    max_length: int,
    source: str,
    stats: FitStats,
) -> list[list[int]]:
    """Return each (prompt, response) chat's ids, the prompt cut so the longest fits."""
    stats.rows += 1
    ids = [scalar_ids(tokenizer, messages, r) for r in responses]
    longest = max(len(i) for i in ids)
    if longest <= max_length:
        return ids
    budget = max_length - (longest - len(tokenize_judgments(tokenizer, messages, []).prompt))
    keep = [*protected, *responses]
    fitted = _cut_to_fit(tokenizer, messages, keep, budget, max_length, source, stats)
    return [scalar_ids(tokenizer, fitted, r) for r in responses]


def fit_all(
    examples: Sequence[ExampleT], fit: Callable[[ExampleT], FeatureT], skip: bool, stats: FitStats
) -> list[FeatureT]:
    """Return the features of every example that fits; one that cannot raises its ItemError,
    or is counted as skipped when `skip` (--skip-invalid).
    """
    features = []
    for i, ex in enumerate(examples):
        try:
            features.append(fit(ex))
        except ItemError as err:
            if not skip:
                raise
            stats.skipped.append(str(err))
            continue
        stats.kept.append(i)
    if not features:
        raise ValueError(f"no training rows left ({len(stats.skipped)} skipped)")
    return features


def prompt_positions(
    ids: PromptResponses, window: int | None, mode: str, rng: random.Random
) -> list[int] | None:
    """Return spread position ids for a prompt (positional indices synthesis), or None; the
    longest response's ids, which follow the prompt's last one, stay inside the window too.
    """
    if window is None:
        return None
    return spread_prompt(ids, window, rng, mode=mode)

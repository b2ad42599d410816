"""Read training rows in every format longrm knows and turn them into training examples.

- The authors' release: SFT rows (`chat_template` + `golden`) and preference rows
  (`chat_template`, `chosen`, `rejects`); their short `context` field is the key to protect.
- Benchmark rows (Long-RewardBench schema, or longrm's builder) and short preference rows
  (`prompt`, `chosen`, `rejected`): turned into judgments for the judge trainers, and into
  (task prompt, response) pairs for the discriminative RM, which scores exactly those.
- TRL-style SFT rows: `prompt` + `completion`, or `messages` ending with the assistant's turn.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrm.items import (
    Item,
    ItemError,
    PreferenceRow,
    SftRow,
    item_from_row,
    iter_rows,
    validate_row,
)
from longrm.rm.prompts import PromptSet
from longrm.train.examples import PreferenceExample, SftExample
from longrm.train.judgments import Layout, preference_examples, row_group, sft_examples


@dataclass
class Loaded:
    """Examples read from a source and the rows skipped (with their reasons)."""

    examples: list[Any]
    skipped: list[ItemError] = field(default_factory=list)
    #: how many examples came from each row format, for the run record
    formats: dict[str, int] = field(default_factory=dict)
    #: rows read but left out on purpose (`{"best-of-n": 12}` under pairwise_only), counted
    left_out: dict[str, int] = field(default_factory=dict)


def _pairwise(items: list[Item], out: Loaded, pairwise_only: bool) -> list[Item]:
    """Return the items to train on: all, or the pairwise ones (the rest counted as left out)."""
    if not pairwise_only:
        return items
    kept = [item for item in items if item.is_pairwise]
    if len(kept) < len(items):
        out.left_out["best-of-n"] = len(items) - len(kept)
    return kept


def _rows(
    path: str | Path, limit: int | None
) -> Iterator[tuple[str, int, dict[str, Any] | ItemError]]:
    for n, row in enumerate(iter_rows(path)):
        if limit is not None and n >= limit:
            return
        yield row


def _is_item(row: dict[str, Any]) -> bool:
    return (
        "prompt_template" in row
        or "tasktype" in row
        or ("prompt" in row and "chosen" in row and "rejected" in row)
    )


def _release_protected(row: dict[str, Any]) -> tuple[str, ...]:
    """Text truncation must keep: the authors' short key `context`, and longrm's `protected`
    column (the question, answers and planted sentences of rows written from benchmark items).
    """
    kept = [row.get("context"), *(row.get("protected") or [])]
    return tuple(t for t in kept if isinstance(t, str) and t.strip())


def _trl_sft(row: dict[str, Any], where: str, line: int) -> SftExample:
    """Return the example of a TRL-style SFT row (prompt + completion, or messages)."""
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
            raise ItemError(where, line, "messages", "expected a list of {role, content} turns")
        if messages[-1].get("role") != "assistant":
            raise ItemError(where, line, "messages", "the last turn must be the assistant's")
        prompt, target = messages[:-1], messages[-1].get("content")
    else:
        prompt, target = row["prompt"], row["completion"]
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        if isinstance(target, list) and target and isinstance(target[-1], dict):
            target = target[-1].get("content")
    if not isinstance(target, str) or not target.strip():
        raise ItemError(where, line, "completion", "an empty target")
    msgs = [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]
    return SftExample(msgs, target, source=f"{where}:{line}")


def load_sft(
    path: str | Path,
    *,
    prompts: PromptSet | None = None,
    seed: int = 0,
    layout: Layout = "verdict_first",
    pairwise_only: bool = False,
    skip_invalid: bool = False,
    limit: int | None = None,
) -> Loaded:
    """Return Stage I examples: release SFT rows as they are, TRL SFT rows, and benchmark rows
    as judgments (the judge's prompt for the item, in every display order, written in `layout`;
    Best-of-N items left out and counted when `pairwise_only`).
    """
    out = Loaded(examples=[])
    items: list[Item] = []
    for where, line, row in _rows(path, limit):
        try:
            if isinstance(row, ItemError):
                raise row
            if "golden" in row:
                parsed = validate_row(SftRow, row, where, line)
                out.examples.append(
                    SftExample(
                        parsed.messages(),
                        parsed.golden,
                        f"{where}:{line}",
                        _release_protected(row),
                        row_group(row, where, line),
                    )
                )
                out.formats["release-sft"] = out.formats.get("release-sft", 0) + 1
            elif "completion" in row or "messages" in row:
                out.examples.append(_trl_sft(row, where, line))
                out.formats["trl-sft"] = out.formats.get("trl-sft", 0) + 1
            elif _is_item(row):
                items.append(item_from_row(row, where, line))
            else:
                raise ItemError(where, line, "<row>", _unknown_format("SFT"))
        except ItemError as err:
            if not skip_invalid:
                raise
            out.skipped.append(err)
    items = _pairwise(items, out, pairwise_only)
    if items:
        judged = sft_examples(items, prompts or PromptSet.load(), seed=seed, layout=layout)
        out.examples.extend(judged)
        out.formats["benchmark-judgments"] = len(judged)
    return out


def load_preferences(
    path: str | Path,
    *,
    negatives: int,
    judgments: bool = True,
    prompts: PromptSet | None = None,
    seed: int = 0,
    layout: Layout = "verdict_first",
    pairwise_only: bool = False,
    skip_invalid: bool = False,
    limit: int | None = None,
) -> Loaded:
    """Return preference examples with exactly `negatives` rejected responses each.

    Release rows keep their judgments (the first `negatives` rejects: dissenters come first).
    Benchmark and short preference rows become judgments in `layout` when `judgments` (Stage II
    trains a judge), else (task prompt, response) pairs (the discriminative RM scores those);
    `pairwise_only` leaves their Best-of-N items out, counted.
    """
    if negatives < 1:
        raise ValueError(f"negatives must be at least 1, got {negatives}")
    out = Loaded(examples=[])
    items: list[Item] = []
    for where, line, row in _rows(path, limit):
        try:
            if isinstance(row, ItemError):
                raise row
            if "chat_template" in row and "rejects" in row:
                parsed = validate_row(PreferenceRow, row, where, line)
                if len(parsed.rejects) < negatives:
                    raise ItemError(
                        where,
                        line,
                        "rejects",
                        f"{len(parsed.rejects)} rejected judgments, {negatives} asked "
                        "(lower --negatives)",
                    )
                out.examples.append(
                    PreferenceExample(
                        parsed.messages(),
                        parsed.chosen,
                        tuple(parsed.rejects[:negatives]),
                        f"{where}:{line}",
                        _release_protected(row),
                        row_group(row, where, line),
                    )
                )
                out.formats["release-preference"] = out.formats.get("release-preference", 0) + 1
            elif _is_item(row):
                item = item_from_row(row, where, line)
                if not judgments and item.n - 1 < negatives:
                    raise ItemError(
                        where,
                        line,
                        "candidates",
                        f"{item.n - 1} worse candidates, {negatives} asked (lower --negatives)",
                    )
                items.append(item)
            else:
                raise ItemError(where, line, "<row>", _unknown_format("preference"))
        except ItemError as err:
            if not skip_invalid:
                raise
            out.skipped.append(err)
    items = _pairwise(items, out, pairwise_only)
    if items and judgments:
        judged = preference_examples(
            items, prompts or PromptSet.load(), negatives=negatives, seed=seed, layout=layout
        )
        out.examples.extend(judged)
        out.formats["benchmark-judgments"] = len(judged)
    elif items:
        out.examples.extend(_response_pairs(items, negatives))
        out.formats["benchmark-responses"] = len(items)
    return out


def _response_pairs(items: list[Item], negatives: int) -> list[PreferenceExample]:
    """(task prompt, best candidate) over the next `negatives` candidates, in gold order."""
    return [
        PreferenceExample(
            item.prompt,
            item.candidates[0],
            tuple(item.candidates[1 : 1 + negatives]),
            f"{item.origin or item.task}:{item.id}",
            (item.question, *item.candidates[: 1 + negatives]),
        )
        for item in items
    ]


def _unknown_format(kind: str) -> str:
    return (
        f"not a {kind} row longrm knows: expected the authors' columns (chat_template with "
        "golden, or chosen and rejects), a benchmark row (prompt_template, tasktype, ...), "
        "prompt/chosen/rejected, prompt/completion or messages"
    )

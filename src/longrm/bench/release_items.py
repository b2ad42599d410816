"""The authors' Stage II release rows read as items, so that their preferences can be audited.

A release row holds one judging prompt (context, question, a response to judge), the consensus
judgment (`chosen`) and the other judges' judgments (`rejects`). Stage II trains the judge to
prefer the consensus over each of them, and nothing orders the rejects among themselves, so a row
becomes a Best-of-N item whose gold scores are 1 for the consensus and 0 for every reject: its
ordered pairs are exactly (consensus, reject k). Its subtask labels the candidates, joined by
">" (`consensus`, then per reject `dissent` when its judge's score differs from the consensus
judge's, `agree` when it is the same), so that a breakdown by subtask separates the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrm.items import (
    BEST_OF_N,
    Item,
    ItemError,
    LoadResult,
    PreferenceRow,
    _origin,
    iter_rows,
    load_items,
    validate_row,
)


def is_release_preference(row: dict[str, Any]) -> bool:
    """Return True for a Stage II release row (a judging conversation with rejects)."""
    return "chat_template" in row and "rejects" in row


def length_bucket(tokens: int) -> str:
    """Return the smallest power-of-two bucket that holds `tokens` ("33384" -> "64k")."""
    size = 1
    while size < tokens:
        size *= 2
    return f"{size // 1024}k" if size >= 1024 else str(size)


def _labels(row: PreferenceRow) -> list[str]:
    """Return "consensus", then "dissent" or "agree" per reject (see the module docstring)."""
    extra = row.model_extra or {}
    scores = row.scores or {}
    judge = extra.get("chosen_model")
    reject_models = extra.get("reject_models") or []
    labels = ["consensus"]
    for k in range(len(row.rejects)):
        model = reject_models[k] if k < len(reject_models) else None
        if judge in scores and model in scores:
            labels.append("agree" if scores[model] == scores[judge] else "dissent")
        else:
            labels.append("reject")
    return labels


def release_item(row: dict[str, Any], where: str, line: int) -> Item:
    """Return the Best-of-N item of one Stage II release row, or raise ItemError."""
    parsed = validate_row(PreferenceRow, row, where, line)
    extra = parsed.model_extra or {}
    candidates = [parsed.chosen, *parsed.rejects]
    judges = [str(extra.get("chosen_model") or ""), *map(str, extra.get("reject_models") or [])]
    tokens = parsed.prompt_ctx_length or 0
    return Item(
        id=extra.get("index", line - 1),
        task=_origin(where),
        subtask=">".join(_labels(parsed)),
        tasktype=BEST_OF_N,
        subtype=str(len(candidates)),
        length_bucket=length_bucket(tokens) if tokens else "",
        length=tokens,
        prompt=parsed.messages(),
        question=str(extra.get("query") or ""),
        candidates=candidates,
        candidate_models=(judges + [""] * len(candidates))[: len(candidates)],
        candidate_scores=[1.0] + [0.0] * len(parsed.rejects),
        source="longrm release (Stage II)",
        origin=_origin(where),
    )


@dataclass
class ReleaseLoad(LoadResult):
    """Items of release rows, and how many Stage I (SFT) rows were passed over: one judgment
    of one response each, they hold no preference to audit.
    """

    pointwise: int = 0


def load_release_items(path: str | Path, skip_invalid: bool = False) -> ReleaseLoad:
    """Return the items of a file or folder of release rows; Stage I rows are counted, bad rows
    raise ItemError unless skip_invalid (then they are counted in `skipped`).
    """
    result = ReleaseLoad(items=[])
    for where, line, row in iter_rows(path):
        try:
            if isinstance(row, ItemError):
                raise row
            if "golden" in row and "rejects" not in row:
                result.pointwise += 1
                continue
            result.items.append(release_item(row, where, line))
        except ItemError as err:
            if not skip_invalid:
                raise
            result.skipped.append(err)
    return result


def load_audit_items(path: str | Path, skip_invalid: bool = False) -> LoadResult:
    """Return the items of any source longrm reads: benchmark rows (built suites, official
    Long-RewardBench, RewardBench/TRL preference rows) through `load_items`, or the release's
    judging rows (recognised by the `chat_template` of the first row) through this module.
    """
    for _, _, row in iter_rows(path):
        if not isinstance(row, ItemError):
            if "chat_template" in row:
                return load_release_items(path, skip_invalid)
            break
    return load_items(path, skip_invalid)

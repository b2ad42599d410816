"""Best-of-N selection: rank each prompt's N rollouts with a reward model and keep the best.

Picks are appended as they are made and a rerun skips prompts already picked, so a long run
resumes where it stopped. Each pick row is ready for SFT: `messages` is the prompt followed by
the picked response as the assistant turn (the self-distillation data of REFERENCE.md 5).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

from longrm.conversation import PromptInput
from longrm.items import ItemError, Messages, iter_jsonl, validate_row
from longrm.rm.base import RewardModel


class RolloutRow(PromptInput):
    """One prompt and its rollouts: `messages` (chat turns) or `prompt` (text), `responses`."""

    model_config = ConfigDict(extra="allow")

    id: str | int | None = None
    responses: list[str] = Field(min_length=1)


@dataclass
class Rollouts:
    """A validated input row: its key (the id, or a hash of its content) and contents."""

    key: str
    prompt: Messages
    responses: list[str]


@dataclass
class BonOutcome:
    """What a run did: picks made now, picks found from an earlier run, failures (not
    written to the picks, so a rerun tries them again) and skipped invalid rows.
    """

    picked: int = 0
    resumed: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[ItemError] = field(default_factory=list)


def row_key(row: RolloutRow) -> str:
    """Return the row's id as text, or a hash of its prompt and responses when it has none."""
    if row.id is not None:
        return str(row.id)
    content = json.dumps([row.prompt_messages(), row.responses], sort_keys=True)
    return "sha1:" + hashlib.sha1(content.encode()).hexdigest()[:16]


def load_rollouts(path: Path, skip_invalid: bool = False) -> tuple[list[Rollouts], list[ItemError]]:
    """Return the rows of a rollouts JSONL file; a bad row raises ItemError (file:line:field)
    unless `skip_invalid`, which collects it instead.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    rows: list[Rollouts] = []
    skipped: list[ItemError] = []
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path):
        try:
            if isinstance(obj, ItemError):
                raise obj
            row = validate_row(RolloutRow, obj, path, line)
            key = row_key(row)
            if key in seen:
                raise ItemError(
                    path, line, "id", f"duplicate id {key!r} (first at line {seen[key]})"
                )
            seen[key] = line
        except ItemError as err:
            if not skip_invalid:
                raise
            skipped.append(err)
            continue
        rows.append(Rollouts(key, row.prompt_messages(), list(row.responses)))
    return rows, skipped


def picked_keys(out: Path) -> set[str]:
    """Return the ids already in a picks file (a torn last line from a crash is ignored)."""
    if not out.is_file():
        return set()
    keys = set()
    for _, obj in iter_jsonl(out):
        if isinstance(obj, dict) and "id" in obj:
            keys.add(str(obj["id"]))
    return keys


def _drop_torn_tail(out: Path) -> None:
    """Cut a last line that a crash left unfinished, so the next append starts a clean line."""
    if not out.is_file() or out.stat().st_size == 0:
        return
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        out.write_bytes(data[: data.rfind(b"\n") + 1])


def pick(model: RewardModel, rollouts: Rollouts) -> dict[str, Any]:
    """Return the pick row for one prompt; raise ValueError when the model gives no ranking."""
    verdict = model.rank(rollouts.prompt, rollouts.responses)
    if verdict.ranking is None:
        raise ValueError(verdict.error or f"no ranking could be read from: {verdict.text[:200]!r}")
    best = verdict.ranking[0]
    scores = None
    if verdict.scores is not None:
        scores = [s if math.isfinite(s) else None for s in verdict.scores]
    return {
        "id": rollouts.key,
        "messages": [*rollouts.prompt, {"role": "assistant", "content": rollouts.responses[best]}],
        "best": best,
        "ranking": verdict.ranking,
        "scores": scores,
        "n": len(rollouts.responses),
        "truncated": verdict.truncated,
    }


def best_of_n(
    model: RewardModel,
    rows: list[Rollouts],
    out: Path,
    on_start: Callable[[int, int], None] | None = None,
    on_row: Callable[[dict[str, Any] | None], None] | None = None,
) -> BonOutcome:
    """Pick the best response of every row not yet in `out`, appending each pick as it is made.

    `on_start(total, done)` is called once, `on_row(pick or None on failure)` per row judged.
    """
    done = picked_keys(out)
    todo = [r for r in rows if r.key not in done]
    outcome = BonOutcome(resumed=len(rows) - len(todo))
    if on_start is not None:
        on_start(len(rows), outcome.resumed)
    out.parent.mkdir(parents=True, exist_ok=True)
    _drop_torn_tail(out)
    with out.open("a", encoding="utf-8") as fh:
        for rollouts in todo:
            try:
                row: dict[str, Any] | None = pick(model, rollouts)
            except Exception as err:  # one bad prompt must not stop a long run
                outcome.failed.append({"id": rollouts.key, "error": f"{type(err).__name__}: {err}"})
                row = None
            else:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
                outcome.picked += 1
            if on_row is not None:
                on_row(row)
    return outcome

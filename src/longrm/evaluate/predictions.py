"""predictions.jsonl: one record per judged item-order, the source of truth for every metric."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel


class Prediction(BaseModel):
    """One judged item in one display order.

    `order[s]` is the candidate (0 = gold best) shown in display slot s. `ranking` lists display
    slots best first as the model ranked them, None on a parse failure. `scores` is per display
    slot (higher is better) when the model yields a score or confidence.
    """

    key: str
    task: str
    subtask: str = ""
    tasktype: str
    subtype: str = ""
    length_bucket: str = ""
    n: int
    order_index: int
    order: list[int]
    ranking: list[int] | None
    scores: list[float] | None = None
    text: str = ""
    truncated: bool = False
    error: str | None = None
    prompt_tokens: int = 0
    seconds: float = 0.0

    @property
    def is_pairwise(self) -> bool:
        """Return True for a pairwise item."""
        return self.tasktype == "PairWise"

    @property
    def parsed(self) -> bool:
        """Return True when the model produced a usable ranking."""
        return self.ranking is not None

    def predicted_order(self) -> list[int] | None:
        """Return candidates (gold indices) as the model ranked them, best first.

        Slots the ranking names beyond the n shown (a judge inventing a letter) are left out.
        """
        if self.ranking is None:
            return None
        return [self.order[slot] for slot in self.ranking if 0 <= slot < self.n]

    def slot_ranks(self) -> dict[int, int]:
        """Return {display slot: predicted rank} for the shown slots the ranking names.

        A full ranking names every slot; a partial one (the authors' protocol credits `[[A>B>C]]`
        for four answers) leaves the unnamed slots without a rank.
        """
        if self.ranking is None:
            return {}
        return {slot: rank for rank, slot in enumerate(self.ranking) if 0 <= slot < self.n}

    def candidate_scores(self) -> list[float] | None:
        """Return scores re-indexed by candidate (gold index), or None."""
        if self.scores is None:
            return None
        out = [0.0] * self.n
        for slot, cand in enumerate(self.order):
            out[cand] = self.scores[slot]
        return out


def read_predictions(path: str | Path) -> list[Prediction]:
    """Return the complete records of a predictions file, ignoring a torn last line."""
    p = Path(path)
    if not p.exists():
        return []
    out: list[Prediction] = []
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            if not line.endswith("\n"):
                break  # a write cut short by a crash; it is redone on resume
            if line.strip():
                out.append(Prediction.model_validate_json(line))
    return out


def append_predictions(path: str | Path, predictions: Iterable[Prediction]) -> None:
    """Append records and flush them to disk at once."""
    with open(path, "a", encoding="utf-8") as fh:
        for pred in predictions:
            fh.write(json.dumps(pred.model_dump(), ensure_ascii=False) + "\n")
        fh.flush()

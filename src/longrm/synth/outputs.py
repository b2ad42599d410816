"""What a vote run writes: Stage I and Stage II rows in the authors' formats, and pairwise and
Best-of-N rows in the benchmark schema, all derived from the units' judgments and votes.

A run folder holds:
- judgments.jsonl   every unit with its judges' judgments (the source of truth; voting_run.py)
- sft.jsonl         Stage I rows: `chat_template` (the judge's conversation) + `golden`
- preferences.jsonl Stage II rows: `chat_template`, `chosen`, `rejects`, `scores`, `conf`, ...
- pairs.jsonl       benchmark rows (PairWise, BestOfN) from responses to one question whose
                    consensus scores differ
- agreement.json    the judges' agreement (agreement.py)

The training rows' conversation holds the LONG padded prompt when the unit has one (the judges
scored the short key context; the label carries over, which is the point of Short-to-Long), and
the short prompt otherwise.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from longrm.items import BEST_OF_N, PAIRWISE, SHORT_BUCKET, Item, Messages, item_to_row
from longrm.rm.prompts import PromptSet
from longrm.synth.templates import with_response
from longrm.synth.units import Judgment, VoteItem, row_bucket, row_tokens
from longrm.synth.vote import Vote

JUDGMENTS_FILE = "judgments.jsonl"
SFT_FILE = "sft.jsonl"
PREFERENCES_FILE = "preferences.jsonl"
PAIRS_FILE = "pairs.jsonl"
AGREEMENT_FILE = "agreement.json"
SYNTH_TASK = "synth"

# The pattern parse_score reads (rm/verdicts.py): the verdict ends at the last match.
_SCORE_TAG = re.compile(r"\[\s*Score\s*:\s*(-?\d+(?:\.\d+)?)\s*\]", re.IGNORECASE)
_ANALYSIS_TAG = re.compile(r"^\s*\[\s*Analysis\s*\]\s*", re.IGNORECASE)


def short_prompt(context: str, question: str, tag: str | None = None) -> Messages:
    """Return the task prompt of the short key context, worded as the benchmark builder words
    its prompts. With `tag` the context is wrapped in it as in the long prompt, so a question
    that names the tag ("Summarize the text between <K7Q> and </K7Q>") still makes sense.
    """
    body = f"<{tag}>{context}</{tag}>" if tag else context
    return [{"role": "user", "content": f"<context>\n{body}\n</context>\n\nQuestion: {question}"}]


def task_prompt(unit: VoteItem) -> Messages:
    """Return the unit's task prompt for benchmark rows: its long prompt when it has one (a
    judging prompt without its rubric: the user's context and question), else the short one.
    """
    if unit.prompt is None:
        return short_prompt(unit.context, unit.question, unit.tag)
    if unit.prompt_kind == "judge":
        return [m for m in unit.prompt if m["role"] != "system"] or unit.prompt
    return unit.prompt


def judging_conversation(unit: VoteItem, prompts: PromptSet) -> Messages:
    """Return the conversation a training row holds: the long judging prompt with the response
    appended (release style, short2long's rows), else longrm's judge prompt around the long
    task prompt (or the short one), exactly what `longrm eval`'s judges are asked.
    """
    if unit.prompt is not None and unit.prompt_kind == "judge":
        return with_response(unit.prompt, unit.response)
    return prompts.score_messages(task_prompt(unit), unit.response)


def format_judgment(text: str, score: int | None) -> str:
    """Return a judgment in the release's form, `[Analysis]\\n...\\n[Score: n]`.

    The judge's prompt already ends with "[Analysis]", so its reply usually lacks the marker:
    it is added when missing. With a score (a valid judgment) whatever follows the last
    `[Score: n]` is dropped and the verdict is rewritten as `[Score: n]`; an unparseable
    judgment keeps its text as written (its broken form is what a reject should show).
    """
    body = _ANALYSIS_TAG.sub("", text.strip(), count=1)
    if score is None:
        return f"[Analysis]\n{body}".rstrip()
    matches = list(_SCORE_TAG.finditer(body))
    if matches:
        body = body[: matches[-1].start()]
    return f"[Analysis]\n{body.strip()}\n[Score: {score}]"


def _bucket(unit: VoteItem) -> str:
    """Return the unit's length bucket: a bucket field of its row, "short" without a long
    prompt, else "" (unknown).
    """
    return row_bucket(unit.row) or (SHORT_BUCKET if unit.prompt is None else "")


def _carried(unit: VoteItem) -> dict[str, Any]:
    """Return the row fields a training row carries, and the short key fields the release keeps
    (train/data.py protects `context` from truncation).
    """
    row = dict(unit.row)
    row.update(context=unit.context, query=unit.question, answer=unit.response, key=unit.key)
    tokens = row_tokens(unit.row)
    row["prompt_ctx_length"] = tokens if unit.prompt is not None else None
    if not isinstance(row.get("insert_index"), int) or isinstance(row.get("insert_index"), bool):
        row["insert_index"] = None
    bucket = _bucket(unit)
    row["ctx_length"] = bucket or None
    return row


def sft_row(unit: VoteItem, result: Vote, prompts: PromptSet) -> dict[str, Any]:
    """Return the Stage I row of a unit with a consensus: the judge's conversation and the
    consensus judgment as `golden`.
    """
    if result.winner is None or result.consensus is None:
        raise ValueError(f"unit {unit.key!r} has no consensus")
    row = _carried(unit)
    row.update(
        chat_template=judging_conversation(unit, prompts),
        golden=format_judgment(result.winner.explanation, result.consensus),
        score=result.consensus,
        judge=result.winner.judge,
    )
    return row


def preference_row(
    unit: VoteItem, judgments: Sequence[Judgment], result: Vote, prompts: PromptSet
) -> dict[str, Any] | None:
    """Return the Stage II row of a unit with a consensus, or None when no other judgment has
    text to reject (the release always has some).

    `scores` maps each judge to its score (-1 unparseable), `conf` holds the score groups' sizes.
    """
    if result.winner is None or result.consensus is None:
        raise ValueError(f"unit {unit.key!r} has no consensus")
    rejected = [j for j in result.rejects if j.explanation.strip()]
    if not rejected:
        return None
    row = _carried(unit)
    row.update(
        chat_template=judging_conversation(unit, prompts),
        chosen=format_judgment(result.winner.explanation, result.consensus),
        rejects=[
            format_judgment(j.explanation, j.score if j.score >= 0 else None) for j in rejected
        ],
        scores={j.judge: j.score for j in judgments},
        conf=list(result.conf),
        chosen_model=result.winner.judge,
        reject_models=[j.judge for j in rejected],
        score=result.consensus,
    )
    return row


class TrainingWriter:
    """Writes Stage I and Stage II rows as units are voted on (the files are rewritten from the
    start on every run: they are derived from the judgments, which a run only appends to).
    """

    def __init__(self, folder: Path, prompts_file: Path | None = None) -> None:
        self.prompts = PromptSet.load(prompts_file)
        self.sft_path = folder / SFT_FILE
        self.preferences_path = folder / PREFERENCES_FILE
        self._sft: IO[str] = open(self.sft_path, "w", encoding="utf-8")  # noqa: SIM115
        self._preferences: IO[str] = open(self.preferences_path, "w", encoding="utf-8")  # noqa: SIM115
        self.sft_rows = 0
        self.preference_rows = 0
        self.no_rejects = 0

    def add(self, unit: VoteItem, judgments: Sequence[Judgment], result: Vote) -> None:
        """Append the unit's rows if the judges agreed; units without consensus write nothing."""
        if not result.kept:
            return
        _append(self._sft, sft_row(unit, result, self.prompts))
        self.sft_rows += 1
        row = preference_row(unit, judgments, result, self.prompts)
        if row is None:
            self.no_rejects += 1
            return
        _append(self._preferences, row)
        self.preference_rows += 1

    def close(self) -> None:
        """Close both files."""
        self._sft.close()
        self._preferences.close()

    def paths(self) -> dict[str, Path]:
        """Return the files written, by name."""
        return {"sft": self.sft_path, "preferences": self.preferences_path}


def _append(fh: IO[str], row: dict[str, Any]) -> None:
    fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    fh.flush()


def bench_items(records: Sequence[tuple[VoteItem, Sequence[Judgment], Vote]]) -> list[Item]:
    """Return benchmark items from groups of responses to one question (in one prompt).

    Per group, units with a consensus are kept, one per distinct response and per distinct
    score (the first seen): two make a pairwise item, three or more a Best-of-N item, their
    candidates ordered by consensus score, best first. Groups with fewer than two distinct
    scores give nothing: a tie says nothing about which response is better.
    """
    groups: dict[str, list[tuple[VoteItem, int]]] = {}
    for unit, _, result in records:
        if result.consensus is not None:
            groups.setdefault(unit.group, []).append((unit, result.consensus))
    items = []
    for group, members in groups.items():
        by_score: dict[int, VoteItem] = {}
        responses: set[str] = set()
        for unit, score in members:
            if unit.response in responses or score in by_score:
                continue
            responses.add(unit.response)
            by_score[score] = unit
        if len(by_score) < 2:
            continue
        ranked = sorted(by_score.items(), key=lambda kv: -kv[0])
        first = ranked[0][1]
        extra: dict[str, Any] = {
            "consensus_scores": [s for s, _ in ranked],
            "units": [u.key for _, u in ranked],
        }
        labels = {u.label for _, u in ranked}
        if len(ranked) == 2 and labels == {"chosen", "rejected"}:
            # the input's own label against the judges' consensus
            extra["label_agrees"] = ranked[0][1].label == "chosen"
        n = len(ranked)
        items.append(
            Item(
                id=group,
                task=str(first.row.get("task") or SYNTH_TASK),
                subtask=str(first.row.get("subtask") or ""),
                tasktype=PAIRWISE if n == 2 else BEST_OF_N,
                subtype="" if n == 2 else str(n),
                length_bucket=_bucket(first),
                length=row_tokens(first.row) or 0,
                prompt=task_prompt(first),
                question=first.question,
                candidates=[u.response for _, u in ranked],
                candidate_models=[""] * n,
                candidate_scores=None if n == 2 else [float(s) for s, _ in ranked],
                extra=extra,
            )
        )
    return items


def write_bench_rows(
    records: Sequence[tuple[VoteItem, Sequence[Judgment], Vote]], path: Path
) -> dict[str, int]:
    """Write the benchmark rows of `records` to `path` (JSONL, rewritten); return their counts."""
    items = bench_items(records)
    with open(path, "w", encoding="utf-8") as fh:
        for item in items:
            fh.write(json.dumps(item_to_row(item), ensure_ascii=False) + "\n")
    return {
        "pairwise": sum(i.tasktype == PAIRWISE for i in items),
        "best_of_n": sum(i.tasktype == BEST_OF_N for i in items),
    }


def save_jsonl_to_disk(jsonl: Path, folder: Path) -> Path:
    """Write the rows of a JSONL file as a `datasets` save_to_disk folder; return the folder.

    An existing folder is replaced only when it is a saved dataset (never someone's files).
    """
    import datasets

    if folder.exists():
        if not (folder / "dataset_info.json").exists():
            raise FileExistsError(f"{folder} exists and is not a saved dataset: move it away")
        shutil.rmtree(folder)
    with open(jsonl, encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    return folder

"""The units a vote judges (REFERENCE.md section 4), read from input rows or a run's judgments.

A pointwise row (context, question, response) is one unit; a pairwise row (chosen, rejected) is
split into two units, judged and voted on separately, as the paper does. Judges see the SHORT key
context, where judging is reliable; the training rows then put the consensus judgment after the
LONG padded prompt when the row carries one (outputs.py, which imports this module). A unit may
carry judgments already made (a `--from-judgments` file, or a run's judgments.jsonl read back on
resume).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from longrm.items import ItemError, Messages, iter_rows, validate_row

#: the score recorded for a judgment without a well-formed `[Score: n]` (n an integer 0..10)
UNPARSEABLE = -1
MAX_SCORE = 10

#: row fields that can hold the long padded prompt (chat messages, or one text). One that opens
#: with a system message is a judging prompt in the release's style (short2long's: a rubric
#: naming the tag, then the context and question, no response); otherwise, and always for the
#: benchmark schema's `prompt_template`, it is a task prompt that a judge prompt wraps.
LONG_PROMPT_FIELDS = ("prompt_messages", "long_prompt", "prompt_template")
QUESTION_FIELDS = ("question", "query", "prompt")
RESPONSE_FIELDS = ("response", "answer")
#: row fields that may name a unit's length bucket ("8k"), and its long prompt's token count
BUCKET_FIELDS = ("length_bucket", "ctx_length_for_length", "length", "ctx_length")
TOKEN_FIELDS = ("prompt_ctx_length", "prompt_tokens", "length")
# Fields a unit re-derives (or the outputs own): never carried over from an input row.
_NOT_CARRIED = frozenset(
    {
        *LONG_PROMPT_FIELDS,
        *QUESTION_FIELDS,
        *RESPONSE_FIELDS,
        "context",
        "chosen",
        "rejected",
        "rejects",
        "golden",
        "chat_template",
        "scores",
        "conf",
        "judgments",
        "key",
        "group",
        "label",
        "chosen_model",
        "reject_models",
    }
)


@dataclass(frozen=True)
class Judgment:
    """One judge's pointwise judgment: an integer score 0..10 (-1 unparseable) and its text."""

    judge: str
    score: int
    explanation: str
    forced: bool = False  # the judge gave no score; its likeliest one was read (--force-score)

    def to_json(self) -> dict[str, Any]:
        """Return the judgment as written in judgments files (`forced` only when true)."""
        row: dict[str, Any] = {"judge": self.judge, "score": self.score}
        row["explanation"] = self.explanation
        return {**row, "forced": True} if self.forced else row


class JudgmentRecord(BaseModel):
    """A judgment as read from a `--from-judgments` file."""

    model_config = ConfigDict(extra="forbid")

    judge: str = Field(min_length=1)
    score: int = Field(ge=UNPARSEABLE, le=MAX_SCORE)
    explanation: str
    forced: bool = False


@dataclass
class VoteItem:
    """One pointwise unit to judge: a response to a question about a short key context.

    `prompt` is the row's long padded prompt, if any: a task prompt (`prompt_kind` "task": the
    context and question, which a judge prompt wraps) or a judging prompt (`prompt_kind` "judge":
    a rubric naming the tag, then the context and question, to which the response is appended).
    `tag` names the tag around the key context in it. `label` is "chosen" or "rejected" for the
    halves of a pairwise row ("" otherwise); `group` gathers responses to the
    same question at the same length (pairs and Best-of-N rows come from groups); `row` holds
    the row's other fields, carried into the outputs; `judgments` are precomputed ones, if any.
    """

    key: str
    group: str
    context: str
    question: str
    response: str
    prompt: Messages | None = None
    prompt_kind: str = "task"
    tag: str | None = None
    label: str = ""
    row: dict[str, Any] = field(default_factory=dict)
    where: str = ""
    line: int = 0
    judgments: list[Judgment] | None = None

    @property
    def source(self) -> str:
        """Return where the unit was read: 'file:line'."""
        return f"{self.where}:{self.line}"

    def record(self, judgments: Sequence[Judgment]) -> dict[str, Any]:
        """Return the judgments-file line of this unit: its fields plus its judgments (a line
        that `read_units` reads back into the same unit).
        """
        line: dict[str, Any] = dict(self.row)
        line.update(
            key=self.key,
            group=self.group,
            label=self.label,
            context=self.context,
            question=self.question,
            response=self.response,
        )
        if self.prompt is not None:
            # a judging prompt opens with its system rubric, so it reads back as one
            line["prompt_messages"] = self.prompt
        line["judgments"] = [j.to_json() for j in judgments]
        return line


def _first_field(row: dict[str, Any], names: Sequence[str], kind: type) -> Any:
    """Return the first of `names` in the row whose value is of `kind`, else None."""
    for name in names:
        value = row.get(name)
        if isinstance(value, kind) and not isinstance(value, bool):
            return value
    return None


def row_bucket(row: dict[str, Any]) -> str | None:
    """Return the length bucket a row names ("8k"), None when it names none."""
    found = _first_field(row, BUCKET_FIELDS, str)
    return str(found) if found else None


def row_tokens(row: dict[str, Any]) -> int | None:
    """Return the token count of the long prompt a row names, None when it names none."""
    found = _first_field(row, TOKEN_FIELDS, int)
    return int(found) if found is not None else None


def to_score(value: float | None) -> int:
    """Return a parsed score as an integer 0..10, or -1 (UNPARSEABLE) for no score, a fraction
    or a number out of range: the judges were asked for an integer 0..10.
    """
    if value is None or not math.isfinite(value) or value != int(value):
        return UNPARSEABLE
    score = int(value)
    return score if 0 <= score <= MAX_SCORE else UNPARSEABLE


def _digest(*parts: Any) -> str:
    """Return a short content hash: the identity of rows that carry no id."""
    text = json.dumps(parts, ensure_ascii=False, sort_keys=True)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def _text_field(
    row: dict[str, Any], names: Sequence[str], where: str, line: int, what: str
) -> tuple[str, str]:
    """Return (field name, text) of the first of `names` in the row; a message list gives its
    last turn's content. Raise ItemError naming the field when it is missing or empty.
    """
    name = next((n for n in names if n in row), None)
    if name is None:
        raise ItemError(
            where, line, names[0], f"missing: a row needs {what} ({' or '.join(names)})"
        )
    value = row[name]
    if isinstance(value, list) and value and isinstance(value[-1], dict):
        value = value[-1].get("content")
    if not isinstance(value, str) or not value.strip():
        raise ItemError(where, line, name, f"expected non-empty text, got {repr(value)[:60]}")
    return name, value


def _messages(value: Any, where: str, line: int, name: str) -> Messages:
    """Return chat messages from a list of {role, content} (or one text: a user message)."""
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if (
        not isinstance(value, list)
        or not value
        or not all(
            isinstance(m, dict)
            and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str)
            for m in value
        )
    ):
        raise ItemError(where, line, name, "expected a list of {role, content} messages or a text")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _long_prompt(row: dict[str, Any], where: str, line: int) -> tuple[Messages | None, str]:
    """Return the row's long prompt and its kind ("task" or "judge"); (None, "task") if none."""
    name = next((n for n in LONG_PROMPT_FIELDS if row.get(n)), None)
    if name is None:
        return None, "task"
    prompt = _messages(row[name], where, line, name)
    judging = name != "prompt_template" and prompt[0]["role"] == "system"
    return prompt, "judge" if judging else "task"


def _judgments(row: dict[str, Any], where: str, line: int) -> list[Judgment] | None:
    """Return a row's precomputed judgments (None when it has none); each is validated."""
    if "judgments" not in row:
        return None
    value = row["judgments"]
    if not isinstance(value, list) or not value:
        raise ItemError(where, line, "judgments", "expected a non-empty list of judgments")
    out: list[Judgment] = []
    for i, entry in enumerate(value):
        if not isinstance(entry, dict):
            raise ItemError(where, line, f"judgments.{i}", "expected {judge, score, explanation}")
        try:
            parsed = validate_row(JudgmentRecord, entry, where, line)
        except ItemError as err:
            raise ItemError(where, line, f"judgments.{i}.{err.field}", err.message) from None
        if parsed.score != UNPARSEABLE and not parsed.explanation.strip():
            raise ItemError(where, line, f"judgments.{i}.explanation", "empty, for a valid score")
        out.append(Judgment(parsed.judge, parsed.score, parsed.explanation, parsed.forced))
    names = [j.judge for j in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ItemError(where, line, "judgments", f"judge {twice[0]!r} appears twice")
    return out


def _responses(row: dict[str, Any], where: str, line: int) -> list[tuple[str, str]]:
    """Return the row's (label, response) pairs: chosen and rejected for a pairwise row, else
    its one response (labelled as the row says: judgments files keep the label).
    """
    if "chosen" in row and "rejected" in row and not any(f in row for f in RESPONSE_FIELDS):
        return [
            (label, _text_field(row, (label,), where, line, f"a {label} response")[1])
            for label in ("chosen", "rejected")
        ]
    _, response = _text_field(row, RESPONSE_FIELDS, where, line, "a response")
    return [(str(row.get("label") or ""), response)]


def units_from_row(row: dict[str, Any], where: str, line: int) -> list[VoteItem]:
    """Return the units of one input row, or raise ItemError naming file, line and field.

    - Pointwise rows: `context`, `question` (or `query`, `prompt`), `response` (or `answer`).
    - Pairwise rows: `context`, `question` (or `prompt`), `chosen`, `rejected`: two units.
    Optional: `id`, `group`, `tag`, the long prompt (`prompt_messages`, `long_prompt` or
    `prompt_template`, see LONG_PROMPT_FIELDS), `judgments`, and any other field (insert_index,
    lengths...), carried into the outputs. short2long's rows are of these kinds.
    """
    context = row.get("context")
    if not isinstance(context, str) or not context.strip():
        raise ItemError(where, line, "context", "missing or empty: the short key context to judge")
    _, question = _text_field(row, QUESTION_FIELDS, where, line, "a question")
    prompt, prompt_kind = _long_prompt(row, where, line)
    judgments = _judgments(row, where, line)
    row_id = row.get("id")
    if row_id is not None and (not isinstance(row_id, int | str) or isinstance(row_id, bool)):
        raise ItemError(where, line, "id", f"expected an integer or a text, got {row_id!r}")
    tag = row.get("tag") if isinstance(row.get("tag"), str) and row.get("tag") else None
    responses = _responses(row, where, line)
    if judgments is not None and len(responses) != 1:
        raise ItemError(
            where,
            line,
            "judgments",
            f"a row with {len(responses)} responses cannot hold judgments: judgments go on "
            "pointwise rows (one per response), as vote writes them",
        )
    given_group = row.get("group")
    if given_group is not None:
        group = str(given_group)
    elif len(responses) > 1:
        group = str(row_id) if row_id is not None else _digest(context, question, responses, prompt)
    else:  # pointwise rows answering one question at one length form a group
        group = _digest(context, question, row_bucket(row) if prompt is not None else None)
    given_key = row.get("key")
    if given_key is not None and (not isinstance(given_key, str) or not given_key):
        raise ItemError(where, line, "key", f"expected a non-empty text, got {given_key!r}")
    carried = {k: v for k, v in row.items() if k not in _NOT_CARRIED}
    units = []
    for label, response in responses:
        if len(responses) > 1:
            key = f"{group}:{label}"
        elif isinstance(given_key, str):
            key = given_key
        else:
            key = (
                str(row_id) if row_id is not None else _digest(context, question, response, prompt)
            )
        units.append(
            VoteItem(
                key=key,
                group=group,
                context=context,
                question=question,
                response=response,
                prompt=prompt,
                prompt_kind=prompt_kind,
                tag=tag,
                label=label,
                row=carried,
                where=where,
                line=line,
                judgments=judgments,
            )
        )
    return units


@dataclass
class ReadResult:
    """Units read from a source, and the rows skipped with `skip_invalid`."""

    units: list[VoteItem]
    skipped: list[ItemError] = field(default_factory=list)


def read_units(
    path: str | Path, *, skip_invalid: bool = False, limit: int | None = None
) -> ReadResult:
    """Return the units of a JSONL file, a folder of JSONL files or a save_to_disk folder.

    Bad rows (and a second row with a unit's key) raise ItemError, or are counted in `skipped`
    with `skip_invalid`. `limit` keeps the units of the first `limit` good rows.
    """
    result = ReadResult(units=[])
    seen: dict[str, str] = {}
    rows = 0
    for where, line, row in iter_rows(path):
        if limit is not None and rows >= limit:
            break
        try:
            if isinstance(row, ItemError):
                raise row
            units = units_from_row(row, where, line)
            for unit in units:
                if unit.key in seen:
                    raise ItemError(
                        where,
                        line,
                        "id" if "id" in row else "key",
                        f"unit {unit.key!r} again (first at {seen[unit.key]}); ids must be "
                        "unique, and a row without one is known by its content",
                    )
            for unit in units:
                seen[unit.key] = unit.source
        except ItemError as err:
            if not skip_invalid:
                raise
            result.skipped.append(err)
            continue
        result.units.extend(units)
        rows += 1
    return result


def read_judgments_file(path: Path) -> list[VoteItem]:
    """Return the units of a run's judgments file, each with its judgments.

    A last line cut short by a killed run is dropped (the file is truncated before it); any
    other bad line is an ItemError.
    """
    if not path.exists():
        return []
    raw = path.read_bytes()
    if raw and not raw.endswith(b"\n"):
        cut = raw.rfind(b"\n") + 1
        try:
            json.loads(raw[cut:])
        except json.JSONDecodeError:
            with open(path, "r+b") as fh:
                fh.truncate(cut)
        else:  # a whole line without its newline: the next append must not join it
            with open(path, "ab") as fh:
                fh.write(b"\n")
    units = read_units(path).units if path.stat().st_size else []
    for unit in units:
        if unit.judgments is None:
            raise ItemError(unit.where, unit.line, "judgments", "missing in a judgments file")
    return units

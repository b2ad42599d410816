"""Short-context input rows for Short-to-Long: three formats read into one shape, errors located.

Accepted rows (the keys tell them apart):
- the authors' release (`chat_template` plus `golden`, or `chosen`/`rejects`): the key context
  is the span inside a tag like `<YJ6>...</YJ6>` of the user message's `<context>`, taken byte for
  byte; a row without such a tag holds a whole long context (key chunks must be found);
- TRL preference rows `prompt`/`chosen`/`rejected` with an extra `context` field;
- pointwise rows `context`/`question`/`response` (any other field, `score` or `id`, carried over).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from longrm.items import (
    ItemError,
    LooseText,
    PreferenceRow,
    SftRow,
    ShortPreferenceRow,
    _response_text,
    iter_rows,
    validate_row,
)

Format = Literal["release-preference", "release-sft", "trl", "pointwise"]

_TAG_NAME = re.compile(r"<([A-Z0-9]{2,4})>")
_TAGGED = re.compile(r"<([A-Z0-9]{2,4})>(.*?)</\1>", re.S)
_QUESTION = re.compile(r"<(question|prompt)>\n?(.*?)\n?</\1>", re.S)
_RESPONSE = re.compile(r"<response>\n?(.*?)\n?</response>", re.S)
# Release fields rebuilt by Short-to-Long (the long prompt and its measurements) or moved into
# `context`/`question`/`responses`; everything else is carried over.
_RELEASE_REBUILT = {
    "chat_template",
    "context",
    "context_and_question",
    "query",
    "answer",
    "insert_index",
    "prompt_ctx_length",
    "ctx_length",
}
_RELEASE_LABELS = ("golden", "chosen", "rejects", "scores", "conf", "chosen_model", "reject_models")


class TrlContextRow(ShortPreferenceRow):
    """A TRL preference row with the short context its prompt is about."""

    context: str = Field(min_length=1)


class PointwiseRow(BaseModel):
    """One response to one question about a short context; `score` is an optional label."""

    model_config = ConfigDict(extra="allow")

    id: int | str | None = None
    context: str = Field(min_length=1)
    question: LooseText = ""
    response: str = Field(min_length=1)
    score: int | float | None = None


@dataclass
class ShortRow:
    """One input row: its key context, question and responses, and its labels untouched.

    `long_context` is True when `context` is a whole long context whose key part is unknown (an
    untagged release row): Short-to-Long then keeps its key chunks only.
    """

    id: str
    where: str
    line: int
    input_format: Format
    context: str
    question: str
    responses: list[str]
    labels: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    long_context: bool = False

    @property
    def kind(self) -> str:
        """Return "pairwise" for chosen/rejected rows, else "pointwise"."""
        return "pairwise" if self.input_format == "trl" else "pointwise"


@dataclass
class ReadResult:
    """Rows read from a source, and the bad ones skipped (with --skip-invalid)."""

    rows: list[ShortRow]
    skipped: list[ItemError] = field(default_factory=list)


def _message(messages: list[dict[str, str]], role: str) -> str:
    found = [m["content"] for m in messages if m["role"] == role]
    return found[-1] if found else ""


def _key_span(system: str, context: str) -> re.Match[str] | None:
    """Return the tagged key span of a release context: the tag its system prompt names, else
    the first tag-shaped pair (a name the system prompt gives rules out `<B>bold</B>` text).
    """
    for name in dict.fromkeys(_TAG_NAME.findall(system)):
        found = re.search(f"<{name}>(.*?)</{name}>", context, re.S)
        if found:
            return found
    return None if system and _TAG_NAME.search(system) else _TAGGED.search(context)


def _from_release(row: dict[str, Any], where: str, line: int) -> ShortRow:
    """Return the short row of a release row (Stage I `golden` or Stage II `chosen`/`rejects`)."""
    sft = "golden" in row
    parsed: SftRow | PreferenceRow = (
        validate_row(SftRow, row, where, line)
        if sft
        else validate_row(PreferenceRow, row, where, line)
    )
    messages = parsed.messages()
    user = _message(messages, "user")
    start, end = user.find("<context>"), user.rfind("</context>")
    if start >= 0 and end > start:
        context = user[start + len("<context>") : end]
    else:  # some Stage I rows put the context bare before the question block
        asked_at = _QUESTION.search(user)
        if asked_at is None:
            raise ItemError(
                where, line, "chat_template", "the user message has no <context> or <question>"
            )
        context, end = user[: asked_at.start()], asked_at.start()
    context = context.removeprefix("\n").removesuffix("\n")
    tagged = _key_span(_message(messages, "system"), context)
    question = _QUESTION.search(user, end)
    response = _RESPONSE.search(user, end)
    asked = question.group(2) if question else str(row.get("query") or "")
    answer = response.group(1) if response else str(row.get("answer") or "")
    if not asked.strip():
        raise ItemError(where, line, "chat_template", "no <question> or <prompt> block, no `query`")
    if not answer.strip():
        raise ItemError(where, line, "chat_template", "no <response> block and no `answer`")
    labels = {k: row[k] for k in _RELEASE_LABELS if k in row}
    extra = {k: v for k, v in row.items() if k not in _RELEASE_REBUILT and k not in labels}
    if "index" in row:
        row_id = str(row["index"])
    elif "id" in row:
        row_id = str(row["id"])
    else:
        row_id = f"{Path(where).stem}:{line}"
    return ShortRow(
        id=row_id,
        where=where,
        line=line,
        input_format="release-sft" if sft else "release-preference",
        context=tagged.group(tagged.lastindex or 0) if tagged else context,
        question=asked,
        responses=[answer],
        labels=labels,
        extra=extra,
        long_context=tagged is None,
    )


def _from_trl(row: dict[str, Any], where: str, line: int) -> ShortRow:
    """Return the short row of a TRL preference row with a `context` field."""
    if "context" not in row:
        raise ItemError(
            where,
            line,
            "context",
            "a prompt/chosen/rejected row needs the short context it is about",
        )
    parsed = validate_row(TrlContextRow, row, where, line)
    prompt = parsed.prompt
    question = prompt if isinstance(prompt, str) else (prompt[-1].content if prompt else "")
    if not question.strip():
        raise ItemError(where, line, "prompt", "an empty prompt")
    responses = [
        _response_text(parsed.chosen, where, line, "chosen"),
        _response_text(parsed.rejected, where, line, "rejected"),
    ]
    labels = {"chosen": row["chosen"], "rejected": row["rejected"]}
    extra = {k: v for k, v in row.items() if k not in ("context", "chosen", "rejected")}
    return ShortRow(
        id=str(parsed.id) if parsed.id is not None else f"{Path(where).stem}:{line}",
        where=where,
        line=line,
        input_format="trl",
        context=parsed.context,
        question=question,
        responses=responses,
        labels=labels,
        extra=extra,
    )


def _from_pointwise(row: dict[str, Any], where: str, line: int) -> ShortRow:
    """Return the short row of a `context`/`question`/`response` row."""
    parsed = validate_row(PointwiseRow, row, where, line)
    labels = {"score": row["score"]} if "score" in row else {}
    extra = {k: v for k, v in row.items() if k not in ("context", "question", "response", "score")}
    return ShortRow(
        id=str(parsed.id) if parsed.id is not None else f"{Path(where).stem}:{line}",
        where=where,
        line=line,
        input_format="pointwise",
        context=parsed.context,
        question=parsed.question,
        responses=[parsed.response],
        labels=labels,
        extra=extra,
    )


def short_row(row: dict[str, Any], where: str, line: int) -> ShortRow:
    """Return the ShortRow of one input row, or raise ItemError naming file, line and field."""
    if "chat_template" in row:
        return _from_release(row, where, line)
    if "chosen" in row or "rejected" in row:
        if "question" in row and "prompt" not in row:  # a short QA pair: its question prompts
            row = {"prompt": row["question"], **{k: v for k, v in row.items() if k != "question"}}
        return _from_trl(row, where, line)
    if "response" in row or "context" in row:
        return _from_pointwise(row, where, line)
    keys = ", ".join(sorted(row)[:8]) or "none"
    raise ItemError(
        where,
        line,
        "<row>",
        f"unknown row format (keys: {keys}); expected the release's chat_template rows, "
        "prompt/chosen/rejected with context, or context/question/response",
    )


def read_short_rows(
    path: str | Path,
    skip_invalid: bool = False,
    limit: int | None = None,
    need_question: bool = True,
) -> ReadResult:
    """Return the rows of a JSONL file, a folder of them, or a save_to_disk folder.

    Bad rows raise ItemError (file, line, field), or are counted in `skipped` with skip_invalid.
    `need_question` False lets rows without a question through (the summary variant asks its
    own). Ids must be unique: outputs are keyed by input id and length.
    """
    result = ReadResult(rows=[])
    seen: dict[str, tuple[str, int]] = {}
    for where, line, raw in iter_rows(path):
        try:
            if isinstance(raw, ItemError):
                raise raw
            row = short_row(raw, where, line)
            if need_question and not row.question.strip():
                raise ItemError(where, line, "question", "an empty question")
            if row.id in seen:
                first, at = seen[row.id]
                raise ItemError(
                    where, line, "id", f"duplicate id {row.id!r} (first at {first}:{at})"
                )
            seen[row.id] = (where, line)
        except ItemError as err:
            if not skip_invalid:
                raise
            result.skipped.append(err)
            continue
        result.rows.append(row)
        if limit is not None and len(result.rows) >= limit:
            break
    return result

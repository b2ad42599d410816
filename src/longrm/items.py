"""Pairwise and Best-of-N items and the authors' release rows: schema, reading, writing, errors.

Files are validated at the edge (pydantic); inside the toolkit an item is a plain dataclass whose
candidates are always stored best first, so gold rank i is simply index i.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

Messages = list[dict[str, str]]
RowT = TypeVar("RowT", bound=BaseModel)

PAIRWISE = "PairWise"
BEST_OF_N = "BestOfN"


class ItemError(ValueError):
    """A bad row, located: file, line (1-based, or row index + 1 for Arrow data), field."""

    def __init__(self, path: str | Path, line: int, field_name: str, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.field = field_name
        self.message = message
        super().__init__(f"{self.path}:{line}: field '{field_name}': {message}")


# ---------------------------------------------------------------------------------------------
# Long-RewardBench rows (the official schema, REFERENCE.md section 2)


class _Message(BaseModel):
    role: str
    content: str


def _text_or_empty(value: Any) -> Any:
    """Return "" for null and str(x) for numbers and booleans; other values go on to validation."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    return value


def _count_or_zero(value: Any) -> Any:
    """Return 0 for null, so a missing count never stops a row the evaluation can judge."""
    return 0 if value is None else value


# Fields the evaluation only carries along: null and plain scalars are accepted as text.
LooseText = Annotated[str, BeforeValidator(_text_or_empty)]
LooseCount = Annotated[int, BeforeValidator(_count_or_zero)]
FiniteScore = Annotated[float, Field(allow_inf_nan=False)]


class BenchRow(BaseModel):
    """One row of an official Long-RewardBench task file."""

    model_config = ConfigDict(extra="allow")

    id: int | str
    prompt_template: list[_Message] = Field(min_length=1)
    question: LooseText = ""
    source: LooseText = ""
    task: LooseText
    subtask: LooseText = ""
    tasktype: Literal["PairWise", "BestOfN"]
    subtype: LooseText = ""
    ctx_length_for_length: LooseText
    ctx_length_for_words: LooseText = ""
    length: LooseCount = 0
    words_count: LooseCount = 0
    chosen: str | None = None
    rejected: str | None = None
    chosen_model: LooseText | None = None
    rejected_model: LooseText | None = None
    candidates: list[str] | None = None
    candidates_model: list[LooseText] | None = None
    candidates_score: list[FiniteScore] | None = None


@dataclass(frozen=True)
class Item:
    """A judged unit: a task prompt (context included) and candidates stored best first."""

    id: int | str
    task: str
    subtask: str
    tasktype: str
    subtype: str
    length_bucket: str
    length: int
    prompt: Messages
    question: str
    candidates: list[str]
    candidate_models: list[str] = field(default_factory=list)
    candidate_scores: list[float] | None = None
    source: str = ""
    words_count: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    #: the file (stem) or dataset split the row came from; the authors take the task from it
    origin: str = ""

    @property
    def key(self) -> str:
        """Return the identity used in predictions: task and id."""
        return f"{self.task}:{self.id}"

    @property
    def n(self) -> int:
        """Return the number of candidates."""
        return len(self.candidates)

    @property
    def is_pairwise(self) -> bool:
        """Return True for a pairwise item."""
        return self.tasktype == PAIRWISE


def validate_row(model: type[RowT], row: dict[str, Any], path: str | Path, line: int) -> RowT:
    """Return `row` validated as `model`, or raise ItemError for its first bad field."""
    try:
        return model.model_validate(row)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "<row>"
        got = repr(first.get("input"))[:80]
        raise ItemError(path, line, loc, f"{first['msg']} (got {got})") from None


def item_from_row(row: dict[str, Any], path: str | Path, line: int) -> Item:
    """Return the item of one row, or raise ItemError naming file, line and field.

    Official Long-RewardBench rows and short preference rows (RewardBench / TRL style:
    `prompt`, `chosen`, `rejected`) are both accepted; the keys tell them apart.
    """
    if "prompt_template" not in row and "tasktype" not in row and "prompt" in row:
        return _item_from_preference(row, path, line)
    parsed = validate_row(BenchRow, row, path, line)
    prompt = [m.model_dump() for m in parsed.prompt_template]
    subtype = parsed.subtype
    if parsed.tasktype == PAIRWISE:
        for name in ("chosen", "rejected"):
            value = getattr(parsed, name)
            if not value:
                raise ItemError(path, line, name, "a pairwise row needs a non-empty string")
        candidates = [parsed.chosen or "", parsed.rejected or ""]
        models = [parsed.chosen_model or "", parsed.rejected_model or ""]
        scores = None
    else:
        candidates = list(parsed.candidates or [])
        if len(candidates) < 2:
            raise ItemError(
                path, line, "candidates", f"a Best-of-N row needs at least 2, got {len(candidates)}"
            )
        if any(not c for c in candidates):
            raise ItemError(path, line, "candidates", "an empty candidate string")
        # The Rank2/3/4 columns come from `subtype`: it must name the number of candidates.
        if subtype and subtype != str(len(candidates)):
            raise ItemError(
                path,
                line,
                "subtype",
                f"a Best-of-N row with subtype {subtype!r} (its Rank column) holds "
                f"{len(candidates)} candidates; the two must agree",
            )
        subtype = subtype or str(len(candidates))
        models = list(parsed.candidates_model or [""] * len(candidates))
        if len(models) != len(candidates):
            raise ItemError(
                path,
                line,
                "candidates_model",
                f"{len(models)} names for {len(candidates)} candidates",
            )
        scores = list(parsed.candidates_score) if parsed.candidates_score else None
        if scores is not None:
            _check_gold_order(scores, len(candidates), path, line)
    known = set(BenchRow.model_fields)
    extra = {k: v for k, v in row.items() if k not in known}
    words_bucket = parsed.ctx_length_for_words
    if words_bucket and words_bucket != parsed.ctx_length_for_length:
        extra["ctx_length_for_words"] = words_bucket  # so that writing the item back loses nothing
    return Item(
        id=parsed.id,
        task=parsed.task,
        subtask=parsed.subtask,
        tasktype=parsed.tasktype,
        subtype=subtype,
        length_bucket=parsed.ctx_length_for_length,
        length=parsed.length,
        prompt=prompt,
        question=parsed.question,
        candidates=candidates,
        candidate_models=models,
        candidate_scores=scores,
        source=parsed.source,
        words_count=parsed.words_count,
        extra=extra,
        origin=_origin(path),
    )


def _origin(path: str | Path) -> str:
    """Return the task name a file or split gives its rows: "LongQA" for ".../LongQA.jsonl"."""
    text = str(path)
    if text.endswith("]") and "[" in text:  # a save_to_disk split: "folder[train]"
        return text[text.rindex("[") + 1 : -1]
    return Path(text).stem


# ---------------------------------------------------------------------------------------------
# Short preference rows (RewardBench, TRL): the short-context retention check

SHORT_BUCKET = "short"
PREFERENCE_TASK = "preference"


class ShortPreferenceRow(BaseModel):
    """A RewardBench- or TRL-style preference row: plain text or message lists."""

    model_config = ConfigDict(extra="allow")

    id: int | str | None = None
    prompt: str | list[_Message]
    chosen: str | list[_Message]
    rejected: str | list[_Message]
    subset: LooseText = ""


def _response_text(value: str | list[_Message], path: str | Path, line: int, name: str) -> str:
    """Return a response as text: the string itself, or the final assistant turn's content."""
    if isinstance(value, str):
        text = value
    else:
        if not value or value[-1].role != "assistant":
            raise ItemError(path, line, name, "a message list must end with an assistant turn")
        text = value[-1].content
    if not text.strip():
        raise ItemError(path, line, name, "an empty response")
    return text


def _item_from_preference(row: dict[str, Any], path: str | Path, line: int) -> Item:
    """Return the pairwise item of a short preference row (`chosen` is the better response)."""
    parsed = validate_row(ShortPreferenceRow, row, path, line)
    if isinstance(parsed.prompt, str):
        if not parsed.prompt.strip():
            raise ItemError(path, line, "prompt", "an empty prompt")
        prompt: Messages = [{"role": "user", "content": parsed.prompt}]
    else:
        if not parsed.prompt:
            raise ItemError(path, line, "prompt", "an empty message list")
        prompt = [m.model_dump() for m in parsed.prompt]
    candidates = [
        _response_text(parsed.chosen, path, line, "chosen"),
        _response_text(parsed.rejected, path, line, "rejected"),
    ]
    known = set(ShortPreferenceRow.model_fields)
    return Item(
        id=parsed.id if parsed.id is not None else line - 1,
        task=parsed.subset or _origin(path) or PREFERENCE_TASK,
        subtask=parsed.subset,
        tasktype=PAIRWISE,
        subtype="",
        length_bucket=SHORT_BUCKET,
        length=0,
        prompt=prompt,
        question=prompt[-1]["content"],
        candidates=candidates,
        candidate_models=["", ""],
        extra={k: v for k, v in row.items() if k not in known},
        origin=_origin(path),
    )


def _check_gold_order(scores: list[float], n: int, path: str | Path, line: int) -> None:
    """Raise unless candidates_score agrees with the stored best-first order."""
    if len(scores) != n:
        raise ItemError(path, line, "candidates_score", f"{len(scores)} scores for {n} candidates")
    for i in range(n - 1):
        if scores[i] < scores[i + 1]:
            raise ItemError(
                path,
                line,
                "candidates_score",
                f"gold order from scores {scores} disagrees with the stored order "
                f"(candidate {i + 1} scores below candidate {i + 2}); candidates must be stored "
                "best first",
            )


def item_to_row(item: Item) -> dict[str, Any]:
    """Return the official-schema row of an item (inverse of item_from_row)."""
    pairwise = item.is_pairwise
    row: dict[str, Any] = {
        "id": item.id,
        "prompt_template": item.prompt,
        "question": item.question,
        "source": item.source,
        "chosen": item.candidates[0] if pairwise else "",
        "rejected": item.candidates[1] if pairwise else "",
        "subtask": item.subtask,
        "chosen_model": item.candidate_models[0] if pairwise and item.candidate_models else "",
        "rejected_model": item.candidate_models[1] if pairwise and item.candidate_models else "",
        "ctx_length_for_length": item.length_bucket,
        "ctx_length_for_words": item.extra.get("ctx_length_for_words", item.length_bucket),
        "length": item.length,
        "words_count": item.words_count,
        "task": item.task,
        "tasktype": item.tasktype,
        "subtype": item.subtype,
        "candidates_model": [] if pairwise else item.candidate_models,
        "candidates": [] if pairwise else item.candidates,
        "candidates_score": [] if pairwise else (item.candidate_scores or []),
    }
    for k, v in item.extra.items():
        row.setdefault(k, v)
    return row


# ---------------------------------------------------------------------------------------------
# Reading and writing


@dataclass
class LoadResult:
    """Items read from a source, and the rows skipped with --skip-invalid."""

    items: list[Item]
    skipped: list[ItemError] = field(default_factory=list)


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | ItemError]]:
    """Yield (line number, object) per non-blank line; a bad line yields an ItemError instead,
    so that a caller can skip it and read on.
    """
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, ItemError(path, line_no, "<json>", f"malformed JSON: {err.msg}")
                continue
            if not isinstance(obj, dict):
                kind = type(obj).__name__
                yield line_no, ItemError(path, line_no, "<row>", f"expected an object, got {kind}")
                continue
            yield line_no, obj


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists()
    )


def iter_rows(path: str | Path) -> Iterator[tuple[str, int, dict[str, Any] | ItemError]]:
    """Yield (file, line, row) from a JSONL file, a folder of JSONL files or a save_to_disk folder.

    A line that is not a JSON object is yielded as an ItemError in place of the row, so that
    callers decide whether to stop or skip it.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if _is_saved_dataset(p):
        import datasets

        loaded = datasets.load_from_disk(str(p))
        splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
        for split, ds in splits:
            where = f"{p}[{split}]" if split else str(p)
            for i, row in enumerate(ds):
                yield where, i + 1, dict(row)
        return
    files = sorted(p.glob("*.jsonl")) if p.is_dir() else [p]
    if not files:
        raise FileNotFoundError(f"{p}: no *.jsonl files in this folder")
    for f in files:
        for line_no, obj in iter_jsonl(f):
            yield str(f), line_no, obj


def load_items(
    path: str | Path, skip_invalid: bool = False, limit: int | None = None
) -> LoadResult:
    """Return the items of a benchmark source; bad rows raise ItemError unless skip_invalid."""
    result = LoadResult(items=[])
    seen: dict[str, tuple[str, int]] = {}
    for where, line, row in iter_rows(path):
        try:
            if isinstance(row, ItemError):
                raise row
            item = item_from_row(row, where, line)
            if item.key in seen:
                f0, l0 = seen[item.key]
                raise ItemError(where, line, "id", f"duplicate id {item.key} (first at {f0}:{l0})")
            seen[item.key] = (where, line)
        except ItemError as err:
            if not skip_invalid:
                raise
            result.skipped.append(err)
            continue
        result.items.append(item)
        if limit is not None and len(result.items) >= limit:
            break
    return result


def write_items(items: Iterable[Item], out: str | Path) -> list[Path]:
    """Write items as official task files (one `<task>.jsonl` per task) into folder `out`."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    by_task: dict[str, list[Item]] = {}
    for item in items:
        by_task.setdefault(item.task, []).append(item)
    written = []
    for task, task_items in sorted(by_task.items()):
        target = folder / f"{task}.jsonl"
        with open(target, "w", encoding="utf-8") as fh:
            for item in task_items:
                fh.write(json.dumps(item_to_row(item), ensure_ascii=False) + "\n")
        written.append(target)
    return written


# ---------------------------------------------------------------------------------------------
# The authors' training-data release (Stage I SFT rows and Stage II preference rows)


class SftRow(BaseModel):
    """A Stage I row: a pointwise judging conversation and its gold judgment."""

    model_config = ConfigDict(extra="allow")

    chat_template: list[_Message] = Field(min_length=1)
    golden: str = Field(min_length=1)
    ctx_length: str | int | None = None
    language: str | None = None
    perspective: str | None = None

    def messages(self) -> Messages:
        """Return the conversation as plain dicts."""
        return [m.model_dump() for m in self.chat_template]


class PreferenceRow(BaseModel):
    """A Stage II row: a judging conversation, the consensus judgment and rejected judgments."""

    model_config = ConfigDict(extra="allow")

    chat_template: list[_Message] = Field(min_length=1)
    chosen: str = Field(min_length=1)
    rejects: list[str] = Field(min_length=1)
    scores: dict[str, int | float] | None = None
    conf: list[int] | None = None
    prompt_ctx_length: int | None = None

    @field_validator("rejects")
    @classmethod
    def _no_empty_rejects(cls, v: list[str]) -> list[str]:
        if any(not r for r in v):
            raise ValueError("an empty rejected judgment")
        return v

    def messages(self) -> Messages:
        """Return the conversation as plain dicts."""
        return [m.model_dump() for m in self.chat_template]


def load_release_rows(
    path: str | Path, model: type[RowT], skipped: list[ItemError] | None = None
) -> list[RowT]:
    """Return validated release rows (SftRow or PreferenceRow) from JSONL or save_to_disk data.

    Bad rows raise ItemError, or are appended to `skipped` when a list is given.
    """
    rows: list[RowT] = []
    for where, line, row in iter_rows(path):
        try:
            if isinstance(row, ItemError):
                raise row
            rows.append(validate_row(model, row, where, line))
        except ItemError as err:
            if skipped is None:
                raise
            skipped.append(err)
    return rows

"""Consistency majority voting (REFERENCE.md section 4): several judges score each response on its
short key context; the plurality score is the label and its explanation the training target.

A pointwise row (context, question, response) is one unit; a pairwise row (chosen, rejected) is
split into two units, judged and voted on separately, as the paper does. Judges see the SHORT key
context, where judging is reliable; the training rows then put the consensus judgment after the
LONG padded prompt when the row carries one (see outputs.py).

The run folder's judgments.jsonl is the source of truth: one line per unit, appended as soon as
its judges are done; a rerun skips the units it holds, and every other output is derived from it.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from longrm.items import ItemError, Messages, iter_rows, validate_row
from longrm.rm.base import RewardModel, Sampling
from longrm.synth import agreement, outputs

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

    def to_json(self) -> dict[str, Any]:
        """Return the judgment as written in judgments files."""
        return {"judge": self.judge, "score": self.score, "explanation": self.explanation}


class JudgmentRecord(BaseModel):
    """A judgment as read from a `--from-judgments` file."""

    model_config = ConfigDict(extra="forbid")

    judge: str = Field(min_length=1)
    score: int = Field(ge=UNPARSEABLE, le=MAX_SCORE)
    explanation: str


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
        that `read_items` reads back into the same unit).
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


def to_score(value: float | None) -> int:
    """Return a parsed score as an integer 0..10, or -1 (UNPARSEABLE) for no score, a fraction
    or a number out of range: the judges were asked for an integer 0..10.
    """
    if value is None or not math.isfinite(value) or value != int(value):
        return UNPARSEABLE
    score = int(value)
    return score if 0 <= score <= MAX_SCORE else UNPARSEABLE


# ---------------------------------------------------------------------------------------------
# Reading units


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
        out.append(Judgment(parsed.judge, parsed.score, parsed.explanation))
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
        group = _digest(context, question, outputs.row_bucket(row) if prompt is not None else None)
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


# ---------------------------------------------------------------------------------------------
# Voting


@dataclass(frozen=True)
class Vote:
    """What the judges agreed on for one unit.

    `consensus` is the agreed score (None when the unit is dropped), `winner` the judgment whose
    explanation becomes the training target, `rejects` every other judgment (dissenters first,
    then the rest of the consensus group), `conf` the sizes of the score groups, largest first
    (unparseable judgments form a group of their own, as in the authors' release), and `dropped`
    why there is no consensus: "no-agreement" (no valid group reaches min_agree) or "tie" (the
    two largest valid groups are the same size).
    """

    consensus: int | None
    winner: Judgment | None
    rejects: tuple[Judgment, ...]
    conf: tuple[int, ...]
    dropped: str | None = None

    @property
    def kept(self) -> bool:
        """Return True when the judges reached a consensus."""
        return self.consensus is not None


NO_AGREEMENT = "no-agreement"
TIE = "tie"


def vote(judgments: Sequence[Judgment], min_agree: int = 2, priority: Sequence[str] = ()) -> Vote:
    """Return the consensus of `judgments` by plurality of equal scores.

    Unparseable judgments (-1) are failures, not opinions: they never form the consensus and
    never tie with it, but they count as dissenters (and come first among them: a broken format
    is the clearest wrong judgment). The winner is the consensus judge ranked first by
    `priority` (judge names), then by position in `judgments`. Other dissenters follow by
    distance from the consensus score, farthest first.
    """
    if min_agree < 2:
        raise ValueError(
            f"min_agree must be at least 2 (a consensus needs two judges), got {min_agree}"
        )
    groups: dict[int, list[Judgment]] = {}
    for j in judgments:
        groups.setdefault(j.score, []).append(j)
    conf = tuple(sorted((len(g) for g in groups.values()), reverse=True))
    sizes = sorted(
        ((len(g), score) for score, g in groups.items() if score != UNPARSEABLE), reverse=True
    )
    if not sizes or sizes[0][0] < min_agree:
        return Vote(None, None, (), conf, NO_AGREEMENT)
    if len(sizes) > 1 and sizes[1][0] == sizes[0][0]:
        return Vote(None, None, (), conf, TIE)
    consensus = sizes[0][1]
    rank = {name: i for i, name in enumerate(priority)}
    position = {id(j): i for i, j in enumerate(judgments)}

    def precedence(j: Judgment) -> tuple[int, int]:
        return rank.get(j.judge, len(rank)), position[id(j)]

    agreeing = sorted(groups[consensus], key=precedence)
    dissenters = sorted(
        (j for j in judgments if j.score != consensus),
        key=lambda j: (
            j.score != UNPARSEABLE,
            -abs(j.score - consensus),
            *precedence(j),
        ),
    )
    return Vote(consensus, agreeing[0], (*dissenters, *agreeing[1:]), conf)


# ---------------------------------------------------------------------------------------------
# Judges


@dataclass
class Judge:
    """A named judge: a reward model and how it decodes (one model sampled under several seeds
    is several judges sharing one loaded model).
    """

    name: str
    model: RewardModel
    sampling: Sampling | None = None


def judge_plan(
    models: Sequence[str], samples: int = 1, temperature: float = 0.0, seed: int = 0
) -> list[tuple[str, str, Sampling | None]]:
    """Return (judge name, model spec, sampling) per judge: each spec once when `samples` is 1
    (named by its spec), else `samples` seeded samples of it named `SPEC#s0`, `SPEC#s1`, ...
    """
    if not models:
        raise ValueError("name at least one --model")
    twice = sorted({m for m in models if list(models).count(m) > 1})
    if twice:
        raise ValueError(
            f"--model {twice[0]} is given twice: identical judges agree by construction; use "
            "--samples N --temperature T for several samples of one model"
        )
    if samples < 1:
        raise ValueError(f"--samples must be at least 1, got {samples}")
    if samples > 1 and temperature <= 0:
        raise ValueError(
            f"--samples {samples} with --temperature {temperature}: greedy samples are all the "
            "same judgment; pass --temperature > 0 (e.g. 0.8)"
        )
    plan: list[tuple[str, str, Sampling | None]] = []
    for spec in models:
        if samples == 1:
            sampling = Sampling(temperature, seed) if temperature > 0 else None
            plan.append((spec, spec, sampling))
            continue
        for i in range(samples):
            plan.append((f"{spec}#s{i}", spec, Sampling(temperature, seed + i)))
    if len(plan) < 2:
        raise ValueError(
            "voting needs at least two judges: name several --model, or sample one with "
            "--samples 3 --temperature 0.8"
        )
    return plan


def load_judges(
    plan: Sequence[tuple[str, str, Sampling | None]],
    load: Callable[[str], RewardModel],
) -> list[Judge]:
    """Return the judges of a plan, each model loaded once by `load(spec)`."""
    loaded: dict[str, RewardModel] = {}
    judges = []
    for name, spec, sampling in plan:
        if spec not in loaded:
            loaded[spec] = load(spec)
        judges.append(Judge(name, loaded[spec], sampling))
    return judges


def check_priority(priority: Sequence[str], names: Sequence[str]) -> None:
    """Raise ValueError if `priority` names a judge that is not among `names`."""
    unknown = [p for p in priority if p not in names]
    if unknown:
        raise ValueError(
            f"--judge-priority names {unknown[0]!r}, which is not a judge here; judges: "
            + ", ".join(names)
        )


def judge_unit(
    judges: Sequence[Judge], unit: VoteItem, locks: dict[int, threading.Semaphore] | None = None
) -> list[Judgment]:
    """Return every judge's judgment of the unit on its SHORT key context.

    `locks` (by id of the model) bound the calls in flight per model.
    """
    prompt = outputs.short_prompt(unit.context, unit.question, unit.tag)
    found = []
    for judge in judges:
        lock = (locks or {}).get(id(judge.model))
        if lock is not None:
            with lock:
                result = judge.model.judge_score(prompt, unit.response, judge.sampling)
        else:
            result = judge.model.judge_score(prompt, unit.response, judge.sampling)
        found.append(Judgment(judge.name, to_score(result.score), result.text))
    return found


def model_locks(judges: Sequence[Judge]) -> tuple[dict[int, threading.Semaphore], int]:
    """Return (a semaphore per model, the worker count): remote models take their
    max_concurrency calls at once; all in-process models share one lock (they hold the same
    CPU or GPU, and seeding a call touches torch's global RNG).
    """
    local = threading.Semaphore(1)
    locks: dict[int, threading.Semaphore] = {}
    workers = 1
    for judge in judges:
        model = judge.model
        if id(model) in locks:
            continue
        n = max(1, int(model.max_concurrency))
        locks[id(model)] = local if n == 1 else threading.Semaphore(n)
        workers = max(workers, n)
    return locks, workers


# ---------------------------------------------------------------------------------------------
# A vote run: resume, append, derive the outputs


class VoteMismatchError(ValueError):
    """The run folder holds judgments of other judges."""


@dataclass
class VoteSettings:
    """How votes are taken and written; none of it is part of a run's identity (the outputs
    are rebuilt from the judgments on every run, so a rerun may change any of these).
    """

    min_agree: int = 2
    priority: tuple[str, ...] = ()
    prompts_file: Path | None = None
    save_to_disk: bool = False


@dataclass
class VoteOutcome:
    """What a run did: units judged now and resumed, the votes, errors, and where it wrote."""

    judged: int
    resumed: int
    records: list[tuple[VoteItem, list[Judgment], Vote]]
    errors: list[str]
    stats: dict[str, Any]
    paths: dict[str, Path]
    seconds: float = 0.0
    calls: int = 0

    @property
    def kept(self) -> int:
        """Return how many units reached a consensus."""
        return sum(v.kept for _, _, v in self.records)


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


def _judge_names(unit: VoteItem) -> list[str]:
    return [j.judge for j in unit.judgments or []]


def run_vote(
    units: Sequence[VoteItem],
    judges: Sequence[Judge] | None,
    out: str | Path,
    settings: VoteSettings,
    *,
    on_start: Callable[[int, int], None] | None = None,
    on_unit: Callable[[VoteItem, Vote | None, str | None], None] | None = None,
) -> VoteOutcome:
    """Judge the units not yet in `out`/judgments.jsonl, vote, and write every output.

    Without `judges`, every unit must carry its judgments (`--from-judgments`). Units judged
    before (same judges) are resumed; each new unit's judgments and training rows are appended
    as soon as its judges are done. A unit whose judge call failed (a server error after its
    retries) is left out and reported, so the next run judges it again.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    judgments_path = folder / outputs.JUDGMENTS_FILE
    done = read_judgments_file(judgments_path)
    names = [j.name for j in judges] if judges is not None else None
    check_priority(
        settings.priority,
        names or list(dict.fromkeys(j.judge for u in [*done, *units] for j in u.judgments or [])),
    )
    if names is not None:
        for unit in done:
            if sorted(_judge_names(unit)) != sorted(names):
                raise VoteMismatchError(
                    f"{judgments_path} holds judgments by {', '.join(_judge_names(unit))} "
                    f"(unit {unit.key!r}); this run's judges are {', '.join(names)}: use another "
                    "--out, or the same --model/--samples as before"
                )
    done_keys = {u.key for u in done}
    pending = [u for u in units if u.key not in done_keys]
    if judges is None:
        missing = next((u for u in pending if u.judgments is None), None)
        if missing is not None:
            raise ItemError(
                missing.where, missing.line, "judgments", "missing, and no judge to judge the unit"
            )
    if on_start is not None:
        on_start(len(done) + len(pending), len(done))

    writer = outputs.TrainingWriter(folder, settings.prompts_file)
    records: list[tuple[VoteItem, list[Judgment], Vote]] = []

    def take(unit: VoteItem, found: list[Judgment]) -> Vote:
        result = vote(found, settings.min_agree, settings.priority)
        records.append((unit, found, result))
        writer.add(unit, found, result)
        return result

    for unit in done:
        take(unit, list(unit.judgments or []))
    errors: list[str] = []
    started = time.perf_counter()
    calls = 0
    with open(judgments_path, "a", encoding="utf-8") as log:

        def finish(unit: VoteItem, found: list[Judgment]) -> None:
            log.write(json.dumps(unit.record(found), ensure_ascii=False) + "\n")
            log.flush()
            result = take(unit, found)
            if on_unit is not None:
                on_unit(unit, result, None)

        def fail(unit: VoteItem, message: str) -> None:
            errors.append(f"{unit.source} ({unit.key}): {message}")
            if on_unit is not None:
                on_unit(unit, None, message)

        if judges is None:
            for unit in pending:
                finish(unit, list(unit.judgments or []))
        elif pending:
            # judgments that input rows carry are not this run's judges': judge every unit
            calls = _judge_all(judges, pending, finish, fail)
    seconds = time.perf_counter() - started
    writer.close()
    paths = writer.paths()
    paths["judgments"] = judgments_path
    paths["pairs"] = folder / outputs.PAIRS_FILE
    bench_counts = outputs.write_bench_rows(records, paths["pairs"])
    stats = agreement.agreement_stats(
        [(found, result) for _, found, result in records], names or _all_names(records)
    )
    stats["written"] = {
        "sft": writer.sft_rows,
        "preferences": writer.preference_rows,
        "no_rejects": writer.no_rejects,
        **bench_counts,
    }
    stats["errors"] = len(errors)
    paths["agreement"] = agreement.write_stats(stats, folder / outputs.AGREEMENT_FILE)
    if settings.save_to_disk:
        for name in ("sft", "preferences", "pairs"):
            paths[f"{name}_dataset"] = outputs.save_jsonl_to_disk(paths[name], folder / name)
    return VoteOutcome(
        judged=len(pending) - len(errors),
        resumed=len(done),
        records=records,
        errors=errors,
        stats=stats,
        paths=paths,
        seconds=seconds,
        calls=calls,
    )


def _all_names(records: Sequence[tuple[VoteItem, list[Judgment], Vote]]) -> list[str]:
    """Return every judge name in the records, in order of first appearance."""
    names: dict[str, None] = {}
    for _, found, _ in records:
        for j in found:
            names.setdefault(j.judge)
    return list(names)


def _judge_all(
    judges: Sequence[Judge],
    units: Sequence[VoteItem],
    finish: Callable[[VoteItem, list[Judgment]], None],
    fail: Callable[[VoteItem, str], None],
) -> int:
    """Judge units with as many in flight as the fastest model allows; return the calls made.

    Results are handed to `finish` (or `fail`) on this thread, so files have one writer.
    """
    locks, workers = model_locks(judges)
    queue: Iterator[VoteItem] = iter(units)
    calls = 0

    def one(unit: VoteItem) -> list[Judgment]:
        return judge_unit(judges, unit, locks)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        running: dict[Future[list[Judgment]], VoteItem] = {}
        for unit in (next(queue, None) for _ in range(workers)):
            if unit is not None:
                running[pool.submit(one, unit)] = unit
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                unit = running.pop(fut)
                try:
                    found = fut.result()
                except Exception as err:  # one failing unit must not end a long run
                    fail(unit, f"{type(err).__name__}: {err}")
                else:
                    calls += len(found)
                    finish(unit, found)
                nxt = next(queue, None)
                if nxt is not None:
                    running[pool.submit(one, nxt)] = nxt
    return calls

"""A vote run: judges score each unit on its short key context, the units are voted on, and every
output is written as units finish.

The run folder's judgments.jsonl is the source of truth: one line per unit, appended as soon as
its judges are done; a rerun skips the units it holds, and every other output is derived from it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrm.items import ItemError
from longrm.rm.base import RewardModel, Sampling
from longrm.synth import agreement, outputs
from longrm.synth.units import Judgment, VoteItem, read_judgments_file, to_score
from longrm.synth.vote import Vote, vote

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
        found.append(Judgment(judge.name, to_score(result.score), result.text, result.forced))
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

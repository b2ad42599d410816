"""Evaluation runner: display orders, per-record appends, resume, and the results of a run.

predictions.jsonl is the source of truth: one line per judged item-order, flushed as soon as it
is done; a rerun with the same arguments skips what is there, so a killed run loses at most the
records in flight and the resumed results equal an uninterrupted run's.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrm.evaluate.errors import RunMismatchError
from longrm.evaluate.intervals import IntervalSettings
from longrm.evaluate.metrics import compute_results, context_ablation, latest_records
from longrm.evaluate.predictions import Prediction, append_predictions, read_predictions
from longrm.evaluate.run_files import (
    PREDICTIONS,
    PREDICTIONS_ABLATED,
    RESULTS,
    RESULTS_SCHEMA,
    RUN,
    EvalSettings,
    ablated_path,
)
from longrm.items import Item
from longrm.rm.base import RewardModel, Verdict

__all__ = [
    "PREDICTIONS",
    "PREDICTIONS_ABLATED",
    "RESULTS",
    "EvalSettings",
    "RunMismatchError",
    "display_orders",
    "evaluate",
    "run_results",
]


def display_orders(item: Item, count: int, seed: int) -> list[list[int]]:
    """Return `count` distinct display orders of the item's candidates, seeded per item.

    order[s] is the candidate shown in slot s. With n candidates and count >= n!, every
    permutation is used (a pair judged in both orders); otherwise distinct random ones.
    """
    if count < 1:
        raise ValueError("--orders must be at least 1")
    n = item.n
    rng = random.Random(f"{seed}:{item.key}")
    if count >= math.factorial(n):
        return [list(p) for p in itertools.permutations(range(n))]
    chosen: list[list[int]] = []
    while len(chosen) < count:
        perm = list(range(n))
        rng.shuffle(perm)
        if perm not in chosen:
            chosen.append(perm)
    return chosen


def run_results(
    predictions: Sequence[Prediction],
    ablated: Mapping[str, list[Prediction]],
    ci: IntervalSettings | None = None,
) -> dict[str, Any]:
    """Return a run's metrics: `compute_results`, and the `context_ablation` block when any
    ablated records were judged.
    """
    results = compute_results(predictions, ci=ci)
    if ablated:
        results["context_ablation"] = context_ablation(predictions, dict(ablated), ci)
    return results


def _repair_torn_tail(path: Path) -> None:
    """Cut a last line left unfinished by a crash, so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return
    cut = data.rfind(b"\n") + 1
    with open(path, "r+b") as fh:
        fh.truncate(cut)


def _check_settings(out: Path, settings: EvalSettings) -> None:
    """Write run.json, or refuse when the folder holds records made under other settings."""
    run_file = out / RUN
    wanted = settings.identity()
    has_records = (out / PREDICTIONS).exists() and (out / PREDICTIONS).stat().st_size
    if run_file.exists() and has_records:
        found = json.loads(run_file.read_text(encoding="utf-8"))
        if found.get("scoring_version") != settings.scoring_version:
            made_by = found.get("longrm_version") or "a longrm before versioned runs"
            raise RunMismatchError(
                f"{out} holds predictions scored by {made_by} (scoring version "
                f"{found.get('scoring_version')}); this longrm {settings.longrm_version} scores "
                f"the same inputs differently (scoring version {settings.scoring_version}), "
                "so the records cannot mix: use another --out, or delete that folder to start "
                "over",
                setting="out",
            )
        diff = {k: (found.get(k), v) for k, v in wanted.items() if found.get(k) != v}
        if diff:
            changes = ", ".join(
                f"{k}: {a!r} -> {b!r}"
                + (" (the benchmark's content differs)" * (k == "bench_hash"))
                for k, (a, b) in diff.items()
            )
            raise RunMismatchError(
                f"{out} holds predictions made with other settings ({changes}); "
                "use another --out, or delete that folder to start over",
                setting="out",
            )
    run_file.write_text(settings.model_dump_json(indent=2), encoding="utf-8")


def _judge(rm: RewardModel, item: Item, index: int, order: list[int]) -> Prediction:
    """Return the prediction of one item in one display order; failures become error records."""
    start = time.perf_counter()
    try:
        verdict = rm.rank_item(
            item.prompt, [item.candidates[c] for c in order], pairwise=item.is_pairwise
        )
    except Exception as err:  # one bad item must not end a long run: record it and go on
        verdict = Verdict(ranking=None, error=f"{type(err).__name__}: {err}")
    return Prediction(
        key=item.key,
        task=item.task,
        subtask=item.subtask,
        tasktype=item.tasktype,
        subtype=item.subtype,
        length_bucket=item.length_bucket,
        n=item.n,
        order_index=index,
        order=order,
        ranking=verdict.ranking,
        scores=verdict.scores,
        text=verdict.text,
        truncated=verdict.truncated,
        error=verdict.error,
        prompt_tokens=verdict.prompt_tokens,
        seconds=round(time.perf_counter() - start, 4),
    )


@dataclass
class RunOutcome:
    """What a run produced: its records (old and new), results, and how many were resumed."""

    predictions: list[Prediction]
    results: dict[str, Any]
    resumed: int
    judged: int
    ablated: list[Prediction] = field(default_factory=list)  # the first ablation method's
    ablated_by_method: dict[str, list[Prediction]] = field(default_factory=dict)


Job = tuple[Item, int, list[int], Path]
OrderPlan = Callable[[Item], list[list[int]]]


def _pending(
    items: Sequence[Item], plan: OrderPlan, done: set[tuple[str, int]], path: Path
) -> Iterator[Job]:
    for item in items:
        for index, order in enumerate(plan(item)):
            if (item.key, index) not in done:
                yield item, index, order, path


def _current(path: Path, selected: set[str], orders: int) -> list[Prediction]:
    """Return the records of a predictions file for the selected items and orders."""
    return [p for p in read_predictions(path) if p.key in selected and p.order_index < orders]


def evaluate(
    rm: RewardModel,
    items: Sequence[Item],
    out: str | Path,
    settings: EvalSettings,
    on_start: Callable[[int, int], None] | None = None,
    on_record: Callable[[Prediction], None] | None = None,
    *,
    ablated_items: Sequence[Item] | Mapping[str, Sequence[Item]] | None = None,
    order_plan: OrderPlan | None = None,
    retry_errors: bool = True,
    ci: IntervalSettings | None = None,
) -> RunOutcome:
    """Judge every item in its display orders, appending to out/predictions.jsonl, and return
    the results over the selected items (also written to out/results.json).

    `ablated_items` (the same items with their context ablated; a sequence for the one method
    `settings.ablate_context` names, or {method: items}) are judged in the same orders into
    `ablated_path(out, i, method)`, and the results gain a `context_ablation` block.
    `ci` says how the intervals are drawn (default 95%, 1000 resamples, seed 0).
    `order_plan(item)` replaces the seeded display orders (the authors' protocol has its own).
    With `retry_errors`, records that ended in an error are judged again on resume.
    `on_start(total, already_done)` and `on_record(prediction)` let a caller show progress.
    """
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    _check_settings(folder, settings)
    plan: OrderPlan = order_plan or (
        lambda item: display_orders(item, settings.orders, settings.seed)
    )
    selected = {item.key for item in items}
    n_orders = max((len(plan(item)) for item in items), default=0)
    if ablated_items is None:
        ablations: dict[str, Sequence[Item]] = {}
    elif isinstance(ablated_items, Mapping):
        ablations = dict(ablated_items)
    else:
        ablations = {settings.ablate_context or "ablated": ablated_items}
    ablated_paths = {m: ablated_path(folder, i, m) for i, m in enumerate(ablations)}
    passes = [(folder / PREDICTIONS, items)]
    passes += [(ablated_paths[m], pass_items) for m, pass_items in ablations.items()]
    jobs: list[Job] = []
    resumed = 0
    for path, pass_items in passes:
        _repair_torn_tail(path)
        previous = _current(path, selected, n_orders)
        done = {(p.key, p.order_index) for p in latest_records(previous)}
        if retry_errors:
            done -= {(p.key, p.order_index) for p in latest_records(previous) if p.error}
        resumed += len(done)
        jobs += list(_pending(pass_items, plan, done, path))
    if on_start:
        on_start(len(jobs) + resumed, resumed)
    lock = threading.Lock()

    def record(pred: Prediction, path: Path) -> None:
        with lock:
            append_predictions(path, [pred])
        if on_record:
            on_record(pred)

    if rm.max_concurrency <= 1:
        for item, index, order, path in jobs:
            record(_judge(rm, item, index, order), path)
    else:
        _run_concurrently(rm, jobs, record)
    predictions = _current(folder / PREDICTIONS, selected, n_orders)
    by_method = {m: _current(path, selected, n_orders) for m, path in ablated_paths.items()}
    results = run_results(predictions, by_method, ci)
    results["schema_version"] = RESULTS_SCHEMA
    results["settings"] = settings.model_dump()
    results["model"] = rm.info()
    every_ablated = [p for recs in by_method.values() for p in recs]
    results["throughput"] = throughput(predictions + every_ablated)
    (folder / RESULTS).write_text(json.dumps(results, indent=2), encoding="utf-8")
    return RunOutcome(
        predictions,
        results,
        resumed=resumed,
        judged=len(jobs),
        ablated=next(iter(by_method.values()), []),
        ablated_by_method=by_method,
    )


def _run_concurrently(
    rm: RewardModel, jobs: list[Job], record: Callable[[Prediction, Path], None]
) -> None:
    """Keep at most rm.max_concurrency calls in flight; record each as it completes."""
    queue = iter(jobs)
    with ThreadPoolExecutor(max_workers=rm.max_concurrency) as pool:
        running: dict[Future[Prediction], Path] = {}

        def submit(job: Job) -> None:
            item, index, order, path = job
            running[pool.submit(_judge, rm, item, index, order)] = path

        for job in itertools.islice(queue, rm.max_concurrency):
            submit(job)
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in finished:
                record(fut.result(), running.pop(fut))
                nxt = next(queue, None)
                if nxt is not None:
                    submit(nxt)


def throughput(predictions: Sequence[Prediction]) -> dict[str, float]:
    """Return prompt tokens per second and seconds per record over the given records."""
    seconds = sum(p.seconds for p in predictions)
    tokens = sum(p.prompt_tokens for p in predictions)
    return {
        "records": len(predictions),
        "seconds": round(seconds, 3),
        "prompt_tokens": tokens,
        "prompt_tokens_per_second": round(tokens / seconds, 1) if seconds else 0.0,
        "seconds_per_record": round(seconds / len(predictions), 4) if predictions else 0.0,
    }

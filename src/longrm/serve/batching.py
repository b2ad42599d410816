"""The micro-batcher: one worker thread owns the model; requests wait in a bounded queue.

In-process models are not thread-safe, so only the worker touches them. Whatever is queued when
the worker comes free (up to `max_batch` requests, after waiting `batch_wait` seconds for
requests arriving together) is run as one batch, its units ordered by prompt, the prompt the
model ran last (and so has cached) first. Scoring units that share a prompt, from however many
requests, run as one `score_many` call when the model overrides it: an in-process scorer then
encodes the prompt once and runs all the responses as one padded batch. Other units run one call
each, back to back per prompt, so the prefix cache still encodes each prompt once.

The queue is bounded; a full queue refuses new requests instead of growing a backlog. A request
withdrawn while it waits (its client left or timed out) gives its place back at once; one
withdrawn while it runs stops before its next model call (its units leave a group not yet run).
A failing call fails the requests with units in it, and only those.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from longrm.items import Messages
from longrm.rm.base import RewardModel


class QueueFullError(RuntimeError):
    """The request queue is full: the client should retry later."""


@dataclass
class Unit:
    """One model call of a request; `key` groups calls that share a prompt.

    A scoring call also names its `prompt` (the one `key` stands for) and `response`, so that
    the batcher can score it together with the others of that prompt; `run` is then
    `model.score(prompt, response)`.
    """

    key: str
    run: Callable[[RewardModel], Any]
    prompt: Messages | None = None
    response: str | None = None

    @classmethod
    def for_score(cls, key: str, prompt: Messages, response: str) -> Unit:
        """Return the call `model.score(prompt, response)`, which the batcher may run inside a
        `score_many` call of its prompt."""
        return cls(key, lambda m: m.score(prompt, response), prompt, response)

    @property
    def scoring(self) -> bool:
        """Return whether the unit may run inside a `score_many` call of its prompt."""
        return self.prompt is not None and self.response is not None


@dataclass
class Job:
    """A request's units; its future gets their results, in order, or the first error."""

    units: Sequence[Unit]
    future: Future[list[Any]] = field(default_factory=Future)
    withdrawn: threading.Event = field(default_factory=threading.Event)


Call = tuple[Job, int, Unit]  # a unit and where its result goes


class Batcher:
    """Runs jobs on a worker thread, batching what is queued together.

    `on_batch(n_units)` is called per batch (for the batch-size metric), `on_free()` whenever a
    queue place comes free (from the worker thread or the withdrawing one). Models that can take
    several calls at once (`max_concurrency` > 1, remote servers) get a thread pool that size.
    """

    def __init__(
        self,
        model: RewardModel,
        queue_size: int = 64,
        max_batch: int = 16,
        batch_wait: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
        on_free: Callable[[], None] | None = None,
    ) -> None:
        if queue_size < 1 or max_batch < 1:
            raise ValueError("queue_size and max_batch must be at least 1")
        self.model = model
        self.queue_size = queue_size
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.on_batch = on_batch
        self.on_free = on_free
        self._queue: deque[Job] = deque()
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._busy = threading.Event()
        self._last_key: str | None = None  # the prompt of the last call run: in the cache
        workers = max(1, int(getattr(model, "max_concurrency", 1)))
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self._thread = threading.Thread(target=self._loop, name="longrm-model", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Return how many requests wait in the queue."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """Return whether the worker is running a batch."""
        return self._busy.is_set()

    def submit(self, units: Sequence[Unit]) -> Future[list[Any]]:
        """Queue a request's units; raise QueueFullError when the queue is full."""
        job = Job(units)
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if len(self._queue) >= self.queue_size:
                raise QueueFullError("the request queue is full")
            self._queue.append(job)
            self._cond.notify_all()
        return job.future

    def withdraw(self, future: Future[list[Any]]) -> None:
        """Withdraw the request of `future`: out of the queue (its place is free at once) and
        cancelled, or, when it already runs, stopped before its next model call.
        """
        freed = False
        with self._cond:
            for job in (*self._queue, *self._running):
                if job.future is future:
                    job.withdrawn.set()
                    if job in self._queue:
                        self._queue.remove(job)
                        job.future.cancel()
                        freed = True
                    break
        if freed:
            self._freed()

    def close(self) -> None:
        """Stop the worker after the batch in hand; queued requests are cancelled."""
        with self._cond:
            self._closed = True
            while self._queue:
                self._queue.popleft().future.cancel()
            self._cond.notify_all()
        self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def _freed(self) -> None:
        if self.on_free is not None:
            self.on_free()

    def _take_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            deadline = time.monotonic() + self.batch_wait
            while len(self._queue) < self.max_batch and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            batch = [self._queue.popleft() for _ in range(min(self.max_batch, len(self._queue)))]
            # A request whose client gave up (timed out, cancelled) is dropped before it runs.
            self._running = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if batch:
            self._freed()
        return self._running

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._busy.set()
            try:
                self._run(batch)
            finally:
                with self._cond:
                    self._running = []
                self._busy.clear()

    def _run(self, batch: list[Job]) -> None:
        calls = [(job, i, unit) for job in batch for i, unit in enumerate(job.units)]
        # stable: a request's own order is kept per prompt; the cached prompt goes first
        calls.sort(key=lambda c: (c[2].key != self._last_key, c[2].key))
        if self.on_batch is not None:
            self.on_batch(len(calls))
        results: dict[int, list[Any]] = {id(job): [None] * len(job.units) for job in batch}
        failed: dict[int, BaseException] = {}

        def live(group: list[Call]) -> list[Call]:
            """Return the calls still to run: a withdrawn request's calls drop out."""
            kept = []
            for job, i, unit in group:
                if id(job) in failed:
                    continue
                if job.withdrawn.is_set():  # its client left: the rest of its calls are skipped
                    failed.setdefault(id(job), RuntimeError("the request was withdrawn"))
                    continue
                kept.append((job, i, unit))
            return kept

        def call(group: list[Call]) -> None:
            group = live(group)
            if not group:
                return
            try:
                if len(group) == 1:
                    values = [group[0][2].run(self.model)]
                else:
                    prompt = group[0][2].prompt
                    assert prompt is not None
                    responses = [str(unit.response) for _, _, unit in group]
                    values = self.model.score_many(prompt, responses)
                    if len(values) != len(group):
                        raise RuntimeError(
                            f"score_many gave {len(values)} scores for {len(group)} responses"
                        )
            except Exception as err:  # the server outlives any one request's failure
                for job, _, _ in group:
                    failed.setdefault(id(job), err)
                return
            for (job, i, _), value in zip(group, values, strict=True):
                results[id(job)][i] = value

        groups = self._groups(calls)
        if self._pool is None:
            for group in groups:
                call(group)
        else:
            list(self._pool.map(call, groups))
        if groups:
            self._last_key = groups[-1][0][2].key
        for job in batch:
            if id(job) in failed:
                job.future.set_exception(failed[id(job)])
            else:
                job.future.set_result(results[id(job)])

    def _groups(self, calls: list[Call]) -> list[list[Call]]:
        """Return the batch's model calls in order: scoring units that share a prompt as one
        group (at its first unit's place) when the model overrides score_many, else one each.
        """
        if type(self.model).score_many is RewardModel.score_many:
            return [[c] for c in calls]
        groups: list[list[Call]] = []
        by_key: dict[str, list[Call]] = {}
        for c in calls:
            if not c[2].scoring:
                groups.append([c])
            elif c[2].key in by_key:
                by_key[c[2].key].append(c)
            else:
                by_key[c[2].key] = [c]
                groups.append(by_key[c[2].key])
        return groups

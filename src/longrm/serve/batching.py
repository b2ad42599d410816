"""The micro-batcher: one worker thread owns the model; requests wait in a bounded queue.

In-process models are not thread-safe, so only the worker touches them. Whatever is queued when
the worker comes free (up to `max_batch` requests, after waiting `batch_wait` seconds for
requests arriving together) is run as one batch, its units ordered by prompt: units sharing a
prompt then run back to back, and the prefix cache encodes that prompt once for all of them.
The queue is bounded; a full queue refuses new requests instead of growing a backlog.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from longrm.rm.base import RewardModel


class QueueFullError(RuntimeError):
    """The request queue is full: the client should retry later."""


@dataclass
class Unit:
    """One model call of a request; `key` groups calls that share a prompt."""

    key: str
    run: Callable[[RewardModel], Any]


@dataclass
class Job:
    """A request's units; its future gets their results, in order, or the first error."""

    units: Sequence[Unit]
    future: Future[list[Any]] = field(default_factory=Future)


class Batcher:
    """Runs jobs on a worker thread, batching what is queued together.

    `on_batch(n_units)` is called per batch (for the batch-size metric). Models that can take
    several calls at once (`max_concurrency` > 1, remote servers) get a thread pool that size.
    """

    def __init__(
        self,
        model: RewardModel,
        queue_size: int = 64,
        max_batch: int = 16,
        batch_wait: float = 0.005,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if queue_size < 1 or max_batch < 1:
            raise ValueError("queue_size and max_batch must be at least 1")
        self.model = model
        self.max_batch = max_batch
        self.batch_wait = batch_wait
        self.on_batch = on_batch
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=queue_size)
        self._busy = threading.Event()
        workers = max(1, int(getattr(model, "max_concurrency", 1)))
        self._pool = ThreadPoolExecutor(workers) if workers > 1 else None
        self._thread = threading.Thread(target=self._loop, name="longrm-model", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Return how many requests wait in the queue."""
        return self._queue.qsize()

    @property
    def busy(self) -> bool:
        """Return whether the worker is running a batch."""
        return self._busy.is_set()

    def submit(self, units: Sequence[Unit]) -> Future[list[Any]]:
        """Queue a request's units; raise QueueFullError when the queue is full."""
        job = Job(units)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise QueueFullError("the request queue is full") from None
        return job.future

    def close(self) -> None:
        """Stop the worker after the batch in hand; queued requests are cancelled."""
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                job.future.cancel()
        self._queue.put(None)
        self._thread.join(timeout=30)
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def _take_batch(self) -> list[Job] | None:
        first = self._queue.get()
        if first is None:
            return None
        batch = [first]
        deadline = time.monotonic() + self.batch_wait
        while len(batch) < self.max_batch:
            try:
                job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # stop after this batch
                break
            batch.append(job)
        return batch

    def _loop(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            self._busy.set()
            try:
                self._run(batch)
            finally:
                self._busy.clear()

    def _run(self, batch: list[Job]) -> None:
        # A request whose client gave up (timed out, cancelled) is dropped before it runs.
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        calls = [(job, i, unit) for job in live for i, unit in enumerate(job.units)]
        calls.sort(key=lambda c: c[2].key)  # stable: a request's own order is kept per prompt
        if self.on_batch is not None:
            self.on_batch(len(calls))
        results: dict[int, list[Any]] = {id(job): [None] * len(job.units) for job in live}
        failed: dict[int, BaseException] = {}

        def call(item: tuple[Job, int, Unit]) -> None:
            job, i, unit = item
            if id(job) in failed:
                return
            try:
                results[id(job)][i] = unit.run(self.model)
            except Exception as err:  # the server outlives any one request's failure
                failed.setdefault(id(job), err)

        if self._pool is None:
            for item in calls:
                call(item)
        else:
            list(self._pool.map(call, calls))
        for job in live:
            if id(job) in failed:
                job.future.set_exception(failed[id(job)])
            else:
                job.future.set_result(results[id(job)])

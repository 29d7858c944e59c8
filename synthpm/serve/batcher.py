"""The micro-batcher: concurrent requests share the decoder's forward passes.

Each request submits its prompts as one job and waits on a future. One worker thread owns
the decoder: it takes the oldest job, then keeps collecting jobs for up to `max_wait_ms` or
until `max_batch` prompts are waiting, and decodes them together, one decoder call per mode
(a signal-only and a full answer stop at different keys). The queue is bounded: past
`max_queue` waiting jobs a request is refused at once (`Busy`, a 503) rather than queued
into a timeout. Ours, not a library's: the batching unit is the decoder's prompt list, and
the wait is a few milliseconds inside one process, which general task queues do not do.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field

from synthpm.signals import Signal

Decode = Callable[[list[list[int]], str], list[Signal]]


class Busy(Exception):
    """The batcher's queue is full."""


@dataclass
class _Job:
    prompts: list[list[int]]
    mode: str
    future: Future = field(default_factory=Future)


@dataclass
class BatchStats:
    batches: int = 0
    prompts: int = 0
    largest: int = 0
    seconds: float = 0.0  # spent decoding


class MicroBatcher:
    def __init__(
        self, decode: Decode, max_batch: int = 64, max_wait_ms: float = 4.0, max_queue: int = 256
    ):
        self.decode, self.max_batch, self.max_wait = decode, max_batch, max_wait_ms / 1e3
        self.jobs: queue.Queue[_Job | None] = queue.Queue(max_queue)
        self.stats = BatchStats()
        self._worker = threading.Thread(target=self._run, name="synthpm-batcher", daemon=True)
        self._worker.start()

    def submit(self, prompts: Sequence[list[int]], mode: str) -> Future:
        """A future of the prompts' signals, in order."""
        job = _Job(list(prompts), mode)
        if not job.prompts:
            job.future.set_result([])
            return job.future
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise Busy(f"the decoder has {self.jobs.maxsize} requests waiting: retry") from None
        return job.future

    def __call__(self, prompts: Sequence[list[int]], mode: str) -> list[Signal]:
        return self.submit(prompts, mode).result()

    def close(self) -> None:
        self.jobs.put(None)
        self._worker.join(timeout=30)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs, size = [first], len(first.prompts)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self.jobs.get(timeout=left) if left > 0 else self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
            size += len(job.prompts)
        return jobs, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self.jobs.get()
            if first is None:
                return
            jobs, stop = self._gather(first)
            for mode in {j.mode for j in jobs}:
                mine = [j for j in jobs if j.mode == mode]
                prompts = [p for j in mine for p in j.prompts]
                started = time.perf_counter()
                try:
                    signals = self.decode(prompts, mode)
                except Exception as exc:  # every waiting request gets the error, none hangs
                    for job in mine:
                        job.future.set_exception(exc)
                    continue
                self.stats.seconds += time.perf_counter() - started
                self.stats.batches += 1
                self.stats.prompts += len(prompts)
                self.stats.largest = max(self.stats.largest, len(prompts))
                at = 0
                for job in mine:
                    job.future.set_result(signals[at : at + len(job.prompts)])
                    at += len(job.prompts)

"""The completion buffer and its flusher: finished jobs are written to the
queue in one statement every few milliseconds, not one round trip each.

`corral.worker.jobs.Jobs` adds each job a handler finished (with its result);
the flusher task (`Flusher.run`, started by `corral.worker.runtime`) writes
what gathered through `QueueSession.complete_many` and tells the jobs table
which slots are free again. The drain waits on `flushed` for the last batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from corral.queue import ClaimedJob, ConnectionLost, DataRefused, FailureReason
from corral.worker._queue import RemovedError
from corral.worker.metrics import WorkerMetrics
from corral.worker.results import clean_text

log = logging.getLogger("corral.worker")

__all__ = ["CompletionBuffer", "Flusher"]

_RETRY_AFTER_S = 0.5  # after a failed write, before the completions are retried


class CompletionBuffer:
    """Jobs finished but not yet written, and their results (job id -> JSON
    data; jobs that returned None have no entry)."""

    __slots__ = ("batch", "done", "flush_now", "flushed", "results", "writing")

    def __init__(self, batch: int) -> None:
        self.batch = batch  # a full batch is written without waiting
        self.done: list[ClaimedJob] = []
        self.results: dict[int, Any] = {}
        self.flush_now = asyncio.Event()
        self.flushed = asyncio.Event()  # set after each write, written or not
        self.writing = 0  # jobs taken by the flusher, neither written nor put back yet

    def __len__(self) -> int:
        return len(self.done)

    def add(self, job: ClaimedJob, result: Any) -> None:
        """A handler finished `job`; `result` is JSON data or None."""
        done = self.done
        done.append(job)
        if result is not None:
            self.results[job.id] = result
        pending = len(done)
        # The first job wakes the flusher (which then waits a few ms for more);
        # a full batch is written at once.
        if pending == 1 or pending >= self.batch:
            self.flush_now.set()

    def take(self) -> tuple[list[ClaimedJob], dict[int, Any]]:
        """Everything gathered so far; the buffer starts over empty."""
        done, self.done = self.done, []
        results: dict[int, Any] = {}
        if self.results:
            results, self.results = self.results, {}
        return done, results

    def put_back(self, done: list[ClaimedJob], results: dict[int, Any]) -> None:
        """A write failed: these go first in the next one (and count as
        waiting, no longer as being written)."""
        self.done[:0] = done
        self.results.update(results)
        self.writing = 0

    async def written_out(self, timeout_s: float = 5.0) -> None:
        """Until the flusher has written everything (the drain's last step),
        the batch it is writing now included; each wait for a batch gives up
        after `timeout_s`."""
        while self.done or self.writing:
            self.flush_now.set()
            self.flushed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self.flushed.wait()


class _Completer(Protocol):
    async def complete_many(
        self, jobs: list[ClaimedJob], results: dict[int, Any] | None = None
    ) -> list[int]: ...
    async def fail(
        self, job: ClaimedJob, reason: FailureReason, error: str, *, retry: bool = True
    ) -> None: ...
    def backoff(self) -> float: ...


@dataclass(slots=True)
class Flusher:
    """Writes the buffer: after `interval_s` of gathering (0: at once), or at
    once when a batch is full. `written(jobs)` frees the jobs' slots."""

    buffer: CompletionBuffer
    session: _Completer
    metrics: WorkerMetrics
    written: Callable[[list[ClaimedJob]], None]
    interval_s: float
    failing_since: float = 0.0  # monotonic time of the first failed write in a row; 0: none

    def stalled_for(self) -> float:
        """Seconds since writes began failing (0 while they succeed): the
        worker's /healthz fails past a limit, so Kubernetes restarts it."""
        return time.monotonic() - self.failing_since if self.failing_since else 0.0

    async def run(self) -> None:
        buffer = self.buffer
        interval = self.interval_s
        while True:
            await buffer.flush_now.wait()
            buffer.flush_now.clear()
            if interval and len(buffer) < buffer.batch:
                await asyncio.sleep(interval)  # gather a few more results
            await self.flush_once()

    async def flush_once(self) -> None:
        buffer = self.buffer
        done, results = buffer.take()
        if not done:
            return
        buffer.writing = len(done)
        try:
            await self._write(done, results)
        finally:
            buffer.writing = 0
            buffer.flushed.set()

    async def _write(self, done: list[ClaimedJob], results: dict[int, Any]) -> None:
        try:
            lost = await self.session.complete_many(done, results)
        except RemovedError:
            raise  # removed from the fleet: the worker exits
        except ConnectionLost as exc:
            await self._keep_for_later(done, results, exc)
            return
        except DataRefused as exc:
            # One value the database cannot store must not hold the others
            # back: write them one by one, so only that one is dealt with.
            log.warning("%d completion(s) refused (%s); writing them one by one", len(done), exc)
            await self._one_by_one(done, results)
            return
        except Exception as exc:
            await self._retry_later(done, results, exc)
            return
        self._written(done, lost)

    async def _retry_later(
        self, done: list[ClaimedJob], results: dict[int, Any], exc: Exception
    ) -> None:
        """Put `done` back in front of the buffer and wake the flusher again
        after a pause: a lost connection's back-off, or _RETRY_AFTER_S."""
        if isinstance(exc, ConnectionLost):
            await self._keep_for_later(done, results, exc)
            return
        log.error("could not record %d completion(s), retrying: %s", len(done), exc)
        self.failing_since = self.failing_since or time.monotonic()
        self.buffer.put_back(done, results)
        await asyncio.sleep(_RETRY_AFTER_S)
        self.buffer.flush_now.set()

    async def _keep_for_later(
        self, done: list[ClaimedJob], results: dict[int, Any], exc: Exception
    ) -> None:
        """The database is away (a restart, a failover): keep the results and
        write them once it is back. The heartbeat keeps the leases meanwhile,
        or exits the worker once they lapsed."""
        log.warning(
            "could not record %d completion(s), the database connection is lost; "
            "keeping them to retry: %s",
            len(done),
            exc,
        )
        self.failing_since = self.failing_since or time.monotonic()
        self.buffer.put_back(done, results)
        await asyncio.sleep(self.session.backoff())
        self.buffer.flush_now.set()

    async def _one_by_one(self, done: list[ClaimedJob], results: dict[int, Any]) -> None:
        """Write `done` a job at a time. Should a write break on the way (the
        connection lost, a timeout), the jobs written so far are done and
        only the rest go back to the buffer: put back, a written job would
        be refused at its next write and counted as a lost lease."""
        lost: list[int] = []
        for i, job in enumerate(done):
            mine = {job.id: results[job.id]} if job.id in results else {}
            try:
                lost += await self.session.complete_many([job], mine)
            except DataRefused as exc:
                try:
                    stored = await self._fail_for_result(job, mine, exc)
                except RemovedError:
                    raise
                except Exception as fail_exc:
                    await self._written_then_retry(done, i, lost, results, fail_exc)
                    return
                if not stored:
                    # Not even the bare completion went in: leave it to the
                    # lease (the job runs again elsewhere) rather than block.
                    log.error("job %s: completion refused (%s); its lease will lapse", job.id, exc)
                    self.metrics.count(job.queue, "unstorable")
            except RemovedError:
                raise  # removed from the fleet: the worker exits
            except Exception as exc:
                await self._written_then_retry(done, i, lost, results, exc)
                return
        self._written(done, lost)

    async def _written_then_retry(
        self,
        done: list[ClaimedJob],
        i: int,
        lost: list[int],
        results: dict[int, Any],
        exc: Exception,
    ) -> None:
        if i:
            self._written(done[:i], lost)
        rest = done[i:]
        await self._retry_later(rest, {j.id: results[j.id] for j in rest if j.id in results}, exc)

    async def _fail_for_result(
        self, job: ClaimedJob, results: dict[int, Any], exc: Exception
    ) -> bool:
        """The database refused this job's completion, its result the likely
        cause: fail the job as `result`, not retried (the same result would
        be refused again), with the database's reason as its error."""
        if job.id not in results:
            return False
        error = clean_text(f"the database refused the handler's result: {exc}")[:2000]
        log.error("job %s (%s): its result was refused (%s); failing it", job.id, job.kind, exc)
        try:
            await self.session.fail(job, FailureReason.RESULT, error, retry=False)
        except DataRefused:
            return False
        self.metrics.count(job.queue, "result_refused")
        return True

    def _written(self, done: list[ClaimedJob], lost: list[int]) -> None:
        buffer = self.buffer
        self.failing_since = 0.0
        self.metrics.flush_batch.observe(len(done))
        if lost:
            # Reaped or re-claimed while we ran it (a lease lapsed): the
            # completion was refused; the job runs again elsewhere.
            log.warning(
                "%d completion(s) refused, their leases were lost: %s", len(lost), lost[:10]
            )
            for job in done:
                if job.id in lost:
                    self.metrics.count(job.queue, "lease_lost")
        self.written(done)
        if buffer.done:
            buffer.flush_now.set()

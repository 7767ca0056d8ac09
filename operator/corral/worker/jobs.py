"""Running claimed jobs: the in-flight table, the handler call, timeouts and
the outcome of each job.

The dispatcher (`corral.worker.claims`) calls `Jobs.start` for every job it
claims; a finished job goes into the completion buffer
(`corral.worker.completions`), a failed one through the retry path with its
`FailureReason`. `corral.worker.runtime` wires this up and, when draining,
hands back what still runs (`Jobs.hand_back`).

The one conversion between the queue's record and the handler's view of a
job is `handler_job`: a handler gets `corral.Job` (the public, stable type:
id, kind, queue, payload, attempt...), never the lease token of the
`ClaimedJob` the queue handed out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from corral.frozen import builder
from corral.queue import ClaimedJob, ConnectionLost, FailureReason
from corral.queue.records import Unloadable
from corral.worker._queue import RemovedError
from corral.worker.claimsize import smoothed
from corral.worker.completions import CompletionBuffer
from corral.worker.connections import Undecodable
from corral.worker.handlers import Handler, HandlerRegistry, Job, PayloadError
from corral.worker.metrics import WorkerMetrics
from corral.worker.results import clean_text, describe, result_value

log = logging.getLogger("corral.worker")

__all__ = ["Jobs", "Running", "handler_job"]

_WATCHDOG_PERIOD_S = 0.1
# On a hand-back, how long cancelled handlers (and failures being recorded)
# are waited for before their jobs are released all the same.
HAND_BACK_WAIT_S = 2.0

# Failures another attempt cannot fix: the job goes straight to dead with its
# error (the payload will not decode better, the kind will not appear).
NOT_RETRYABLE = frozenset({FailureReason.PAYLOAD, FailureReason.UNKNOWN_KIND, FailureReason.RESULT})


@dataclass(slots=True, frozen=True)
class Stuck:
    """A sync handler that outlived its job's timeout: Python cannot stop a
    thread, so it keeps the thread, and the job's slot, until it returns."""

    kind: str
    since: float  # monotonic seconds


@dataclass(slots=True)
class Running:
    job: ClaimedJob
    task: asyncio.Task[None] | None  # None while it never waited (see Jobs.start)
    deadline: float  # monotonic seconds
    started: float
    timed_out: bool = False
    released: bool = False  # handed back: its cancellation is not an attempt


class _Failures(Protocol):
    async def fail(
        self, job: ClaimedJob, reason: FailureReason, error: str, *, retry: bool
    ) -> None: ...
    async def release(self, jobs: list[ClaimedJob]) -> None: ...
    def leases_lapsed(self) -> bool: ...
    def backoff(self) -> float: ...


_job = builder(Job)  # one per job run: built without the frozen __init__'s cost


def handler_job(claimed: ClaimedJob) -> Job[Any]:
    """The job as its handler sees it (see the module docstring)."""
    return _job(
        claimed.id,
        claimed.kind,
        claimed.queue,
        claimed.payload,
        claimed.attempt,
        claimed.max_attempts,
        claimed.region,
        claimed.enqueued_at,
        {},  # meta
        claimed.scheduled_for,
    )


class _Unknown(Exception):
    pass


@dataclass(eq=False)
class Jobs:
    """The jobs this worker holds, by id, from claim until their outcome is
    written; `slot_freed` is set whenever one leaves."""

    registry: HandlerRegistry
    metrics: WorkerMetrics
    buffer: CompletionBuffer
    session: _Failures
    job_timeout_s: float
    running: dict[int, Running] = field(default_factory=dict)
    slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    threads: ThreadPoolExecutor | None = None  # sync handlers run here
    stuck: dict[int, Stuck] = field(default_factory=dict)  # job id -> its lost slot
    on_stuck: Callable[[int], None] | None = None  # told how many are stuck now
    # How long recent jobs ran (moving average; None until one finished): the
    # dispatcher sizes claims by it (corral.worker.claimsize).
    run_s: float | None = None
    # Handlers that outlived their hand-back (they ignore cancellation): the
    # worker exits without waiting for them (corral.worker.runtime).
    lingering: set[asyncio.Future[None]] = field(default_factory=set)
    _io_tasks: set[asyncio.Future[Any]] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self.running)

    @property
    def busy(self) -> int:
        """Slots taken: jobs held, and threads of stuck sync handlers."""
        return len(self.running) + len(self.stuck)

    # -- start and run ---------------------------------------------------------

    def start(self, claimed: ClaimedJob, wall: float) -> None:
        now = time.monotonic()
        handler = self.registry.get(claimed.kind)
        # Latency counts from when the job became runnable: enqueue, or run_at
        # for a delayed job or a retry.
        ready = claimed.run_at if claimed.run_at > claimed.enqueued_at else claimed.enqueued_at
        self.metrics.observe_latency(claimed.queue, max(0.0, wall - ready.timestamp()))
        timeout = self.job_timeout_s
        if handler is not None and handler.timeout_s is not None:
            timeout = handler.timeout_s
        running = Running(claimed, None, now + timeout, now)
        self.running[claimed.id] = running
        coro = self._run(running, handler)
        if handler is not None and handler.is_async and not handler.eager:
            # The handler's own code runs in a Task of its own from its first
            # line: an asyncio.timeout or TaskGroup it enters binds to the
            # running task (run here, its deadline would cancel the claim
            # loop), and a context variable it sets stays its own.
            running.task = asyncio.ensure_future(coro)
            return
        # Otherwise run it eagerly up to its first real suspension: only
        # corral's code runs here (a sync handler's runs in a thread), and a
        # job that never waits (no-op) costs no Task at all.
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        running.task = asyncio.ensure_future(resume(coro, pending))

    async def _run(self, running: Running, handler: Handler | None) -> None:
        claimed = running.job
        try:
            try:
                if handler is None:
                    raise _Unknown(claimed.kind)
                if isinstance(claimed.payload, Unloadable):
                    raise PayloadError(_unloadable(claimed.payload))
                job = handler_job(claimed)
                if handler.payload_model is not None:
                    job = handler.prepare(job)
                if handler.is_async:
                    result = await handler.fn(job)
                else:
                    result = await self._in_thread(running, handler, job)
            except asyncio.CancelledError:
                if running.released:
                    return  # handed back by shutdown; not an attempt
                if running.timed_out:
                    self._fail(
                        running,
                        FailureReason.TIMEOUT,
                        f"timed out after {running.deadline - running.started:g}s",
                    )
                    return
                raise
            except _Unknown:
                known = ", ".join(self.registry.names())
                self._fail(
                    running,
                    FailureReason.UNKNOWN_KIND,
                    f"no handler registered for kind {claimed.kind!r} (this worker knows: {known})",
                )
                return
            except PayloadError as exc:
                self._fail(running, FailureReason.PAYLOAD, str(exc))
                return
            except Exception as exc:
                if running.released:
                    return  # its cancellation, wrapped: handed back all the same
                self._fail(running, FailureReason.EXCEPTION, describe(exc))
                return
            if running.released:
                # It swallowed its cancellation: handed back (its completion
                # would be refused by the released lease anyway).
                return
            self._complete(running, result)
        except BaseException:
            # No outcome could be recorded: free the slot at least (the
            # heartbeat stops renewing its lease, and the reaper retries it).
            self.forget(running)
            raise

    async def _in_thread(self, running: Running, handler: Handler, job: Job[Any]) -> Any:
        if self.threads is None:
            self.threads = ThreadPoolExecutor(thread_name_prefix="corral-job")
        thread = self.threads.submit(handler.fn, job)
        try:
            return await asyncio.wrap_future(thread)
        except asyncio.CancelledError:
            if running.timed_out and not thread.done():
                self._lose_slot(running, thread)
            raise

    def _lose_slot(self, running: Running, thread: Future[Any]) -> None:
        claimed = running.job
        self.stuck[claimed.id] = Stuck(claimed.kind, time.monotonic())
        loop = asyncio.get_running_loop()

        def returned(_: Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
                loop.call_soon_threadsafe(self._slot_back, claimed.id)

        thread.add_done_callback(returned)
        log.error(
            "job %s (%s): its sync handler still runs in its thread past the %gs timeout; "
            "Python cannot stop it, so its slot stays taken until it returns (%d stuck)",
            claimed.id,
            claimed.kind,
            running.deadline - running.started,
            len(self.stuck),
        )
        if self.on_stuck is not None:
            self.on_stuck(len(self.stuck))

    def _slot_back(self, job_id: int) -> None:
        stuck = self.stuck.pop(job_id, None)
        if stuck is not None:
            log.warning(
                "the stuck %s handler of job %s returned after %.0fs; its slot is free again",
                stuck.kind,
                job_id,
                time.monotonic() - stuck.since,
            )
            self.slot_freed.set()

    # -- outcomes ----------------------------------------------------------------

    def _complete(self, running: Running, result: Any) -> None:
        claimed = running.job
        try:
            value = None if result is None else result_value(claimed, result)
        except Exception as exc:  # result_value keeps what it can: a last resort
            self._fail(running, FailureReason.RESULT, f"its result cannot be kept: {describe(exc)}")
            return
        self.buffer.add(claimed, value)
        queue = claimed.queue
        m = self.metrics
        m.count(queue, "completed")
        ran = time.monotonic() - running.started
        m.observe_duration(queue, ran)
        self.run_s = smoothed(self.run_s, ran)

    def _fail(self, running: Running, reason: FailureReason, error: str) -> None:
        claimed = running.job
        error = clean_text(error[:2000])
        self.metrics.count(claimed.queue, reason.value)
        ran = time.monotonic() - running.started
        self.metrics.observe_duration(claimed.queue, ran)
        self.run_s = smoothed(self.run_s, ran)
        log.warning(
            "job %s (%s, attempt %d) failed: %s", claimed.id, claimed.kind, claimed.attempt, error
        )
        task = asyncio.ensure_future(self._record_failure(running, reason, error))
        self._io_tasks.add(task)
        task.add_done_callback(self._io_tasks.discard)

    async def _record_failure(self, running: Running, reason: FailureReason, error: str) -> None:
        try:
            while True:
                try:
                    await self.session.fail(
                        running.job, reason, error, retry=reason not in NOT_RETRYABLE
                    )
                    break
                except ConnectionLost:
                    # The database is away: try again once it is back, for as
                    # long as the lease can last (the heartbeat exits after).
                    if self.session.leases_lapsed():
                        raise
                    await asyncio.sleep(self.session.backoff())
        except RemovedError:
            raise
        except Exception as exc:
            # The lease will lapse and the reaper will retry the job.
            log.error("could not record failure of job %s: %s", running.job.id, exc)
        finally:
            self.forget(running)

    def forget(self, running: Running) -> None:
        # By identity, here and in `written`: a job this worker claimed again
        # (its lease lapsed while it ran here) has an entry of its own by now.
        if self.running.get(running.job.id) is running:
            del self.running[running.job.id]
            self.slot_freed.set()

    def written(self, done: list[ClaimedJob]) -> None:
        """The flusher wrote these completions: their slots are free."""
        running = self.running
        for job in done:
            held = running.get(job.id)
            if held is not None and held.job is job:
                del running[job.id]
        self.slot_freed.set()

    # -- timeouts, removal and hand-back -------------------------------------------

    async def watchdog(self) -> None:
        """Cancel jobs that overran their timeout (their failure is `timeout`);
        forget those whose task ended in an error before any outcome was
        recorded (a backstop: their slots come back by their timeout)."""
        while True:
            await asyncio.sleep(_WATCHDOG_PERIOD_S)
            now = time.monotonic()
            for r in list(self.running.values()):
                task = r.task
                if r.deadline > now or task is None or r.timed_out:
                    continue
                if not task.done():
                    r.timed_out = True
                    task.cancel()
                elif not task.cancelled() and task.exception() is not None:
                    self._no_outcome(r, task.exception())

    def _no_outcome(self, running: Running, exc: BaseException | None) -> None:
        log.error(
            "job %s (%s) ended without an outcome (%s); its slot is freed and its lease "
            "left to lapse (the reaper retries it)",
            running.job.id,
            running.job.kind,
            describe(exc) if exc is not None else "no error",
        )
        self.forget(running)

    def abandon(self) -> None:
        """The worker was removed: stop every job without writing anything
        (the credential is dead; the leases lapse and the jobs run again)."""
        for r in self.running.values():
            if r.task is not None:
                r.released = True
                r.task.cancel()

    async def hand_back(self, wait_s: float = HAND_BACK_WAIT_S) -> None:
        """Cancel jobs still running and release them (not a failed attempt),
        then let failures being recorded land. Each wait lasts `wait_s` at
        most: a handler that ignores its cancellation does not hold back the
        others' hand-back. Its job is released with them (a late completion
        is refused by the released lease) and its task kept in `lingering`."""
        stuck = [r for r in self.running.values() if r.task is not None and not r.task.done()]
        for r in stuck:
            r.released = True
            r.task.cancel()  # type: ignore[union-attr]
        if stuck:
            _, pending = await asyncio.wait([r.task for r in stuck if r.task], timeout=wait_s)
            if pending:
                log.warning(
                    "%d handler(s) still run %gs after their cancellation; handing their "
                    "jobs back all the same",
                    len(pending),
                    wait_s,
                )
                self.lingering.update(pending)
            try:
                await self.session.release([r.job for r in stuck])
                log.info("handed %d unfinished job(s) back to the queue", len(stuck))
            except Exception as exc:
                log.error(
                    "could not hand back %d job(s); their leases will lapse: %s", len(stuck), exc
                )
            for r in stuck:
                self.running.pop(r.job.id, None)
        if self._io_tasks:
            # Failures being recorded (during an outage, until their leases lapse).
            await asyncio.wait(list(self._io_tasks), timeout=wait_s)


def _unloadable(payload: Unloadable) -> str:
    if isinstance(payload, Undecodable):
        return f"the payload cannot be decoded ({payload.error}): enqueue it nested less deeply"
    return payload.error  # a timestamp of its row (corral.queue._params.claimed_leniently)


@types.coroutine
def _continue(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """Drive a coroutine that already ran to its first suspension (which
    yielded `pending`) to its end: `yield from`, resumed midway. See
    `Jobs.start`."""
    while True:
        try:
            sent = yield pending
        except BaseException as exc:  # CancelledError from Task.cancel() included
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coro.send(sent)
            except StopIteration as stop:
                return stop.value


async def resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Any:
    return await _continue(coro, pending)

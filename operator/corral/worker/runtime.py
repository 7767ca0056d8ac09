"""The worker runtime behind `corral worker`: claim, run, complete, heartbeat.

`corral.worker.cli` builds a `Worker` from `WorkerSettings` and runs it; tests
and the benchmark run the same CLI in subprocesses. All database work goes
through `corral.queue` (the only module that talks to PostgreSQL); this module
decides *when* to call it.

One asyncio loop per process, with these tasks:

- the dispatcher claims as many jobs as there are free slots (up to the batch
  size) in one statement, and starts each job;
- finished jobs go into a completion buffer that the flusher writes in one
  statement every few milliseconds (or as soon as a batch is full);
- the listener wakes the dispatcher on NOTIFY; without one it still polls
  every `poll_interval_s`, so a lost notification only delays a job;
- the heartbeat extends the leases of held jobs, reports in-flight count and
  state, and learns of drain and removal;
- the reaper sends lapsed leases of dead workers back through the retry path
  (one reaper at a time across the fleet: the queue takes an advisory lock);
- retention deletes finished jobs older than `--retention` in small batches
  (one worker at a time across the fleet, under its own advisory lock);
- the watchdog cancels jobs that overrun their timeout.

A handler's return value is the job's result: kept (as JSON) with the
finished job and shown by `corral jobs get`.

A drain, whoever starts it, shows in the registry: SIGTERM, POST /drain and
`corral worker prestop` move this worker's row to `draining` (by `self`), and
once nothing is held to `drained` with 0 in flight, which is where the row
stays when the process exits after SIGTERM.

Failures of any kind (exception, timeout, bad payload, unknown kind) are
recorded through the retry path and never stop the worker.

Delivery is at-least-once: a job whose worker dies runs again after its lease
lapses; handlers get `job.id`/`job.attempt` to stay idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
import traceback
import types
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_jsonable_python

from corral.queue import ConnectionLost
from corral.queue.dsn import scrub_password
from corral.worker import enrollment
from corral.worker._queue import ClaimedJob, QueueSession, RemovedError, open_session
from corral.worker.config import WorkerSettings
from corral.worker.endpoint import Endpoint
from corral.worker.executors import builtin_registry
from corral.worker.handlers import Handler, HandlerRegistry, Job, PayloadError
from corral.worker.handlers import registry as decorated
from corral.worker.metrics import WorkerMetrics

log = logging.getLogger("corral.worker")

__all__ = ["EXIT_REMOVED", "Worker", "build_registry"]

EXIT_REMOVED = 3  # the registry says this worker was removed
EXIT_FATAL = 1

_WATCHDOG_PERIOD_S = 0.1
_REAPER_PERIOD_S = 5.0
_RETENTION_FIRST_S = 5.0  # first retention pass this long after start
_RETENTION_PERIOD_S = 60.0  # then one pass a minute (per worker; one runs at a time)
_RETENTION_BATCH = 1000  # rows per DELETE: short statements, short locks


def build_registry(settings: WorkerSettings) -> HandlerRegistry:
    """Built-ins, then entry points, then `--handlers` modules (whose
    `@corral.handler` decorators fill the module-level registry)."""
    reg = builtin_registry()
    reg.load_entry_points()
    for path in settings.handlers:
        reg.load_module(path)
    for h in decorated:
        if h.name not in reg or reg.get(h.name) is not h:
            reg.register(h.name, h.fn, payload=h.payload_model, timeout_s=h.timeout_s, replace=True)
    return reg


@dataclass(slots=True)
class _Running:
    job: ClaimedJob
    task: asyncio.Task[None] | None
    deadline: float  # monotonic seconds
    started: float
    timed_out: bool = False
    released: bool = False


class Worker:
    """One worker process. `run()` returns the process exit code."""

    def __init__(self, settings: WorkerSettings, registry: HandlerRegistry | None = None) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else build_registry(settings)
        self.state = "starting"  # starting -> active -> draining -> drained | stopped
        self.worker_id: str | None = None
        self.exit_code = 0
        self.exit_message = ""
        self.metrics = WorkerMetrics(self._gauges)
        self._running: dict[Any, _Running] = {}
        self._done: list[ClaimedJob] = []  # finished, completion not yet written
        self._results: dict[int, Any] = {}  # job id -> result, for jobs in _done
        self._wake = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._flushed = asyncio.Event()
        self._stop = asyncio.Event()
        self._drain_deadline: float | None = None
        self._drain_reason = ""
        self._signals = 0
        self._session: QueueSession | None = None
        self._endpoint: Endpoint | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._last_heartbeat = 0.0
        self._beat_now = asyncio.Event()
        self._io_tasks: set[asyncio.Task[Any]] = set()
        self._terminate_after_drain = False
        self._threads: ThreadPoolExecutor | None = None

    # ----------------------------------------------------------------- probes
    def _gauges(self) -> dict[str, float]:
        return {
            "in_flight": float(self.in_flight),
            "concurrency": float(self.settings.concurrency),
            "draining": float(self.state in ("draining", "drained")),
            "ready": float(self.is_ready()[0]),
        }

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def status(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "name": self.settings.name,
            "state": self.state,
            "in_flight": self.in_flight,
            "queues": self.settings.queues,
            "region": self.settings.region,
            "drain_reason": self._drain_reason or None,
        }

    def is_ready(self) -> tuple[bool, str]:
        if self.worker_id is None:
            return False, "not enrolled yet"
        if self.state != "active":
            return False, f"{self.state}: not accepting jobs"
        return True, "ready"

    def is_healthy(self) -> tuple[bool, str]:
        # A drained worker is healthy (it must stay up until terminated); a
        # worker whose heartbeat stalled for many intervals is not.
        if self.worker_id is not None and self._last_heartbeat:
            stale = time.monotonic() - self._last_heartbeat
            if stale > max(30.0, 10 * self.settings.heartbeat_interval_s):
                return False, f"no successful heartbeat for {stale:.0f}s"
        return True, "ok"

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def request_drain(self, reason: str, deadline_s: float | None = None) -> None:
        """Stop claiming, finish what is held, then report `drained`."""
        if deadline_s is not None:
            deadline = time.monotonic() + deadline_s
            if self._drain_deadline is None or deadline < self._drain_deadline:
                self._drain_deadline = deadline
        if self.state in ("draining", "drained", "stopped"):
            return
        log.info("draining (%s); %d job(s) in flight", reason, self.in_flight)
        self._drain_reason = reason
        self.state = "draining"
        self._wake.set()
        self._slot_freed.set()
        # Report it now, not at the next heartbeat: the registry (and the
        # operator choosing pods to scale down) should see `draining` at once.
        self._beat_now.set()

    # -------------------------------------------------------------------- run
    async def run(self) -> int:
        settings = self.settings
        try:
            self._session = await open_session(settings)
        except Exception as exc:
            text = scrub_password(str(exc), settings.database_url)
            if not text.startswith("cannot connect"):
                text = f"cannot connect to {settings.safe_database_url}: {text}"
            return self._fatal(text)
        try:
            try:
                identity = await enrollment.establish(self._session, settings)
            except RemovedError as exc:
                return self._removed(str(exc))
            except enrollment.EnrollmentError as exc:
                return self._fatal(str(exc))
            self.worker_id = identity.worker_id
            self._last_heartbeat = time.monotonic()
            if settings.http_port >= 0:
                self._endpoint = Endpoint(self, settings.http_host, settings.http_port)
                try:
                    await self._endpoint.start()
                except OSError as exc:
                    return self._fatal(
                        f"--http-port / CORRAL_HTTP_PORT: cannot listen on "
                        f"{settings.http_host}:{settings.http_port}: {exc.strerror or exc}"
                    )
            self._install_signals()
            # Sync handlers run in threads; one per slot so none waits for a thread.
            self._threads = ThreadPoolExecutor(
                max_workers=min(settings.concurrency, 256), thread_name_prefix="corral-job"
            )
            self.state = "active"
            log.info(
                "worker %s (%s) started: queues=%s region=%s concurrency=%d batch=%d http=%s",
                self.worker_id,
                settings.name,
                ",".join(settings.queues),
                settings.region or "-",
                settings.concurrency,
                settings.claim_batch,
                self._endpoint.port if self._endpoint else "off",
            )
            print(
                f"corral worker {self.worker_id} ready"
                + (f" on :{self._endpoint.port}" if self._endpoint else ""),
                flush=True,
            )
            spawn = self._spawn
            spawn(self._heartbeat_loop(), "heartbeat")
            spawn(self._listen_loop(), "listener")
            spawn(self._flush_loop(), "flusher")
            spawn(self._watchdog_loop(), "watchdog")
            spawn(self._reaper_loop(), "reaper")
            if settings.retention_s > 0:
                spawn(self._retention_loop(), "retention")
            spawn(self._dispatch_loop(), "dispatcher")
            await self._stop.wait()
            return self.exit_code
        finally:
            await self._shutdown()

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_died)
        self._tasks.append(task)

    def _task_died(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            if isinstance(exc, RemovedError):
                self._removed(str(exc))
                return
            if isinstance(exc, ConnectionLost):
                # The connection is gone. Exit so the pod restarts with fresh
                # connections; the jobs we held come back when their leases lapse.
                self._fatal(
                    f"lost the database connection ({task.get_name()}): "
                    f"{scrub_password(str(exc).strip(), self.settings.database_url)}; exiting, held jobs "
                    f"return to the queue within --lease ({self.settings.lease_s:g}s)"
                )
                return
            text = "".join(traceback.format_exception(exc))
            self._fatal(
                f"internal task {task.get_name()} failed: {scrub_password(text, self.settings.database_url)}"
            )

    def _fatal(self, message: str) -> int:
        print(f"corral worker: error: {message}", file=sys.stderr, flush=True)
        self.exit_code = EXIT_FATAL
        self.exit_message = message
        self.state = "stopped"
        self._stop.set()
        return EXIT_FATAL

    def _removed(self, detail: str) -> int:
        message = (
            f"this worker ({self.worker_id or 'unknown id'}, name {self.settings.name}) was removed "
            f"from the corral workers registry ({detail}); it stops claiming and exits. "
            "To run it again, delete its state directory "
            f"({self.settings.state_dir}) and start it with a fresh enrollment token."
        )
        print(f"corral worker: {message}", file=sys.stderr, flush=True)
        self.exit_code = EXIT_REMOVED
        self.exit_message = message
        self.state = "stopped"
        # Jobs still held go back to the queue by lease expiry: the removed
        # credential can no longer complete or release them.
        for r in self._running.values():
            if r.task is not None:
                r.released = True
                r.task.cancel()
        self._stop.set()
        return EXIT_REMOVED

    def _install_signals(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        name = signal.Signals(sig).name
        if self._signals > 1:
            print(f"corral worker: second {name}: stopping at once", file=sys.stderr, flush=True)
            os._exit(1)
        print(
            f"corral worker: {name}: draining for up to {self.settings.drain_timeout_s:g}s, "
            "then handing unfinished jobs back",
            file=sys.stderr,
            flush=True,
        )
        self.request_drain(name, deadline_s=self.settings.drain_timeout_s)
        self._terminate_after_drain = True

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        done = sum(n for (_, outcome), n in self.metrics.jobs.items() if outcome == "completed")
        cpu_s = time.process_time()
        log.info(
            "exiting: %d job(s) completed, %.2fs of CPU (%.1f µs per job including startup)",
            done,
            cpu_s,
            1e6 * cpu_s / max(done, 1),
        )
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._threads is not None:
            # A sync handler cannot be interrupted; its job was handed back
            # already, so do not wait for the thread (the CLI exits hard).
            self._threads.shutdown(wait=False, cancel_futures=True)
        if self._endpoint is not None:
            await self._endpoint.stop()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.close(), 5)

    # ------------------------------------------------------------- dispatcher
    async def _dispatch_loop(self) -> None:
        session = self._session
        assert session is not None
        settings = self.settings
        concurrency = settings.concurrency
        batch = settings.claim_batch
        wake = self._wake
        slot_freed = self._slot_freed
        poll = settings.poll_interval_s
        metrics = self.metrics
        start_job = self._start_job
        while self.state == "active":
            free = concurrency - len(self._running)
            if free <= 0:
                slot_freed.clear()
                await slot_freed.wait()
                continue
            wake.clear()
            jobs = await session.claim(min(free, batch))
            if self.state != "active":
                # Drain began while the claim was in flight: run what we got
                # (it is ours now) rather than leaving it leased.
                wall = time.time()
                for job in jobs:
                    start_job(job, wall)
                break
            if jobs:
                metrics.claim_batch.observe(len(jobs))
                wall = time.time()
                for job in jobs:
                    start_job(job, wall)
                if len(jobs) == min(free, batch):
                    # A full batch: more are probably waiting. Let the jobs
                    # just started run (and free their slots) first.
                    await asyncio.sleep(0)
                    continue
            # Queue empty (or nearly): sleep until NOTIFY, a slot frees up
            # after a full claim, or the polling fallback.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), poll)
        await self._finish_drain()

    def _start_job(self, claimed: ClaimedJob, wall: float) -> None:
        now = time.monotonic()
        handler = self.registry.get(claimed.kind)
        # Latency counts from when the job became runnable: enqueue, or run_at
        # for a delayed job or a retry.
        ready = claimed.run_at if claimed.run_at > claimed.enqueued_at else claimed.enqueued_at
        self.metrics.observe_latency(claimed.queue, max(0.0, wall - ready.timestamp()))
        timeout = self.settings.job_timeout_s
        if handler is not None and handler.timeout_s is not None:
            timeout = handler.timeout_s
        running = _Running(claimed, None, now + timeout, now)
        self._running[claimed.id] = running
        coro = self._run_job(running, handler)
        # Run the handler eagerly up to its first real suspension: a handler
        # that never awaits (no-op, cached lookups) costs no Task at all.
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        running.task = asyncio.ensure_future(_resume(coro, pending))

    async def _run_job(self, running: _Running, handler: Handler | None) -> None:
        claimed = running.job
        try:
            try:
                if handler is None:
                    raise _Unknown(claimed.kind)
                job: Job[Any] = Job(
                    claimed.id,
                    claimed.kind,
                    claimed.queue,
                    claimed.payload,
                    claimed.attempt,
                    claimed.max_attempts,
                    claimed.region,
                    claimed.enqueued_at,
                )
                if handler.payload_model is not None:
                    job = handler.prepare(job)
                if handler.is_async:
                    result = await handler.fn(job)
                else:
                    result = await asyncio.get_running_loop().run_in_executor(
                        self._threads, handler.fn, job
                    )
            except asyncio.CancelledError:
                if running.released:
                    return  # handed back by shutdown; not an attempt
                if running.timed_out:
                    self._fail(
                        running,
                        "timeout",
                        f"timed out after {running.deadline - running.started:g}s",
                    )
                    return
                raise
            except _Unknown:
                known = ", ".join(self.registry.names())
                self._fail(
                    running,
                    "unknown_kind",
                    f"no handler registered for kind {claimed.kind!r} (this worker knows: {known})",
                )
                return
            except PayloadError as exc:
                self._fail(running, "payload", str(exc))
                return
            except Exception as exc:
                self._fail(running, "exception", _describe(exc))
                return
        except BaseException:
            self._forget(running)
            raise
        self._complete(running, result)

    def _complete(self, running: _Running, result: Any) -> None:
        claimed = running.job
        self._done.append(claimed)
        if result is not None:
            self._results[claimed.id] = _result_value(claimed, result)
        queue = claimed.queue
        m = self.metrics
        m.count(queue, "completed")
        m.observe_duration(queue, time.monotonic() - running.started)
        pending = len(self._done)
        if pending == 1 or pending >= self.settings.claim_batch:
            self._flush_now.set()

    def _fail(self, running: _Running, outcome: str, error: str) -> None:
        claimed = running.job
        self.metrics.count(claimed.queue, outcome)
        self.metrics.observe_duration(claimed.queue, time.monotonic() - running.started)
        log.warning(
            "job %s (%s, attempt %d) failed: %s", claimed.id, claimed.kind, claimed.attempt, error
        )
        self._spawn_io(self._record_failure(running, outcome, error))

    def _spawn_io(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._io_tasks.add(task)
        task.add_done_callback(self._io_tasks.discard)

    async def _record_failure(self, running: _Running, reason: str, error: str) -> None:
        assert self._session is not None
        try:
            await self._session.fail(running.job, reason, error)
        except RemovedError:
            raise
        except Exception as exc:
            # The lease will lapse and the reaper will retry the job.
            log.error("could not record failure of job %s: %s", running.job.id, exc)
        finally:
            self._forget(running)

    def _forget(self, running: _Running) -> None:
        if self._running.pop(running.job.id, None) is not None:
            self._slot_freed.set()

    # ---------------------------------------------------------------- flusher
    async def _flush_loop(self) -> None:
        session = self._session
        assert session is not None
        interval = self.settings.flush_interval_s
        batch = self.settings.claim_batch
        while True:
            await self._flush_now.wait()
            self._flush_now.clear()
            if interval and len(self._done) < batch:
                await asyncio.sleep(interval)  # gather a few more results
            done, self._done = self._done, []
            if not done:
                continue
            results: dict[int, Any] = {}
            if self._results:
                results, self._results = self._results, {}
            try:
                lost = await session.complete_many(done, results)
            except (RemovedError, ConnectionLost):
                raise  # removed, or the connection is gone: the worker exits
            except Exception as exc:
                log.error("could not record %d completion(s), retrying: %s", len(done), exc)
                self._done[:0] = done
                self._results.update(results)
                await asyncio.sleep(0.5)
                self._flush_now.set()
                continue
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
            running = self._running
            for job in done:
                running.pop(job.id, None)
            self._slot_freed.set()
            if self._done:
                self._flush_now.set()
            self._flushed.set()

    # --------------------------------------------------------------- watchdog
    async def _watchdog_loop(self) -> None:
        while True:
            await asyncio.sleep(_WATCHDOG_PERIOD_S)
            now = time.monotonic()
            for r in list(self._running.values()):
                if (
                    r.deadline <= now
                    and r.task is not None
                    and not r.timed_out
                    and not r.task.done()
                ):
                    r.timed_out = True
                    r.task.cancel()

    # -------------------------------------------------------------- heartbeat
    async def _heartbeat_loop(self) -> None:
        session = self._session
        assert session is not None
        while True:
            try:
                directive = await session.heartbeat(self.in_flight, self._reported_state())
            except RemovedError:
                raise
            except Exception as exc:
                log.warning(
                    "heartbeat failed (will retry): %s",
                    scrub_password(str(exc), self.settings.database_url),
                )
            else:
                self._last_heartbeat = time.monotonic()
                if directive == "drain":
                    self.request_drain("corral workers drain")
            await self._sleep_or_wake(self.settings.heartbeat_interval_s)

    def _reported_state(self) -> str:
        return {"starting": "active", "stopped": "draining"}.get(self.state, self.state)

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._beat_now.wait(), seconds)
        self._beat_now.clear()

    # ---------------------------------------------------------------- listener
    async def _listen_loop(self) -> None:
        session = self._session
        assert session is not None
        await session.listen()
        while True:
            try:
                if await session.wait_for_jobs(60.0):
                    self._wake.set()
            except Exception as exc:
                # The dispatcher still polls every poll_interval_s meanwhile.
                log.warning(
                    "LISTEN connection lost, reconnecting (polling meanwhile): %s",
                    scrub_password(str(exc).strip(), self.settings.database_url),
                )
                await asyncio.sleep(1.0)
                with contextlib.suppress(Exception):
                    await session.reconnect_listener()

    # ------------------------------------------------------------------ reaper
    async def _reaper_loop(self) -> None:
        session = self._session
        assert session is not None
        while True:
            await asyncio.sleep(_REAPER_PERIOD_S)
            try:
                reaped = await session.reap()
            except Exception as exc:
                log.warning("reaper pass failed: %s", exc)
                continue
            if reaped:
                log.info("reaper: %d job(s) with lapsed leases sent back for retry", reaped)
                self._wake.set()

    # --------------------------------------------------------------- retention
    async def _retention_loop(self) -> None:
        """Delete finished jobs past `--retention`, a batch at a time. Every
        worker runs this loop; the queue's advisory lock lets one purge at a
        time fleet-wide (the others find it held and skip their turn)."""
        session = self._session
        assert session is not None
        retention_s = self.settings.retention_s
        await asyncio.sleep(_RETENTION_FIRST_S)
        while True:
            total = 0
            try:
                while True:
                    deleted = await session.purge_finished_batch(retention_s, _RETENTION_BATCH)
                    if deleted is None:
                        break  # another worker is purging
                    total += deleted
                    if deleted < _RETENTION_BATCH:
                        break
                    # Between batches the heartbeat and failures get the
                    # control connection.
                    await asyncio.sleep(0.01)
            except (RemovedError, ConnectionLost):
                raise
            except Exception as exc:
                log.warning(
                    "retention pass failed: %s",
                    scrub_password(str(exc), self.settings.database_url),
                )
            if total:
                log.info("retention: deleted %d finished job(s) older than %gs", total, retention_s)
            await asyncio.sleep(_RETENTION_PERIOD_S)

    # ------------------------------------------------------------------- drain
    async def _finish_drain(self) -> None:
        """Wait for held jobs (until the drain deadline), hand back the rest,
        report `drained`; exit when the drain came from a signal."""
        while self._running or self._done:
            if self._drain_deadline is not None and time.monotonic() >= self._drain_deadline:
                break
            self._slot_freed.clear()
            remaining = (
                None
                if self._drain_deadline is None
                else max(0.0, self._drain_deadline - time.monotonic())
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._slot_freed.wait(), remaining if remaining is not None else 1.0
                )
        await self._hand_back()
        if self.state == "stopped":
            return
        self.state = "drained"
        assert self._session is not None
        with contextlib.suppress(Exception):
            await self._session.heartbeat(self.in_flight, "drained")
        log.info("drained: 0 jobs in flight")
        print(f"corral worker {self.worker_id}: drained, 0 jobs in flight", flush=True)
        if self._terminate_after_drain:
            self._stop.set()
            return
        # Stay up, not ready, until terminated (the pod's SIGTERM).
        while not self._terminate_after_drain:
            await asyncio.sleep(0.2)
        self._stop.set()

    async def _hand_back(self) -> None:
        """Cancel jobs still running and release them (not a failed attempt)."""
        assert self._session is not None
        stuck = [r for r in self._running.values() if r.task is not None and not r.task.done()]
        for r in stuck:
            r.released = True
            r.task.cancel()  # type: ignore[union-attr]
        if stuck:
            await asyncio.gather(*(r.task for r in stuck if r.task), return_exceptions=True)
            try:
                await self._session.release([r.job for r in stuck])
                log.info("handed %d unfinished job(s) back to the queue", len(stuck))
            except Exception as exc:
                log.error(
                    "could not hand back %d job(s); their leases will lapse: %s", len(stuck), exc
                )
            for r in stuck:
                self._running.pop(r.job.id, None)
        # Let failures being recorded and the last completions land.
        if self._io_tasks:
            await asyncio.gather(*list(self._io_tasks), return_exceptions=True)
        while self._done:
            self._flush_now.set()
            self._flushed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flushed.wait(), 5)


class _Unknown(Exception):
    pass


def _result_value(claimed: ClaimedJob, result: Any) -> Any:
    """A handler's return value as JSON data (pydantic models, dataclasses,
    datetimes, UUIDs... converted). A value JSON cannot hold is kept as its
    repr instead, so that one odd result never blocks a completion batch."""
    try:
        value = to_jsonable_python(result)
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        log.warning(
            "job %s (%s) returned a value JSON cannot hold (%s); keeping its repr",
            claimed.id,
            claimed.kind,
            exc,
        )
        return {"unserializable_result": repr(result)[:1000]}
    return value


def _describe(exc: BaseException) -> str:
    """`Type: message` plus the innermost frame, short enough to keep in a row."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return f"{type(exc).__name__}: {exc}{where}"[:2000]


@types.coroutine
def _continue(coro: Any, pending: Any) -> Generator[Any, Any, Any]:
    """Drive a coroutine that already ran to its first suspension (which
    yielded `pending`) to its end: `yield from`, resumed midway. See
    `Worker._start_job`."""
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


async def _resume(coro: Any, pending: Any) -> Any:
    return await _continue(coro, pending)

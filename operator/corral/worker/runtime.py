"""The worker runtime behind `corral worker`: wires the parts together.

`corral.worker.cli` builds a `Worker` from `WorkerSettings` and runs it; tests
and the benchmark run the same CLI in subprocesses. All database work goes
through `corral.queue` (the only module that talks to PostgreSQL), over the
worker's `QueueSession` (`corral.worker._queue`).

One asyncio loop per process, with these tasks, each in its own module:

- `dispatcher` and `listener` (`claims`): claim as many jobs as there are free
  slots in one statement, whenever NOTIFY says so or the poll comes round;
- `jobs` runs each claimed job (`Jobs.start`), times out overruns
  (`watchdog`) and sends failures (exception, timeout, bad payload, unknown
  kind) through the retry path; they never stop the worker;
- `flusher` (`completions`): finished jobs and their results are written in
  one statement every few milliseconds, or as soon as a batch is full;
- `heartbeat`: liveness, in-flight count and state; extends leases; learns of
  drains and removal;
- `reaper` and `retention` (`upkeep`): lapsed leases back for retry, finished
  jobs past `--retention` deleted, one worker at a time across the fleet;
- `schedules` (`upkeep`): the firing pass, every second on every worker:
  due schedule occurrences become jobs, each once fleet-wide.

Where the worker is in its life (starting, active, draining, drained,
stopped) is the drain state machine's (`drain.Lifecycle`). A drain, whoever
starts it (SIGTERM via `signals`, POST /drain on the `endpoint`, `corral
worker prestop`, `corral workers drain|restart`), stops the dispatcher;
`draining` then waits for held jobs until the drain deadline, hands back the
rest, reports `drained` and exits, stays up or claims again.

Delivery is at-least-once: a job whose worker dies runs again once its lease
lapses (`_queue.lease_grant_s`); handlers get `job.id`/`job.attempt`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import sys
import time
import traceback
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from corral.entry import resume_collector
from corral.queue import ConnectionLost
from corral.queue.dsn import scrub_password
from corral.worker import claims, enrollment, probes, upkeep
from corral.worker._queue import QueueSession, RemovedError, lease_grant_s, open_session
from corral.worker.completions import CompletionBuffer, Flusher
from corral.worker.config import WorkerSettings
from corral.worker.drain import Lifecycle, State
from corral.worker.draining import EXIT_RESTART, Dispatcher
from corral.worker.egress import Guard
from corral.worker.endpoint import EndpointError, listen, serve
from corral.worker.executors import build_registry
from corral.worker.handlers import HandlerRegistry, declared_schedules
from corral.worker.heartbeat import Heartbeat, LeasesLapsed
from corral.worker.jobs import Jobs
from corral.worker.loopwatch import LoopWatch
from corral.worker.metrics import WorkerMetrics
from corral.worker.signals import StopSignals
from corral.worker.stopping import exit_now, stop_tasks

if TYPE_CHECKING:
    from corral.worker.endpoint_http import Endpoint

log = logging.getLogger("corral.worker")

__all__ = ["EXIT_REMOVED", "EXIT_RESTART", "EXIT_STUCK", "Worker"]

EXIT_REMOVED = 3  # the registry says this worker was removed
EXIT_STUCK = 4  # sync handlers stuck past their timeout hold too many slots
EXIT_FATAL = 1


class Worker:
    """One worker process. `run()` returns the process exit code."""

    def __init__(
        self,
        settings: WorkerSettings,
        registry: HandlerRegistry | None = None,
        guard: Guard | None = None,
    ) -> None:
        self.settings = settings
        # The executor guard the registry's built-ins obey: told the
        # endpoint's address once it listens, so no job can reach it.
        self.guard = guard if guard is not None else Guard(settings.egress_policy())
        self.registry = registry if registry is not None else build_registry(settings, self.guard)
        self.lifecycle = Lifecycle(in_pool=settings.pool is not None)
        self.worker_id: str | None = None
        self.exit_code = 0
        # Leave with os._exit when tasks would not stop (`corral worker` sets
        # it: asyncio.run would wait for them for ever); in-process users keep
        # their interpreter.
        self.exit_hard_if_stuck = False
        self.exit_message = ""
        self.metrics = WorkerMetrics(self._gauges, settings.queues)
        self._buffer = CompletionBuffer(settings.claim_batch)
        self._jobs: Jobs | None = None
        self._heartbeat: Heartbeat | None = None
        self._flusher: Flusher | None = None
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._session: QueueSession | None = None
        self._endpoint: Endpoint | None = None  # serving once the first claim is sent
        self._tasks: list[asyncio.Task[Any]] = []

    # ------------------------------------------------------ probes and status
    @property
    def state(self) -> State:
        return self.lifecycle.state

    @property
    def in_flight(self) -> int:
        return 0 if self._jobs is None else len(self._jobs)

    def _gauges(self) -> dict[str, float]:
        return {
            "in_flight": float(self.in_flight),
            "concurrency": float(self.settings.concurrency),
            "draining": float(self.lifecycle.draining),
            "ready": float(self.is_ready()[0]),
            "stuck_handlers": float(0 if self._jobs is None else len(self._jobs.stuck)),
        }

    def status(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "name": self.settings.name,
            "state": self.state,
            "in_flight": self.in_flight,
            "queues": self.settings.queues,
            "region": self.settings.region,
            "drain_reason": self.lifecycle.reason or None,
        }

    def is_ready(self) -> tuple[bool, str]:
        return probes.readiness(self.worker_id is not None, self.state)

    def is_healthy(self) -> tuple[bool, str]:
        last = self._heartbeat.last_ok if self._heartbeat is not None else 0.0
        return probes.liveness(
            heartbeat_age_s=time.monotonic() - last if self.worker_id is not None and last else 0.0,
            heartbeat_interval_s=self.settings.heartbeat_interval_s,
            flush_stalled_s=self._flusher.stalled_for() if self._flusher is not None else 0.0,
        )

    def _held(self) -> list[int]:
        """Jobs whose leases the heartbeat extends: running, and done but not
        yet written (a completion waiting out a database outage)."""
        running = list(self._jobs.running) if self._jobs is not None else []
        return running + [job.id for job in self._buffer.done]

    def render_metrics(self) -> bytes:
        return self.metrics.render()

    def request_drain(
        self, reason: str, deadline_s: float | None = None, *, by_registry: bool = False
    ) -> None:
        """Stop claiming, finish what is held, then report `drained`."""
        if not self.lifecycle.begin_drain(reason, deadline_s, by_registry=by_registry):
            return
        log.info("draining (%s); %d job(s) in flight", reason, self.in_flight)
        self._wake.set()
        if self._jobs is not None:
            self._jobs.slot_freed.set()
        # Report it now, not at the next heartbeat: the registry (and the
        # operator choosing pods to scale down) should see `draining` at once.
        if self._heartbeat is not None:
            self._heartbeat.beat_now.set()

    def _drain_from_registry(self, reason: str) -> None:
        self.request_drain(reason, by_registry=True)

    def _restart_from_registry(self) -> None:
        if self.lifecycle.begin_restart("corral workers restart"):
            log.info("restarting: draining, then exiting for the supervisor to start it again")
            self._wake.set()
            if self._jobs is not None:
                self._jobs.slot_freed.set()

    def resume(self) -> None:
        """The registry cancelled the drain it had asked for: claim again."""
        if not self.lifecycle.resume():
            return
        log.info("drain cancelled in the registry: claiming again")
        print(f"corral worker {self.worker_id}: drain cancelled, active again", flush=True)
        self._wake.set()
        if self._jobs is not None:
            self._jobs.slot_freed.set()
        if self._heartbeat is not None:
            self._heartbeat.beat_now.set()

    def _drain_on_signal(self, reason: str, deadline_s: float) -> None:
        self.request_drain(reason, deadline_s)
        self.lifecycle.exit_when_drained = True
        if self._heartbeat is not None:
            self._heartbeat.beat_now.set()  # a drain under way becomes our own at once

    # -------------------------------------------------------------------- run
    async def run(self) -> int:
        settings = self.settings
        try:
            self._session = session = await open_session(settings)
        except Exception as exc:
            text = scrub_password(str(exc), settings.database_url)
            if not text.startswith("cannot connect"):
                text = f"cannot connect to {settings.safe_database_url}: {text}"
            return self._fatal(text)
        jobs = self._jobs = Jobs(
            self.registry, self.metrics, self._buffer, session, settings.job_timeout_s
        )
        jobs.on_stuck = self._slots_stuck
        beat = self._heartbeat = Heartbeat(
            session,
            self.lifecycle,
            lambda: self.in_flight,
            self._drain_from_registry,
            self.resume,
            settings.heartbeat_interval_s,
            settings.database_url,
            settings.lease_s,
            self._held,
            self._restart_from_registry,
        )
        try:
            try:
                identity = await enrollment.establish(session, settings)
            except RemovedError as exc:
                return self._removed(str(exc))
            except enrollment.EnrollmentError as exc:
                return self._fatal(str(exc))
            self.worker_id, self._region = identity.worker_id, settings.region or identity.region
            beat.last_ok = time.monotonic()
            listener = None
            if settings.http_port >= 0:
                try:
                    listener = listen(settings.http_host, settings.http_port, settings.state_dir)
                except EndpointError as exc:
                    return self._fatal(str(exc))
                self.guard.endpoint = (settings.http_host, listener.port)
            StopSignals(self._drain_on_signal, settings).install()
            # Sync handlers run in threads, one per slot: a job's timeout runs
            # from its claim, so none may wait for a thread (threads start as
            # needed: a pool of 10,000 costs nothing until used).
            jobs.threads = ThreadPoolExecutor(
                max_workers=settings.concurrency, thread_name_prefix="corral-job"
            )
            await upkeep.declare_schedules(session, declared_schedules(), settings.database_url)
            self.lifecycle.activate()
            flusher = self._flusher = Flusher(
                self._buffer, session, self.metrics, jobs.written, settings.flush_interval_s
            )
            spawn = self._spawn
            dispatcher = Dispatcher(
                session, jobs, self._buffer, beat, self.lifecycle, self.metrics, self._wake,
                settings, identity.worker_id, self._exit,
            )  # fmt: skip
            spawn(dispatcher.run(), "dispatcher")  # first: its claim goes out first
            spawn(beat.run(), "heartbeat")
            spawn(claims.listen(session, self._wake, settings.database_url), "listener")
            spawn(flusher.run(), "flusher")
            spawn(jobs.watchdog(), "watchdog")
            spawn(self._loop_watch().run(), "loopwatch")
            for task, name in upkeep.tasks(session, settings, self.metrics, self._wake.set):
                spawn(task, name)
            # One turn of the loop: the tasks above send their first statements
            # (the claim among them). Then the other connections open
            # (`_queue.open_session`), the garbage collector (corral.entry)
            # runs again, and the endpoint's routes and h11 are imported in a
            # thread while the claim is on its way; its socket is bound already.
            await asyncio.sleep(0)
            session.open_connections()
            resume_collector()
            if listener is not None:
                await asyncio.to_thread(importlib.import_module, "corral.worker.endpoint_http")
                self._endpoint = await serve(self, listener)
            self._announce()
            await self._stop.wait()
            return self.exit_code
        finally:
            await self._shutdown()

    def _announce(self) -> None:
        settings = self.settings
        log.info(
            "worker %s (%s) started: queues=%s region=%s concurrency=%d batch=%d http=%s",
            self.worker_id,
            settings.name,
            ",".join(settings.queues),
            self._region or "-",
            settings.concurrency,
            settings.claim_batch,
            self._endpoint.port if self._endpoint else "off",
        )
        print(
            f"corral worker {self.worker_id} ready"
            + (f" on :{self._endpoint.port}" if self._endpoint else ""),
            flush=True,
        )

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(self._task_died)
        self._tasks.append(task)

    def _task_died(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        url = self.settings.database_url
        if isinstance(exc, RemovedError):
            self._removed(str(exc))
        elif isinstance(exc, LeasesLapsed):
            self._fatal(str(exc))
        elif isinstance(exc, ConnectionLost):
            # The claim, completion, heartbeat and failure paths reopen their
            # connections themselves; a task that still died of a lost one
            # has no way on: exit for Kubernetes to restart the worker.
            self._fatal(
                f"lost the database connection ({task.get_name()}): "
                f"{scrub_password(str(exc).strip(), url)}; exiting, held jobs "
                f"return to the queue within {lease_grant_s(self.settings.lease_s):g}s"
            )
        else:
            text = "".join(traceback.format_exception(exc))
            self._fatal(f"internal task {task.get_name()} failed: {scrub_password(text, url)}")

    def _loop_watch(self) -> LoopWatch:
        def stalled(seconds: float, where: str) -> None:
            self.metrics.loop_stalls += 1

        return LoopWatch(((h.name, h.fn) for h in self.registry), on_stall=stalled)

    def _slots_stuck(self, count: int) -> None:
        """A sync handler outlived its timeout (its slot is lost until it
        returns); past `stuck_share` of the slots the worker restarts."""
        settings = self.settings
        limit = max(1, math.ceil(settings.stuck_share * settings.concurrency))
        if count < limit or self.exit_code == EXIT_STUCK:
            return
        self.exit_code = EXIT_STUCK
        self.exit_message = (
            f"{count} of {settings.concurrency} slots are held by sync handlers stuck past their "
            f"timeout (--stuck-share {settings.stuck_share:g}); handing back the other jobs and "
            "exiting so that Kubernetes restarts this worker with fresh threads"
        )
        print(f"corral worker: error: {self.exit_message}", file=sys.stderr, flush=True)
        self._spawn(self._restart(), "restart")

    async def _restart(self) -> None:
        self.lifecycle.stop()
        jobs = self._jobs
        if jobs is not None:
            await jobs.hand_back()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._buffer.written_out(), 10)
        self._stop.set()

    def _exit(self, code: int) -> None:
        self.exit_code = code
        self._stop.set()

    def _fatal(self, message: str) -> int:
        print(f"corral worker: error: {message}", file=sys.stderr, flush=True)
        self.exit_code = EXIT_FATAL
        self.exit_message = message
        self.lifecycle.stop()
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
        self.lifecycle.stop()
        # Jobs still held go back to the queue by lease expiry: the removed
        # credential can no longer complete or release them.
        if self._jobs is not None:
            self._jobs.abandon()
        self._stop.set()
        return EXIT_REMOVED

    async def _shutdown(self) -> None:
        done = sum(n for (_, outcome), n in self.metrics.jobs.items() if outcome == "completed")
        cpu_s = time.process_time()
        log.info(
            "exiting: %d job(s) completed, %.2fs of CPU (%.1f µs per job including startup)",
            done,
            cpu_s,
            1e6 * cpu_s / max(done, 1),
        )
        stuck = await stop_tasks(self._tasks)
        lingering = 0 if self._jobs is None else sum(not t.done() for t in self._jobs.lingering)
        if lingering:  # their jobs were handed back; the handlers ignored the cancellation
            stuck.append(f"{lingering} job handler(s)")
        if stuck:
            log.warning("tasks still running at exit, left behind: %s", ", ".join(stuck))
        if self._jobs is not None and self._jobs.threads is not None:
            # A sync handler cannot be interrupted; its job was handed back
            # already, so do not wait for the thread (the CLI exits hard).
            self._jobs.threads.shutdown(wait=False, cancel_futures=True)
        if self._endpoint is not None:
            await self._endpoint.stop()
        if self._session is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._session.close(), 5)
        if stuck and self.exit_hard_if_stuck:
            exit_now(self.exit_code)

"""The dispatcher task's loop: claim until a drain, carry the drain out, then
exit, stay up or claim again.

Started by `corral.worker.runtime.Worker.run` as the `dispatcher` task. A
drain (whoever began it: `corral.worker.drain.Lifecycle` says why and until
when) stops `claims.dispatch`; this module waits for held jobs until the
drain deadline, has `Jobs` hand back the rest, lets the last completions
land and reports `drained`. Then, as the lifecycle says: exit 0 (a signal,
or a worker outside a pool drained through the registry), exit with
`EXIT_RESTART` (`corral workers restart`: its supervisor starts it again and
it re-authenticates with its stored credential), stay up not ready (a pool
worker, until its pod's SIGTERM), or claim again (the registry cancelled the
drain: `corral workers resume`, or the operator's scaler).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from corral.worker import claims
from corral.worker._queue import QueueSession
from corral.worker.completions import CompletionBuffer
from corral.worker.config import WorkerSettings
from corral.worker.drain import Lifecycle
from corral.worker.heartbeat import Heartbeat
from corral.worker.jobs import Jobs
from corral.worker.metrics import WorkerMetrics

log = logging.getLogger("corral.worker")

__all__ = ["EXIT_RESTART", "EXIT_UNWRITTEN", "Dispatcher"]

# Drained for `corral workers restart`: start me again (EX_TEMPFAIL, "try
# again later"; Kubernetes restarts a pod's container on any exit, a systemd
# unit with RestartForceExitStatus=75 or Restart=on-failure does too).
EXIT_RESTART = 75
# Drained with completions the database did not take by the drain deadline
# and WRITE_OUT_MARGIN_S (an outage): their jobs run again once their leases
# lapse, as after a second signal (signals.EXIT_SECOND_SIGNAL).
EXIT_UNWRITTEN = 1
WRITE_OUT_MARGIN_S = 3.0
_DRAIN_POLL_S = 1.0  # a drain without a deadline re-checks held jobs this often
_DRAINED_POLL_S = 0.2  # a drained worker checks this often whether to exit


@dataclass(slots=True)
class Dispatcher:
    """Claims and drains for one worker; `exit(code)` ends the process."""

    session: QueueSession
    jobs: Jobs
    buffer: CompletionBuffer
    heartbeat: Heartbeat
    lifecycle: Lifecycle
    metrics: WorkerMetrics
    wake: asyncio.Event
    settings: WorkerSettings
    worker_id: str
    exit: Callable[[int], None]

    async def run(self) -> None:
        """Claim until a drain, finish the drain; claim again if the registry
        cancels it."""
        settings = self.settings
        while True:
            await claims.dispatch(
                self.session,
                self.jobs,
                self.lifecycle,
                self.metrics,
                self.wake,
                concurrency=settings.concurrency,
                batch=settings.claim_batch,
                poll_s=settings.poll_interval_s,
            )
            if not await self._finish_drain():
                return

    async def _finish_drain(self) -> bool:
        """Wait for held jobs (until the drain deadline), hand back the rest,
        report `drained`, then exit or stay up. True when the drain was
        cancelled on the way (claim again)."""
        jobs, lifecycle, buffer = self.jobs, self.lifecycle, self.buffer
        while jobs.running or buffer.done:
            if lifecycle.accepting:
                return True  # cancelled while jobs still ran: they simply go on
            remaining = lifecycle.time_left()
            if remaining == 0.0:
                break
            jobs.slot_freed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining if remaining is not None else _DRAIN_POLL_S):
                    await jobs.slot_freed.wait()
        if lifecycle.accepting:
            return True
        await jobs.hand_back()
        if not await self._written_out():
            return False
        if lifecycle.accepting:
            return True  # the registry cancelled the drain meanwhile: claim again
        if not lifecycle.finish_drain():
            return False
        await self.heartbeat.report_drained()
        if lifecycle.accepting:
            return True  # resumed in the registry as the drain finished
        log.info("drained: 0 jobs in flight")
        print(f"corral worker {self.worker_id}: drained, 0 jobs in flight", flush=True)
        # Stay up, not ready, until the pod's SIGTERM, a restart, or the
        # registry cancelling the drain.
        while not lifecycle.exits_when_drained:
            if lifecycle.accepting:
                return True
            await asyncio.sleep(_DRAINED_POLL_S)
        self.exit(self._exit_code())
        return False

    async def _written_out(self) -> bool:
        """Let the last completions land: for as long as it takes, or, with a
        drain deadline, until that deadline and `WRITE_OUT_MARGIN_S`. False
        when they could not be written by then and the worker exits,
        leaving them to their leases (a signal must not wait out --lease)."""
        lifecycle, buffer = self.lifecycle, self.buffer
        left = lifecycle.time_left()
        if left is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left + WRITE_OUT_MARGIN_S):
                    await buffer.written_out()
            unwritten = len(buffer) + buffer.writing
            if unwritten and lifecycle.exits_when_drained:
                message = (
                    f"could not write {unwritten} completion(s) by the drain's deadline and "
                    f"{WRITE_OUT_MARGIN_S:g}s more (the database does not answer): left "
                    f"{unwritten} completion(s) to their leases; those jobs run again once "
                    f"their leases lapse. Exiting with code {EXIT_UNWRITTEN}"
                )
                log.error("%s", message)
                print(f"corral worker {self.worker_id}: {message}", file=sys.stderr, flush=True)
                self.exit(EXIT_UNWRITTEN)
                return False
        await buffer.written_out()
        return True

    def _exit_code(self) -> int:
        lifecycle = self.lifecycle
        if lifecycle.exit_when_drained:
            return 0
        if lifecycle.restart:
            log.info("restarting: exiting with code %d for the supervisor", EXIT_RESTART)
            print(
                f"corral worker {self.worker_id}: restarting (exit code {EXIT_RESTART}); "
                "it comes back with its stored credential",
                flush=True,
            )
            return EXIT_RESTART
        log.info("drained through the registry and not in a pool: exiting")
        print(
            f"corral worker {self.worker_id}: drained, not in a pool: exiting "
            f"(to bring it back: `corral workers resume {self.worker_id}`, then start it again)",
            flush=True,
        )
        return 0

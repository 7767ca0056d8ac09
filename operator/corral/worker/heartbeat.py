"""The heartbeat: tell the registry this worker lives (and its in-flight
count and state), extend its leases, and learn of drains asked for elsewhere.

Started by `corral.worker.runtime` as the `heartbeat` task. What to report
and what the answer means is the drain state machine's
(`corral.worker.drain.Lifecycle`); the calls go through
`QueueSession.heartbeat`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from corral.queue.dsn import scrub_password
from corral.worker._queue import QueueSession, RemovedError, lease_grant_s
from corral.worker.drain import Directive, Lifecycle

log = logging.getLogger("corral.worker")

__all__ = ["Heartbeat", "LeasesLapsed"]

_LOG_EVERY_S = 10.0  # while beats fail, say so at most this often


class LeasesLapsed(RuntimeError):
    """No beat reached the database for longer than the lease: the jobs this
    worker holds are due to run again elsewhere (their leases lapsed, or lapse
    within the slack a beat grants on top of --lease), so it exits."""


@dataclass(slots=True)
class Heartbeat:
    """Beats every `interval_s`, or at once when `beat_now` is set (a drain
    began: the registry, and the operator choosing pods to scale down,
    should see it without waiting)."""

    session: QueueSession
    lifecycle: Lifecycle
    in_flight: Callable[[], int]
    on_drain: Callable[[str], None]  # the registry asks this worker to drain
    on_resume: Callable[[], None]  # the registry cancelled the drain it asked for
    interval_s: float
    database_url: str  # only to keep its password out of logs
    lease_s: float  # beats extend the leases; none for this long and they lapsed
    # The ids of the jobs this worker holds (running, or done with the
    # completion unwritten): only their leases are extended.
    held: Callable[[], list[int]] = list
    on_restart: Callable[[], None] = lambda: None  # the registry asks for a restart
    beat_now: asyncio.Event = field(default_factory=asyncio.Event)
    # Monotonic time the last successful beat was sent: the leases it renewed
    # run from its transaction's start, which is no earlier, so silence is
    # counted from here (a beat that waited on a lock does not stretch it).
    last_ok: float = 0.0

    async def run(self) -> None:
        logged = 0.0
        while True:
            sent = time.monotonic()
            try:
                directive = await self.session.heartbeat(
                    self.in_flight(), self.lifecycle, self.held()
                )
            except RemovedError:
                raise
            except Exception as exc:
                now = time.monotonic()
                silent = now - self.last_ok
                if silent > self.lease_s:
                    slack_s = lease_grant_s(self.lease_s) - self.lease_s
                    within = f" (or lapse within the {slack_s:g}s of slack a beat grants)"
                    raise LeasesLapsed(
                        f"no heartbeat has reached the database for {silent:.0f}s, longer than "
                        f"--lease ({self.lease_s:g}s), so the leases of the jobs this worker "
                        f"holds have lapsed{within if slack_s > 0 else ''} and they run "
                        f"again elsewhere; exiting "
                        f"(last error: {scrub_password(str(exc).strip(), self.database_url)})"
                    ) from None
                if now - logged >= _LOG_EVERY_S:
                    logged = now
                    log.warning(
                        "heartbeat failed (retrying; %.0fs left before the leases lapse): %s",
                        self.lease_s - silent,
                        scrub_password(str(exc).strip(), self.database_url),
                    )
                # Back as soon as the database is: leases want extending.
                await self._sleep_or_wake(min(self.interval_s, self.session.backoff()))
                continue
            self.last_ok = sent
            if logged:
                log.info("heartbeat reaches the database again")
                logged = 0.0
            self._follow(directive)
            await self._sleep_or_wake(self.interval_s)

    def _follow(self, directive: Directive) -> None:
        if directive is Directive.DRAIN:
            self.on_drain("corral workers drain")
        elif directive is Directive.RESUME:
            self.on_resume()
        elif directive is Directive.RESTART:
            self.on_restart()

    async def report_drained(self) -> None:
        """One beat right after the drain finished (its errors are the next
        beat's); its answer is followed (a resume that raced the drain)."""
        with contextlib.suppress(Exception):
            self._follow(
                await self.session.heartbeat(self.in_flight(), self.lifecycle, self.held())
            )

    async def _sleep_or_wake(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
        # cancellation that lands as the event is set (the SIGTERM that wakes
        # this beat also stops the worker), and a heartbeat loop that outlives
        # shutdown keeps its pod Terminating until SIGKILL.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.beat_now.wait()
        self.beat_now.clear()

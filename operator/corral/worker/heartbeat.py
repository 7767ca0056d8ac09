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
from corral.worker._queue import QueueSession, RemovedError
from corral.worker.drain import Directive, Lifecycle

log = logging.getLogger("corral.worker")

__all__ = ["Heartbeat"]


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
    beat_now: asyncio.Event = field(default_factory=asyncio.Event)
    last_ok: float = 0.0  # monotonic time of the last successful beat

    async def run(self) -> None:
        while True:
            try:
                directive = await self.session.heartbeat(self.in_flight(), self.lifecycle)
            except RemovedError:
                raise
            except Exception as exc:
                log.warning(
                    "heartbeat failed (will retry): %s", scrub_password(str(exc), self.database_url)
                )
            else:
                self.last_ok = time.monotonic()
                if directive is Directive.DRAIN:
                    self.on_drain("corral workers drain")
                elif directive is Directive.RESUME:
                    self.on_resume()
            await self._sleep_or_wake(self.interval_s)

    async def report_drained(self) -> None:
        """One beat right after the drain finished (its errors are the next beat's)."""
        with contextlib.suppress(Exception):
            await self.session.heartbeat(self.in_flight(), self.lifecycle)

    async def _sleep_or_wake(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.beat_now.wait(), seconds)
        self.beat_now.clear()

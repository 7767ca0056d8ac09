"""The operator's schedule firing: how a schedule wakes a pool at zero.

Every worker fires due schedule occurrences (`corral.worker.upkeep`), but a
pool scaled to zero has no worker, so nothing would fire its schedules and
nothing would wake it. The leader therefore runs a firing pass of its own
about every second (`ScheduleFirer`, started by `corral.controller.cli`
beside the autoscaler), `lead` seconds ahead: an occurrence due within the
lead becomes a job scheduled for its time (state `scheduled`), which the
autoscaler's backlog counts as demand (it counts jobs due within the pool's
`activationLeadSeconds`), so a worker is starting before the job is due.
The queues that got jobs are handed to the autoscaler at once (such a job
sends no NOTIFY: it is not ready yet).

The lead is the largest `activationLeadSeconds` of the pools the autoscaler
tracks (`firing_lead`, pure). Firing too early for a pool with a smaller
lead is harmless: the job still runs at its occurrence, and that pool's
backlog counts it only once it is within that pool's own lead. Workers keep
firing with lead 0; the ledger's key makes a second firing of one occurrence
a no-op, whoever runs it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from corral.controller import metrics
from corral.queue import Queue, mask_dsn
from corral.queue.records import ScheduleFiring

log = logging.getLogger(__name__)

DEFAULT_LEAD_S = 5.0  # with no pool tracked: activationLeadSeconds' default
MAX_LEAD_S = 300.0  # activationLeadSeconds' maximum
INTERVAL_S = 1.0  # between two passes (seconds), unless a full batch says more are due
BATCH = 100  # schedules per pass (one transaction)


def firing_lead(leads: Iterable[float]) -> float:
    """How far ahead (seconds) the operator fires: the largest of the pools'
    activationLeadSeconds, DEFAULT_LEAD_S when there is no pool, never more
    than MAX_LEAD_S nor less than 0."""
    return max(0.0, min(max(leads, default=DEFAULT_LEAD_S), MAX_LEAD_S))


@dataclass
class ScheduleFirer:
    """One pass about every second; see the module's docstring."""

    # Runs a function of a `corral.queue.Queue` (`QueueAccess.run`).
    run_queue: Callable[[Callable[[Queue], list[ScheduleFiring]]], list[ScheduleFiring]]
    # The tracked pools' activationLeadSeconds (`Autoscaler.activation_leads`).
    leads: Callable[[], Iterable[float]]
    # Queues that got jobs: their pools are evaluated at once (`Autoscaler.notified`).
    notify: Callable[[set[str]], object]
    interval_s: float = INTERVAL_S
    batch: int = BATCH

    def fire_once(self) -> list[ScheduleFiring]:
        """One firing pass; raises what the queue raised."""
        lead = firing_lead(self.leads())
        batch = self.batch
        fired = self.run_queue(lambda q: q.fire_due_schedules(limit=batch, lead_s=lead))
        metrics.SCHEDULE_OCCURRENCES.labels("enqueued").inc(sum(len(f.job_ids) for f in fired))
        metrics.SCHEDULE_OCCURRENCES.labels("skipped").inc(sum(f.skipped for f in fired))
        queues = {f.queue for f in fired if f.job_ids}
        if queues:
            self.notify(queues)
        return fired

    def loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                more = len(self.fire_once()) >= self.batch
            except Exception as exc:  # the next pass retries; the loop must not die
                log.warning("firing schedules failed: %s", mask_dsn(str(exc)).strip())
                more = False
            if not more:  # a full batch: more are due, go on at once
                stop.wait(self.interval_s)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.loop, args=(stop,), name="schedules", daemon=True)
        thread.start()
        return thread

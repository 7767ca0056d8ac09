"""Fleet-wide upkeep every worker takes its turn at: the reaper (lapsed
leases back through the retry path), retention (finished jobs past
`--retention` deleted), the schedules' firing pass (due occurrences
become jobs) and the dashboard's rollup (finished jobs folded into
per-minute counters, depth sampled once a minute).

Started by `corral.worker.runtime` as the `reaper`, `retention`,
`schedules` and `rollup` tasks. Reaper, retention and rollup passes are one
at a time across the fleet: the queue takes an advisory lock and a worker
that finds it held skips its turn. Firing passes run on every worker at once: each locks the
due schedules it takes (`FOR UPDATE SKIP LOCKED`) and the occurrences
ledger makes each occurrence one job whoever fires it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from corral.queue.dsn import scrub_password
from corral.worker._queue import QueueSession, RemovedError
from corral.worker.config import WorkerSettings
from corral.worker.metrics import WorkerMetrics

if TYPE_CHECKING:
    from corral.queue.schedules import ScheduleSpec

log = logging.getLogger("corral.worker")

__all__ = ["declare_schedules", "fire_schedules", "reap", "retain", "rollup", "tasks"]

REAPER_PERIOD_S = 5.0
RETENTION_FIRST_S = 5.0  # first retention pass this long after start
RETENTION_PERIOD_S = 60.0  # then one pass a minute (per worker; one runs at a time)
RETENTION_BATCH = 1000  # rows per DELETE: short statements, short locks
_BETWEEN_BATCHES_S = 0.01
ROLLUP_FIRST_S = 2.0  # first rollup this long after start
ROLLUP_PERIOD_S = 20.0  # then every 20 s or so: every minute gets its depth sample
ROLLUP_BATCH = 10_000  # counts rows a rollup statement folds (a statement's jobs each)
SCHEDULES_PERIOD_S = 1.0  # a firing pass a second, plus up to 20% jitter
SCHEDULES_BATCH = 100  # due schedules one pass takes at most


def tasks(
    session: QueueSession, settings: WorkerSettings, metrics: WorkerMetrics,
    found: Callable[[], None],
) -> list[tuple[Coroutine[Any, Any, None], str]]:  # fmt: skip
    """The upkeep tasks a worker runs, with their names; `found()` wakes its
    dispatcher when a pass made jobs claimable."""
    url = settings.database_url
    runs = [
        (reap(session, found), "reaper"),
        (fire_schedules(session, metrics, found, url), "schedules"),
        (rollup(session, url), "rollup"),
    ]
    if settings.retention_s > 0:
        runs.append((retain(session, settings.retention_s, url), "retention"))
    return runs


async def reap(session: QueueSession, found: Callable[[], None]) -> None:
    """Every few seconds, send jobs whose lease lapsed back for retry;
    `found()` wakes the dispatcher when there were some."""
    while True:
        await asyncio.sleep(REAPER_PERIOD_S)
        try:
            reaped = await session.reap()
        except Exception as exc:
            log.warning("reaper pass failed: %s", exc)
            continue
        if reaped:
            log.info("reaper: %d job(s) with lapsed leases sent back for retry", reaped)
            found()


async def _in_batches(what: str, batch: Callable[[], Awaitable[bool]], database_url: str) -> None:
    """One pass: `batch()` again while it says a full batch was done. Between
    batches the heartbeat and failures get the control connection. A failure
    ends the pass with a warning naming `what` (no password); the worker's
    removal is raised, for the runtime to act on."""
    try:
        while await batch():
            await asyncio.sleep(_BETWEEN_BATCHES_S)
    except RemovedError:
        raise
    except Exception as exc:
        log.warning("%s pass failed: %s", what, scrub_password(str(exc), database_url))


async def retain(session: QueueSession, retention_s: float, database_url: str) -> None:
    """Delete finished jobs older than `retention_s` seconds, a batch at a time."""
    await asyncio.sleep(RETENTION_FIRST_S)
    while True:
        total = 0

        async def purge() -> bool:
            nonlocal total
            deleted = await session.purge_finished_batch(retention_s, RETENTION_BATCH)
            if deleted is None:
                return False  # another worker is purging
            total += deleted
            return deleted >= RETENTION_BATCH

        await _in_batches("retention", purge, database_url)
        if total:
            log.info("retention: deleted %d finished job(s) older than %gs", total, retention_s)
        await asyncio.sleep(RETENTION_PERIOD_S)


async def rollup(session: QueueSession, database_url: str) -> None:
    """Every 20 s or so, fold the jobs finished since into the dashboard's
    per-minute counters, a batch at a time, and sample each queue's depth
    once a minute, so the charts have history whether or not a dashboard
    runs."""
    await asyncio.sleep(ROLLUP_FIRST_S)
    while True:
        try:
            total = 0
            while True:
                folded = await session.rollup_throughput(ROLLUP_BATCH)
                total += folded
                if folded < ROLLUP_BATCH:
                    break  # caught up, or another worker is rolling up
                # Between batches the heartbeat and failures get the control
                # connection.
                await asyncio.sleep(_BETWEEN_BATCHES_S)
            log.debug("rollup: %d finished job(s) counted", total)
        except RemovedError:
            raise
        except Exception as exc:
            log.warning("rollup pass failed: %s", scrub_password(str(exc), database_url))
        await asyncio.sleep(ROLLUP_PERIOD_S * random.uniform(1.0, 1.2))


async def fire_schedules(
    session: QueueSession, metrics: WorkerMetrics, found: Callable[[], None], database_url: str
) -> None:
    """Every second or so, turn due schedule occurrences into jobs; `found()`
    wakes the dispatcher when some were enqueued. A pass that finds nothing
    due is one cheap indexed statement."""

    async def fire() -> bool:
        fired = await session.fire_schedules(SCHEDULES_BATCH, 0.0)
        enqueued = sum(len(f.job_ids) for f in fired)
        metrics.count_occurrences("enqueued", enqueued)
        metrics.count_occurrences("skipped", sum(f.skipped for f in fired))
        if enqueued:
            log.debug("schedules: %d job(s) enqueued", enqueued)
            found()
        return len(fired) >= SCHEDULES_BATCH

    while True:
        await asyncio.sleep(SCHEDULES_PERIOD_S * random.uniform(1.0, 1.2))
        await _in_batches("schedules", fire, database_url)


async def declare_schedules(
    session: QueueSession, specs: Iterable[ScheduleSpec], database_url: str
) -> None:
    """Upsert the schedules the loaded handler modules declare
    (`@corral.handler(..., schedule=...)`, `corral.schedule`) at start-up:
    every worker converges the database on them; an unchanged one keeps its
    place. One that fails (a queue this worker does not serve) is logged and
    the worker runs on."""
    for spec in specs:
        try:
            changed = await session.declare_schedule(spec)
        except Exception as exc:  # removal included: the heartbeat acts on it
            text = scrub_password(str(exc), database_url)
            log.warning("schedule %s (%s) not declared: %s", spec.name, spec.describe(), text)
            continue
        if changed:
            log.info("schedule %s declared: %s", spec.name, spec.describe())

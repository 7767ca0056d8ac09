"""The claim loop: jobs in one statement whenever the queue may have some,
never more than the free slots, sized by `corral.worker.claimsize` (small
while the queue is shallow, growing to the cap while it is deep); and the
listener that says when.

Started by `corral.worker.runtime` as the `dispatcher` and `listener` tasks.
The dispatcher claims through `QueueSession.claim`, starts each job with
`corral.worker.jobs.Jobs.start`, and returns when the worker stops accepting
work (a drain began); the runtime then finishes the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from corral.queue import ConnectionLost
from corral.queue.dsn import scrub_password
from corral.worker._queue import QueueSession
from corral.worker.claimsize import ClaimSize
from corral.worker.drain import Lifecycle
from corral.worker.jobs import Jobs
from corral.worker.metrics import WorkerMetrics

log = logging.getLogger("corral.worker")

__all__ = ["dispatch", "listen"]

_LISTEN_WAIT_S = 60.0  # one wait for NOTIFY; the dispatcher polls meanwhile anyway
_RECONNECT_AFTER_S = 1.0


async def dispatch(
    session: QueueSession,
    jobs: Jobs,
    lifecycle: Lifecycle,
    metrics: WorkerMetrics,
    wake: asyncio.Event,
    *,
    concurrency: int,
    batch: int,
    poll_s: float,
) -> None:
    """Claim and start jobs while the worker accepts them. Sleeps until
    NOTIFY (`wake`), a freed slot, or the polling fallback (`poll_s`)."""
    running = jobs.running
    stuck = jobs.stuck  # threads of sync handlers past their timeout hold slots too
    slot_freed = jobs.slot_freed
    start_job = jobs.start
    size = ClaimSize(batch)
    outage_logged = False
    while lifecycle.accepting:
        free = concurrency - len(running) - len(stuck)
        if free <= 0:
            slot_freed.clear()
            await slot_freed.wait()
            continue
        wake.clear()
        asked = size.ask(free, job_s=jobs.run_s)
        sent = time.perf_counter()
        try:
            claimed = await session.claim(asked)
        except ConnectionLost as exc:
            # The database is away (a restart, a failover): the jobs held
            # go on, and their results wait in the buffer; claim again once
            # it answers. The heartbeat decides when waiting is pointless.
            if not outage_logged:
                log.warning(
                    "claim failed, the database connection is lost; retrying: %s",
                    scrub_password(str(exc).strip(), session.settings.database_url),
                )
            outage_logged = True
            await asyncio.sleep(session.backoff())
            continue
        outage_logged = False
        size.round_trip(time.perf_counter() - sent)
        size.claimed(asked, len(claimed))
        if not lifecycle.accepting:
            # Drain began while the claim was in flight: run what we got
            # (it is ours now) rather than leaving it leased.
            wall = time.time()
            for job in claimed:
                start_job(job, wall)
            return
        if claimed:
            metrics.claim_batch.observe(len(claimed))
            wall = time.time()
            for job in claimed:
                start_job(job, wall)
            if len(claimed) == asked:
                # A full batch: more are probably waiting. Let the jobs
                # just started run (and free their slots) first.
                await asyncio.sleep(0)
                continue
        # Queue empty (or nearly): sleep until NOTIFY, a slot frees up
        # after a full claim, or the polling fallback.
        # (asyncio.timeout: no task per wait, and no cancellation lost as
        # wait_for can lose one on Python 3.11)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(poll_s):
                await wake.wait()


async def listen(session: QueueSession, wake: asyncio.Event, database_url: str) -> None:
    """Wake the dispatcher when a NOTIFY names one of this worker's queues;
    reconnect the LISTEN connection when it breaks.

    Each time LISTEN takes effect (the connection opens behind the first
    claim, or again after a break) the dispatcher is woken once: a job
    enqueued before then sent its NOTIFY to nobody, and would otherwise wait
    for the next poll."""
    with contextlib.suppress(Exception):  # failing, it is reopened below
        await session.listen()
        wake.set()
    while True:
        try:
            if await session.wait_for_jobs(_LISTEN_WAIT_S):
                wake.set()
        except Exception as exc:
            # The dispatcher still polls every poll_interval_s meanwhile.
            log.warning(
                "LISTEN connection lost, reconnecting (polling meanwhile): %s",
                scrub_password(str(exc).strip(), database_url),
            )
            await asyncio.sleep(_RECONNECT_AFTER_S)
            with contextlib.suppress(Exception):
                await session.reconnect_listener()
                wake.set()

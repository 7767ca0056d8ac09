"""The table of the jobs a worker holds (corral.worker.jobs.Jobs.running),
keyed by job id. A job whose lease lapsed while it still ran here can be
claimed again by this same worker: the earlier run's outcome (its completion
refused, its failure recorded or not) must not remove the new run's entry,
or the new run's lease would go unrenewed, its timeout unwatched and its
slot counted free."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from corral.queue import ClaimedJob, FailureReason
from corral.worker.completions import CompletionBuffer
from corral.worker.handlers import HandlerRegistry
from corral.worker.jobs import Jobs
from corral.worker.metrics import WorkerMetrics

_NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class _Session:
    async def fail(
        self, job: ClaimedJob, reason: FailureReason, error: str, *, retry: bool
    ) -> None:
        return None

    async def release(self, jobs: list[ClaimedJob]) -> None:
        return None

    def leases_lapsed(self) -> bool:
        return False

    def backoff(self) -> float:
        return 0.0


def _claimed(token: int) -> ClaimedJob:
    return ClaimedJob(1, "wait", "q", {}, 0, None, token, 3, token, _NOW, _NOW, _NOW)


def _jobs(handler: Any) -> Jobs:
    registry = HandlerRegistry()
    registry.register("wait", handler)
    return Jobs(registry, WorkerMetrics(dict), CompletionBuffer(10), _Session(), 60.0)


def test_an_earlier_runs_written_completion_leaves_the_new_runs_entry() -> None:
    async def scenario() -> None:
        release = asyncio.Event()

        async def wait(job: Any) -> None:
            await release.wait()

        jobs = _jobs(wait)
        first, again = _claimed(7), _claimed(8)
        jobs.start(first, time.time())
        jobs.start(again, time.time())  # claimed again: the first run's lease lapsed
        jobs.written([first])  # the first run's completion (refused by its lease)
        assert jobs.running[1].job is again and jobs.busy == 1
        jobs.written([again])
        assert jobs.running == {}
        release.set()
        await asyncio.sleep(0)

    asyncio.run(scenario())


def test_an_earlier_runs_failure_leaves_the_new_runs_entry() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()
        runs = 0

        async def wait(job: Any) -> None:
            nonlocal runs
            runs += 1
            if runs == 1:
                await gate.wait()
                raise RuntimeError("the first run fails late")
            await asyncio.Event().wait()  # the second run holds on

        jobs = _jobs(wait)
        first, again = _claimed(7), _claimed(8)
        jobs.start(first, time.time())
        await asyncio.sleep(0)
        jobs.start(again, time.time())
        await asyncio.sleep(0)
        gate.set()
        for _ in range(5):  # the first run fails, its failure is recorded
            await asyncio.sleep(0)
        assert 1 in jobs.running and jobs.running[1].job is again
        for r in list(jobs.running.values()):
            if r.task is not None:
                r.task.cancel()
        await asyncio.sleep(0)

    asyncio.run(scenario())

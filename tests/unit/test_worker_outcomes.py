"""Every job a worker holds ends with an outcome that frees its slot
(corral.worker.jobs): a completion, a failure recorded, or a hand-back. Not
a result, an error or a handler that misbehaves can leave a job held for
ever (its lease renewed by every heartbeat, its slot lost, a drain waiting
on it)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest

from corral.queue import ClaimedJob, FailureReason
from corral.worker import jobs as jobs_module
from corral.worker.completions import CompletionBuffer
from corral.worker.handlers import HandlerRegistry
from corral.worker.jobs import Jobs, Running
from corral.worker.metrics import WorkerMetrics

_NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class _Session:
    def __init__(self) -> None:
        self.failed: list[tuple[int, FailureReason, str]] = []
        self.released: list[int] = []

    async def fail(
        self, job: ClaimedJob, reason: FailureReason, error: str, *, retry: bool
    ) -> None:
        self.failed.append((job.id, reason, error))

    async def release(self, jobs: list[ClaimedJob]) -> None:
        self.released += [job.id for job in jobs]

    def leases_lapsed(self) -> bool:
        return False

    def backoff(self) -> float:
        return 0.0


def _claimed(job_id: int, kind: str = "job") -> ClaimedJob:
    return ClaimedJob(job_id, kind, "q", {}, 0, None, 1, 3, job_id, _NOW, _NOW, _NOW)


def _jobs(session: _Session, **handlers: Any) -> Jobs:
    registry = HandlerRegistry()
    for kind, fn in handlers.items():
        registry.register(kind, fn)
    return Jobs(registry, WorkerMetrics(dict), CompletionBuffer(10), session, 60.0)


async def _settle(jobs: Jobs) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
    if jobs._io_tasks:
        await asyncio.gather(*jobs._io_tasks)


def test_a_result_that_cannot_be_kept_fails_the_job_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuses(claimed: ClaimedJob, result: Any) -> Any:
        raise RuntimeError("no way to convert it")

    monkeypatch.setattr(jobs_module, "result_value", refuses)

    async def scenario() -> tuple[Jobs, _Session]:
        async def job(_: Any) -> dict[str, int]:
            await asyncio.sleep(0)
            return {"a": 1}

        session = _Session()
        jobs = _jobs(session, job=job)
        jobs.start(_claimed(1), time.time())
        await _settle(jobs)
        return jobs, session

    jobs, session = asyncio.run(scenario())
    assert jobs.running == {} and len(jobs.buffer) == 0
    ((job_id, reason, error),) = session.failed
    assert (job_id, reason) == (1, FailureReason.RESULT)
    assert "RuntimeError: no way to convert it" in error


def test_the_watchdog_forgets_a_job_whose_task_ended_in_an_error_without_an_outcome() -> None:
    async def scenario() -> Jobs:
        async def died() -> None:
            raise RuntimeError("lost its outcome")

        jobs = _jobs(_Session())
        task = asyncio.ensure_future(died())
        await asyncio.sleep(0)
        now = time.monotonic()
        jobs.running[1] = Running(_claimed(1), task, now - 1, now - 2)  # past its timeout
        watchdog = asyncio.ensure_future(jobs.watchdog())
        await asyncio.sleep(0.3)
        watchdog.cancel()
        return jobs

    assert asyncio.run(scenario()).running == {}


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


def test_an_error_whose_str_raises_is_recorded_as_an_exception_all_the_same() -> None:
    async def scenario() -> tuple[Jobs, _Session]:
        async def job(_: Any) -> None:
            await asyncio.sleep(0)
            raise _Unprintable()

        session = _Session()
        jobs = _jobs(session, job=job)
        jobs.start(_claimed(1), time.time())
        await _settle(jobs)
        return jobs, session

    jobs, session = asyncio.run(scenario())
    assert jobs.running == {}
    ((_, reason, error),) = session.failed
    assert reason == FailureReason.EXCEPTION
    assert "_Unprintable: <str() failed: RuntimeError: str() of this exception fails>" in error


def test_a_handler_that_ignores_its_cancellation_does_not_hold_back_the_hand_back() -> None:
    async def scenario() -> tuple[Jobs, _Session, bool]:
        stop = asyncio.Event()

        async def hold(_: Any) -> None:
            await asyncio.sleep(3600)

        async def stubborn(_: Any) -> None:
            while not stop.is_set():
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue

        session = _Session()
        jobs = _jobs(session, hold=hold, stubborn=stubborn)
        for job_id in (1, 2):
            jobs.start(_claimed(job_id, "hold"), time.time())
        jobs.start(_claimed(3, "stubborn"), time.time())
        await asyncio.sleep(0)
        await asyncio.wait_for(jobs.hand_back(wait_s=0.05), 5)
        lingering = [t for t in jobs.lingering if not t.done()]
        stop.set()
        lingering[0].cancel()
        await asyncio.gather(*lingering, return_exceptions=True)
        return jobs, session, len(lingering) == 1

    jobs, session, one_lingered = asyncio.run(scenario())
    assert sorted(session.released) == [1, 2, 3]  # the stubborn one's job too
    assert jobs.running == {} and one_lingered
    assert session.failed == []  # a hand-back is not an attempt

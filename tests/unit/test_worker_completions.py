"""The completion buffer and its flusher (corral.worker.completions): results
gather, a full batch or the first job wakes the flusher, a failed write is
retried first, refused completions count as lost leases."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest

from corral.queue import ClaimedJob, ConnectionLost, DataRefused, FailureReason
from corral.worker.completions import CompletionBuffer, Flusher
from corral.worker.metrics import WorkerMetrics

_NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def _job(job_id: int, queue: str = "q") -> ClaimedJob:
    return ClaimedJob(job_id, "noop", queue, {}, 0, None, 1, 3, 7, _NOW, _NOW, _NOW)


class FakeSession:
    def __init__(
        self,
        *,
        fail_first: bool = False,
        lost: list[int] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.calls: list[tuple[list[int], dict[int, Any] | None]] = []
        self.fail_first = fail_first
        self.lost = lost or []
        self.error = error or RuntimeError("statement timeout")

    def backoff(self) -> float:
        return 0.0

    async def complete_many(
        self, jobs: list[ClaimedJob], results: dict[int, Any] | None = None
    ) -> list[int]:
        self.calls.append(([j.id for j in jobs], results))
        if self.fail_first and len(self.calls) == 1:
            raise self.error
        return self.lost

    async def fail(
        self, job: ClaimedJob, reason: FailureReason, error: str, *, retry: bool = True
    ) -> None:
        # Only a refused result fails a job (RefusingSession); these batches have none.
        raise AssertionError(f"job {job.id} failed unexpectedly: {reason} {error}")


def test_the_first_job_and_a_full_batch_wake_the_flusher_and_results_are_kept() -> None:
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=3)
        buffer.add(_job(1), {"ok": True})
        assert buffer.flush_now.is_set()
        buffer.flush_now.clear()
        buffer.add(_job(2), None)
        assert not buffer.flush_now.is_set()
        buffer.add(_job(3), None)
        assert buffer.flush_now.is_set() and len(buffer) == 3
        done, results = buffer.take()
        assert [j.id for j in done] == [1, 2, 3] and results == {1: {"ok": True}}
        assert len(buffer) == 0 and buffer.results == {}

    asyncio.run(scenario())


def test_a_failed_write_puts_the_batch_back_in_front_and_is_retried() -> None:
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=10)
        session = FakeSession(fail_first=True)
        freed: list[list[int]] = []
        flusher = Flusher(
            buffer, session, WorkerMetrics(dict), lambda d: freed.append([j.id for j in d]), 0
        )
        buffer.add(_job(1), 41)
        await flusher.flush_once()
        assert freed == [] and [j.id for j in buffer.done] == [1] and buffer.flush_now.is_set()
        assert flusher.stalled_for() > 0  # /healthz fails once this passes its limit
        buffer.add(_job(2), None)
        await flusher.flush_once()
        assert session.calls[-1] == ([1, 2], {1: 41})
        assert freed == [[1, 2]] and buffer.flushed.is_set()
        assert flusher.stalled_for() == 0

    asyncio.run(scenario())


def test_a_lost_connection_keeps_the_results_for_the_next_write_and_the_flusher_goes_on() -> None:
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=10)
        session = FakeSession(fail_first=True, error=ConnectionLost("server closed the connection"))
        freed: list[list[int]] = []
        flusher = Flusher(
            buffer, session, WorkerMetrics(dict), lambda d: freed.append([j.id for j in d]), 0
        )
        buffer.add(_job(1), {"n": 1})
        await flusher.flush_once()  # no exception: the worker does not exit
        assert freed == [] and [j.id for j in buffer.done] == [1] and buffer.flush_now.is_set()
        await flusher.flush_once()
        assert session.calls[-1] == ([1], {1: {"n": 1}}) and freed == [[1]]

    asyncio.run(scenario())


def test_completions_refused_for_a_lost_lease_are_counted_and_their_slots_freed() -> None:
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=10)
        metrics = WorkerMetrics(dict)
        freed: list[int] = []
        flusher = Flusher(
            buffer, FakeSession(lost=[2]), metrics, lambda d: freed.extend(j.id for j in d), 0
        )
        buffer.add(_job(1), None)
        buffer.add(_job(2, queue="mail"), None)
        await flusher.flush_once()
        assert freed == [1, 2]
        assert metrics.jobs == {("mail", "lease_lost"): 1}

    asyncio.run(scenario())


def test_written_out_returns_once_the_flusher_has_written_everything() -> None:
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=10)
        session = FakeSession()
        flusher = Flusher(buffer, session, WorkerMetrics(dict), lambda d: None, 0.001)
        task = asyncio.create_task(flusher.run())
        buffer.add(_job(1), None)
        await asyncio.wait_for(buffer.written_out(), 5)
        task.cancel()
        assert session.calls == [([1], {})]

    asyncio.run(scenario())


class RefusingSession:
    """A database that refuses any batch holding a result of job 2 (as it
    refuses a string it cannot store), and accepts everything else."""

    def __init__(self) -> None:
        self.stored: dict[int, Any] = {}
        self.failed: dict[int, tuple[FailureReason, str, bool]] = {}

    async def complete_many(
        self, jobs: list[ClaimedJob], results: dict[int, Any] | None = None
    ) -> list[int]:
        results = results or {}
        if 2 in results:
            raise DataRefused("invalid byte sequence for encoding UTF8")
        for job in jobs:
            self.stored[job.id] = results.get(job.id)
        return []

    async def fail(
        self, job: ClaimedJob, reason: FailureReason, error: str, *, retry: bool = True
    ) -> None:
        self.failed[job.id] = (reason, error, retry)

    def backoff(self) -> float:
        return 0.0


def test_a_refused_result_costs_its_own_job_its_result_never_the_batch() -> None:
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=10)
        for job_id in (1, 2, 3):
            buffer.add(_job(job_id), {"n": job_id})
        session = RefusingSession()
        freed: list[int] = []
        flusher = Flusher(
            buffer, session, WorkerMetrics(dict), lambda d: freed.extend(j.id for j in d), 0
        )
        await flusher.flush_once()
        assert session.stored == {1: {"n": 1}, 3: {"n": 3}}
        reason, error, retry = session.failed[2]  # dead as `result`, not retried
        assert (reason, retry) == (FailureReason.RESULT, False)
        assert (
            error
            == "the database refused the handler's result: invalid byte sequence for encoding UTF8"
        )
        assert sorted(freed) == [1, 2, 3]  # every slot free, nothing left to retry
        assert buffer.done == []

    asyncio.run(scenario())


class BreakingSession(RefusingSession):
    """RefusingSession whose connection breaks (or which fails otherwise) at
    the `breaks_at`-th call, after the refused batch: the one-by-one pass
    has written some jobs when it happens."""

    def __init__(self, error: Exception, breaks_at: int) -> None:
        super().__init__()
        self.error, self.breaks_at, self.calls = error, breaks_at, 0

    async def complete_many(
        self, jobs: list[ClaimedJob], results: dict[int, Any] | None = None
    ) -> list[int]:
        self.calls += 1
        if self.calls == self.breaks_at:
            raise self.error
        return await super().complete_many(jobs, results)


@pytest.mark.parametrize(
    "error", [ConnectionLost("server closed the connection"), RuntimeError("statement timeout")]
)
def test_a_write_that_breaks_during_the_one_by_one_pass_keeps_only_what_is_unwritten(
    error: Exception,
) -> None:
    # Batch [1, 2, 3, 4] refused (job 2's result); one by one: 1 written, 2
    # failed as `result`, then the write of 3 breaks. 1 and 2 are done and
    # their slots free; only 3 and 4 wait for the next write, and the
    # flusher goes on (no exception: the worker does not exit).
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=10)
        for job_id in (1, 2, 3, 4):
            buffer.add(_job(job_id), {"n": job_id})
        session = BreakingSession(error, breaks_at=4)  # the batch, 1, 2 (refused), then 3
        freed: list[int] = []
        metrics = WorkerMetrics(dict)
        flusher = Flusher(buffer, session, metrics, lambda d: freed.extend(j.id for j in d), 0)
        await flusher.flush_once()
        assert sorted(freed) == [1, 2]
        assert [j.id for j in buffer.done] == [3, 4] and buffer.results == {
            3: {"n": 3},
            4: {"n": 4},
        }
        assert buffer.flush_now.is_set()
        await flusher.flush_once()
        assert sorted(freed) == [1, 2, 3, 4] and session.stored == {
            1: {"n": 1},
            3: {"n": 3},
            4: {"n": 4},
        }
        assert ("q", "lease_lost") not in metrics.jobs  # nothing written twice, so nothing refused

    asyncio.run(scenario())


def test_the_drain_waits_for_the_batch_being_written() -> None:
    # The flusher took the last batch and its write is still on the wire:
    # nothing is left in the buffer, yet the drain must not report it written
    # (the worker would exit and the jobs run again).
    async def scenario() -> None:
        buffer = CompletionBuffer(batch=10)
        answer = asyncio.Event()

        class SlowSession(FakeSession):
            async def complete_many(
                self, jobs: list[ClaimedJob], results: dict[int, Any] | None = None
            ) -> list[int]:
                await answer.wait()
                return await super().complete_many(jobs, results)

        freed: list[int] = []
        flusher = Flusher(
            buffer, SlowSession(), WorkerMetrics(dict), lambda d: freed.extend(j.id for j in d), 0
        )
        buffer.add(_job(1), None)
        writing = asyncio.ensure_future(flusher.flush_once())
        await asyncio.sleep(0)
        assert len(buffer) == 0 and buffer.writing == 1
        drained = asyncio.ensure_future(buffer.written_out(timeout_s=5))
        await asyncio.sleep(0.05)
        assert not drained.done() and freed == []
        answer.set()
        await asyncio.wait_for(drained, 1)
        await writing
        assert freed == [1] and buffer.writing == 0

    asyncio.run(scenario())

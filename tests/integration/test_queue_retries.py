"""Retries with back-off, dead jobs, requeue and cancel."""

from __future__ import annotations

import datetime as dt

import pytest

from corral.queue import (
    ClaimedJob,
    Enrollment,
    Failure,
    FailureReason,
    JobState,
    JobStateError,
    Queue,
)
from tests.integration._enrolled import enroll, run_sql


def _claim_one(queue: Queue, worker: Enrollment) -> ClaimedJob:
    [job] = queue.claim(worker.worker_id, worker.credential, ["q"])
    return job


def _make_due(url: str, job_id: int) -> None:
    run_sql(url, "UPDATE corral_jobs SET run_at = now() WHERE id = %s", [job_id])


def test_a_failed_job_is_retried_after_an_exponential_backoff_with_jitter(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("q", retry_base_s=10, retry_max_s=1000)
        job_id = queue.enqueue("noop", queue="q", max_attempts=10)
        worker = enroll(queue)
        delays = []
        for _ in range(4):
            job = _claim_one(queue, worker)
            before = dt.datetime.now(dt.UTC)
            assert queue.fail_many([Failure(job, "boom")]) == []
            state = queue.get_job(job_id)
            assert state.state == JobState.SCHEDULED
            delays.append((state.run_at - before).total_seconds())
            _make_due(database_url, job_id)
    # attempt n waits base * 2^(n-1), scaled by a jitter factor in [0.5, 1].
    for attempt, delay in enumerate(delays, start=1):
        full = 10 * 2 ** (attempt - 1)
        assert full * 0.5 - 1 <= delay <= full + 1, (attempt, delay)


def test_a_job_out_of_attempts_is_dead_with_its_last_error_kept(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("noop", queue="q", max_attempts=2)
        worker = enroll(queue)
        queue.fail_many([Failure(_claim_one(queue, worker), "first", FailureReason.TIMEOUT)])
        _make_due(database_url, job_id)
        queue.fail_many([Failure(_claim_one(queue, worker), "KeyError: 'x'")])
        job = queue.get_job(job_id)
    assert job.state == JobState.DEAD
    assert (job.attempt, job.last_error, job.last_error_reason) == (2, "KeyError: 'x'", "exception")


@pytest.mark.parametrize("reason", [FailureReason.PAYLOAD, FailureReason.UNKNOWN_KIND])
def test_a_failure_a_retry_cannot_fix_goes_straight_to_dead_with_its_reason(
    database_url: str, reason: FailureReason
) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("noop", queue="q", max_attempts=5)
        worker = enroll(queue)
        failure = Failure(_claim_one(queue, worker), f"cannot run: {reason}", reason, retry=False)
        queue.fail_many([failure])
        job = queue.get_job(job_id)
    assert (job.state, job.attempt, job.last_error_reason) == (JobState.DEAD, 1, reason)


def test_requeue_puts_a_dead_job_back_with_a_fresh_attempt_budget(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("noop", queue="q", max_attempts=1)
        worker = enroll(queue)
        queue.fail_many([Failure(_claim_one(queue, worker), "boom")])
        assert queue.get_job(job_id).state == JobState.DEAD
        job = queue.requeue(job_id)
        assert (job.state, job.attempt, job.max_attempts) == (JobState.PENDING, 0, 1)
        again = _claim_one(queue, worker)
        assert again.id == job_id
        with pytest.raises(JobStateError, match="only dead, cancelled or expired"):
            queue.requeue(job_id)


def test_cancel_stops_a_pending_job_but_refuses_a_running_one(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        pending = queue.enqueue("noop", queue="q")
        running = queue.enqueue("noop", queue="other")
        worker = enroll(queue, queues=["other"])
        queue.claim(worker.worker_id, worker.credential, ["other"])
        assert queue.cancel(pending).state == JobState.CANCELLED
        with pytest.raises(JobStateError, match="is running"):
            queue.cancel(running)
        assert queue.claim(worker.worker_id, worker.credential, ["q"]) == []


def test_a_queue_default_attempt_budget_applies_when_the_job_sets_none(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("q", max_attempts=7)
        assert queue.get_job(queue.enqueue("noop", queue="q")).max_attempts == 7
        assert queue.get_job(queue.enqueue("noop", queue="q", max_attempts=2)).max_attempts == 2

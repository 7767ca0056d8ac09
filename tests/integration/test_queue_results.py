"""Job results: what a handler returns is kept with the finished job."""

from __future__ import annotations

import pytest

from corral.queue import InvalidJob, JobSpec, JobState, Queue
from tests.integration._enrolled import enroll, run_sql


def test_completing_with_results_keeps_each_jobs_result_and_jobs_without_one_keep_none(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        queue.enqueue_many([JobSpec("http", queue="q") for _ in range(3)])
        worker = enroll(queue)
        a, b, c = queue.claim(worker.worker_id, worker.credential, ["q"], batch=3)
        check = {"status": 200, "latency_ms": 1.5, "cert_expires_in_days": None}
        assert queue.complete_many([a, b, c], {a.id: check, c.id: [1, "two"]}) == []
        assert queue.get_job(a.id).result == check
        assert queue.get_job(b.id).result is None
        assert queue.get_job(c.id).result == [1, "two"]
        listed = {j.id: j.result for j in queue.list_jobs(state=JobState.COMPLETED)}
        assert listed == {a.id: check, b.id: None, c.id: [1, "two"]}


def test_a_result_is_fenced_like_any_completion(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("http", queue="q")
        worker = enroll(queue)
        [held] = queue.claim(worker.worker_id, worker.credential, ["q"])
        queue.release_many([held])
        assert queue.complete_many([held], {held.id: {"status": 200}}) == [job_id]
        assert queue.get_job(job_id).state == JobState.PENDING
        assert run_sql(database_url, "SELECT count(*) FROM corral_jobs_finished") == [(0,)]


def test_a_result_json_cannot_hold_is_refused_naming_the_job_and_nothing_is_written(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("http", queue="q")
        worker = enroll(queue)
        [held] = queue.claim(worker.worker_id, worker.credential, ["q"])
        with pytest.raises(InvalidJob, match=f"result of job {job_id} is not JSON"):
            queue.complete_many([held], {held.id: float("nan")})
        assert queue.get_job(job_id).state == JobState.RUNNING

"""Retention: finished jobs are kept for a while, then deleted in batches."""

from __future__ import annotations

import pytest

from corral.queue import Failure, JobNotFound, JobSpec, Queue
from tests.integration._queue import enroll, run_sql


def test_retention_deletes_finished_jobs_older_than_the_limit_in_batches(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(25)])
        worker = enroll(queue)
        jobs = queue.claim(worker.worker_id, worker.credential, ["q"], batch=25)
        queue.complete_many(jobs)
        old = [j.id for j in jobs[:20]]
        run_sql(
            database_url,
            "UPDATE corral_jobs_finished SET finished_at = now() - interval '2 days' WHERE id = ANY(%s)",
            [old],
        )
        deleted = queue.purge_finished(older_than_s=86400, batch=7)
        assert deleted == 20
        with pytest.raises(JobNotFound):
            queue.get_job(old[0])
        assert queue.get_job(jobs[-1].id).state == "completed"
    assert run_sql(database_url, "SELECT count(*) FROM corral_jobs") == [(0,)]


def test_a_queue_can_drop_completed_jobs_at_once_but_still_keeps_dead_ones(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("q", keep_completed=False, max_attempts=1)
        done, failed = queue.enqueue("noop", queue="q"), queue.enqueue("noop", queue="q")
        worker = enroll(queue)
        first, second = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2)
        assert queue.complete_many([first]) == []
        queue.fail_many([Failure(second, "boom")])
        with pytest.raises(JobNotFound):
            queue.get_job(done)
        assert queue.get_job(failed).state == "dead"
        assert queue.complete_many([first]) == [done]  # still fenced

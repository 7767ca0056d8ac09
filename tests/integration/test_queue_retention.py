"""Retention: finished jobs are kept for a while, then deleted in batches."""

from __future__ import annotations

import pytest

from corral.queue import Failure, JobNotFound, JobSpec, Queue
from tests.integration._enrolled import enroll, run_sql


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


def _finished_jobs(database_url: str, queue: Queue, n: int, *, aged: int) -> list[int]:
    """`n` completed jobs, the first `aged` of them finished two days ago."""
    queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(n)])
    worker = enroll(queue)
    jobs = queue.claim(worker.worker_id, worker.credential, ["q"], batch=n)
    queue.complete_many(jobs)
    ids = [j.id for j in jobs]
    run_sql(
        database_url,
        "UPDATE corral_jobs_finished SET finished_at = now() - interval '2 days'"
        " WHERE id = ANY(%s)",
        [ids[:aged]],
    )
    return ids


def test_a_retention_batch_deletes_at_most_its_size_and_only_jobs_past_the_limit(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        ids = _finished_jobs(database_url, queue, 12, aged=10)
        assert queue.purge_finished_batch(86400, batch=4) == 4
        assert queue.purge_finished_batch(86400, batch=4) == 4
        assert queue.purge_finished_batch(86400, batch=4) == 2
        assert queue.purge_finished_batch(86400, batch=4) == 0
        assert queue.get_job(ids[-1]).state == "completed"


def test_only_one_process_purges_at_a_time_and_the_others_skip_their_turn(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as first, Queue.connect(database_url) as second:
        _finished_jobs(database_url, first, 5, aged=5)
        with first.conn.transaction():
            # The first purger's transaction is still open: it holds the lock.
            assert first.purge_finished_batch(86400, batch=2) == 2
            assert second.purge_finished_batch(86400, batch=100) is None
        assert second.purge_finished_batch(86400, batch=100) == 3

"""Stats for people and depth for the autoscaler."""

from __future__ import annotations

import datetime as dt

from corral.queue import JobSpec, JobState, Queue
from tests.integration._enrolled import enroll, run_sql


def test_stats_count_jobs_per_queue_and_state_with_the_oldest_wait(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        queue.enqueue_many([JobSpec("noop", queue="a") for _ in range(3)])
        queue.enqueue("noop", queue="b")
        run_sql(
            database_url,
            "UPDATE corral_jobs SET run_at = now() - interval '90 s' WHERE queue = 'a'",
        )
        worker = enroll(queue, queues=["a"])
        queue.complete_many(queue.claim(worker.worker_id, worker.credential, ["a"], batch=1))
        queue.claim(worker.worker_id, worker.credential, ["a"], batch=1)
        queue.pause("b")
        stats = {s.queue: s for s in queue.stats()}
    assert stats["a"].counts == {JobState.PENDING: 1, JobState.RUNNING: 1, JobState.COMPLETED: 1}
    assert stats["a"].oldest_pending_age_s is not None and stats["a"].oldest_pending_age_s >= 89
    assert stats["b"].paused and not stats["a"].paused


def test_depth_counts_work_a_region_can_see_and_stops_at_the_cap(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(5)])
        queue.enqueue_many([JobSpec("noop", queue="q", region="eu") for _ in range(3)])
        queue.enqueue_many([JobSpec("noop", queue="q", region="us") for _ in range(4)])
        queue.enqueue_many([JobSpec("noop", queue="other") for _ in range(6)])
        worker = enroll(queue, region="eu")
        queue.claim(worker.worker_id, worker.credential, ["q"], batch=2)
        eu = queue.depth(["q"], "eu")
        anywhere = queue.depth(["q", "other"], None)
        capped = queue.depth(["q", "other"], "us", cap=10)
    assert (eu.pending, eu.running, eu.capped) == (6, 2, False)
    assert (anywhere.pending, anywhere.running) == (9, 2)
    assert (capped.pending, capped.capped) == (10, True)


def test_depth_counts_due_delayed_jobs_so_an_idle_fleet_still_scales_up(database_url: str) -> None:
    # With no worker claiming, nothing promotes due scheduled jobs to pending:
    # the autoscaler must count them anyway or it would never start a worker.
    with Queue.connect(database_url) as queue:
        soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        queue.enqueue_many([JobSpec("noop", queue="q", run_at=soon) for _ in range(3)])
        assert queue.depth(["q"]).pending == 0
        run_sql(database_url, "UPDATE corral_jobs SET run_at = now() - interval '1 s'")
        assert queue.depth(["q"]).pending == 3

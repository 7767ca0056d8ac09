"""Pause and resume: durable, per queue or all, enqueues keep landing."""

from __future__ import annotations

from corral.queue import JobState, Queue
from tests.integration._enrolled import enroll


def test_a_paused_queue_accepts_enqueues_but_nothing_is_claimed_until_resume(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, queues=["q", "other"])
        state = queue.pause("q", reason="database maintenance")
        assert (state.paused, state.reason) == (True, "database maintenance")
        job_id = queue.enqueue("noop", queue="q")
        other_id = queue.enqueue("noop", queue="other")
        claimed = queue.claim(worker.worker_id, worker.credential, ["q", "other"], batch=10)
        assert [j.id for j in claimed] == [other_id]
        assert queue.get_job(job_id).state == JobState.PENDING
        queue.resume("q")
        assert [j.id for j in queue.claim(worker.worker_id, worker.credential, ["q"])] == [job_id]


def test_a_pause_is_durable_across_connections(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        queue.pause("q", reason="incident 42")
    with Queue.connect(database_url) as fresh:
        [status] = fresh.dispatch_status("q")
        worker = enroll(fresh)
        fresh.enqueue("noop", queue="q")
        assert fresh.claim(worker.worker_id, worker.credential, ["q"]) == []
    assert (status.queue, status.paused, status.reason) == ("q", True, "incident 42")
    assert status.since is not None


def test_pausing_all_queues_stops_every_claim_and_resume_all_clears_each_pause(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, queues=["a", "b"])
        queue.enqueue_many([])
        a, b = queue.enqueue("noop", queue="a"), queue.enqueue("noop", queue="b")
        queue.pause("a", reason="one")
        queue.pause(None, reason="everything")
        assert queue.claim(worker.worker_id, worker.credential, ["a", "b"], batch=10) == []
        queue.resume(None)
        claimed = queue.claim(worker.worker_id, worker.credential, ["a", "b"], batch=10)
        assert not any(s.paused for s in queue.dispatch_status())
    assert sorted(j.id for j in claimed) == [a, b]

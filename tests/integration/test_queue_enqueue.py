"""Enqueue: durable on return, part of the caller's transaction, one round trip in bulk, dedupe."""

from __future__ import annotations

import tempfile

import psycopg
import pytest

from corral.queue import InvalidJob, JobSpec, JobState, Queue
from tests.integration._enrolled import enroll, run_sql


def test_an_enqueued_job_is_committed_when_enqueue_returns(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("email", {"to": "a@example.com"})
        # Another session sees it at once: nothing is left uncommitted.
        rows = run_sql(
            database_url, "SELECT kind, queue, state FROM corral_jobs WHERE id = %s", [job_id]
        )
    assert rows == [("email", "email", "pending")]


def test_a_job_enqueued_in_the_callers_transaction_lands_only_if_it_commits(
    database_url: str,
) -> None:
    with psycopg.connect(database_url) as conn:
        queue = Queue(conn)
        rolled_back = queue.enqueue("email", {"n": 1})
        conn.rollback()
        with conn.transaction():
            committed = queue.enqueue("email", {"n": 2})
            assert run_sql(database_url, "SELECT count(*) FROM corral_jobs") == [(0,)]
    ids = [r[0] for r in run_sql(database_url, "SELECT id FROM corral_jobs")]
    assert ids == [committed]
    assert rolled_back not in ids


def test_bulk_enqueue_of_five_thousand_jobs_is_one_round_trip(database_url: str) -> None:
    specs = [JobSpec("noop", {"i": i}, queue=f"q{i % 3}") for i in range(5000)]
    with Queue.connect(database_url) as queue, tempfile.TemporaryFile("w+") as trace:
        # libpq's protocol trace shows every message the client sends; each
        # round trip ends with one Sync (extended protocol) or Query (simple).
        queue.conn.pgconn.trace(trace.fileno())
        ids = queue.enqueue_many(specs)
        queue.conn.pgconn.untrace()
        trace.seek(0)
        sent = [line.split("\t")[3].strip() for line in trace if "\tF\t" in line]
    assert sum(1 for message in sent if message.startswith(("Sync", "Query"))) == 1
    assert len(ids) == len(set(ids)) == 5000
    assert run_sql(database_url, "SELECT count(*) FROM corral_jobs") == [(5000,)]


def test_bulk_enqueue_returns_ids_in_input_order(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        ids = queue.enqueue_many([JobSpec("noop", {"i": i}) for i in range(50)])
        payloads = [queue.get_job(job_id).payload["i"] for job_id in ids]
    assert payloads == list(range(50))


def test_a_dedupe_key_is_unique_among_unfinished_jobs_only(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        first = queue.enqueue("report", {"day": 1}, dedupe_key="report-day-1")
        again = queue.enqueue("report", {"day": 1}, dedupe_key="report-day-1")
        in_one_batch = queue.enqueue_many(
            [JobSpec("report", dedupe_key="k2"), JobSpec("report", dedupe_key="k2")]
        )
        assert again == first
        assert in_one_batch[0] == in_one_batch[1] != first
        worker = enroll(queue, queues=["report"])
        claimed = queue.claim(worker.worker_id, worker.credential, ["report"], batch=10)
        assert queue.complete_many(claimed) == []
        # Finished: the key is free for a new job.
        later = queue.enqueue("report", {"day": 1}, dedupe_key="report-day-1")
    assert later != first
    assert queue_state(database_url, first) == JobState.COMPLETED


def queue_state(url: str, job_id: int) -> JobState:
    with Queue.connect(url) as queue:
        return queue.get_job(job_id).state


def test_enqueue_rejects_an_out_of_range_priority_naming_the_field(database_url: str) -> None:
    with Queue.connect(database_url) as queue, pytest.raises(InvalidJob, match="priority 5000"):
        queue.enqueue("noop", priority=5000)


def test_a_job_without_a_queue_goes_to_the_queue_named_after_its_kind(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        job = queue.get_job(queue.enqueue("resize-image"))
    assert job.queue == "resize-image"
    assert job.max_attempts == 20


def test_a_payload_that_is_not_json_is_refused_before_anything_is_sent(database_url: str) -> None:
    with Queue.connect(database_url) as queue, pytest.raises(InvalidJob, match="not JSON"):
        queue.enqueue_many([JobSpec("noop"), JobSpec("noop", {"when": object()})])
    assert run_sql(database_url, "SELECT count(*) FROM corral_jobs") == [(0,)]

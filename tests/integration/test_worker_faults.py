"""What a handler or a row can throw at a real `corral worker` that it must
outlive without losing a slot, a job or a drain: a result it cannot convert,
an error it cannot print, a timestamp Python cannot load, more sync handlers
than threads, and a handler that will not stop when its job is handed back.
Every worker connects as the least-privileged worker role, as in a pod."""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from corral import queue
from tests.integration._workers import WorkerProcess, starting_workers, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def start(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """`start(*args)`: worker w1 on queue t, as the worker role, once ready."""
    with starting_workers(database_url, worker_database_url, tmp_path, queues="t") as begin:
        yield lambda *args: begin("w1", *args)


def finished(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state, count(*) FROM corral_jobs_finished GROUP BY 1")
        return {str(state): int(n) for state, n in rows.fetchall()}


def drain(w: WorkerProcess) -> None:
    code, body = w.http("/drain", "POST", {"Authorization": f"Bearer {w.drain_key()}"})
    assert code == 202, body


def test_a_result_that_cannot_be_converted_is_kept_as_a_marker_and_a_drain_still_finishes(
    database_url: str, start: Callable[..., WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        # A result whose repr() raises, and an int past Python's 4,300 digits.
        odd = q.enqueue("unconvertible", {}, queue="t", max_attempts=1)
        big = q.enqueue("unconvertible", {"big_int": True}, queue="t", max_attempts=1)
        w = start()
        wait_until(lambda: finished(database_url) == {"completed": 2}, what="both completed")
        assert q.get_job(odd).result == {"unserializable_result": "<_Detached>"}
        assert q.get_job(big).result == {"unserializable_result": "<int>"}
    assert w.status()["in_flight"] == 0  # no slot kept by either
    drain(w)
    wait_until(lambda: w.status()["state"] == "drained", what="the drain to finish")
    assert w.proc.poll() is None and w.http("/healthz")[0] == 200


def test_an_error_whose_text_cannot_be_read_is_recorded_and_the_job_retried(
    database_url: str, start: Callable[..., WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("unprintable_error", {}, queue="t", max_attempts=2)
        w = start()
        # Its failure is recorded as what it was (not left to the lease).
        job = wait_until(
            lambda: (j := q.get_job(job_id)).last_error_reason is not None and j,
            what="the failure recorded",
        )
    assert (job.attempt, job.last_error_reason) == (1, "exception"), job
    assert "_Unprintable: <str() failed: RuntimeError" in (job.last_error or ""), job
    assert w.proc.poll() is None and w.http("/healthz")[0] == 200


def test_many_sync_jobs_each_get_a_thread_and_none_times_out_waiting_for_one(
    database_url: str, start: Callable[..., WorkerProcess]
) -> None:
    # 300 slots, 300 sync jobs of 1 s with a 1.5 s timeout: each must start
    # in a thread of its own at once, not queue for one of a smaller pool.
    with queue.Queue.connect(database_url) as q:
        q.enqueue_many(
            [queue.JobSpec("blocking", {"sleep_s": 1.0}, queue="t", max_attempts=1)] * 300
        )
    w = start("--concurrency", "300", "--job-timeout", "1.5s")
    done = wait_until(lambda: sum(finished(database_url).values()) == 300 and finished(database_url),
                      90, "all 300 jobs finished")  # fmt: skip
    assert done == {"completed": 300}, w.output()[-3000:]


def test_a_timestamp_python_cannot_load_dead_letters_that_job_and_its_batch_runs(
    database_url: str, start: Callable[..., WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        ids = q.enqueue_many([queue.JobSpec("noop", queue="t") for _ in range(5)])
    # Written past the client (plain SQL): PostgreSQL takes what Python's
    # datetime cannot hold.
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE corral_jobs SET run_at = '-infinity' WHERE id = %s", (ids[2],))
    w = start()
    wait_until(lambda: finished(database_url) == {"completed": 4, "dead": 1}, 60, "every job")
    with psycopg.connect(database_url) as conn:  # not get_job: it would load run_at
        state, attempt, reason, error = conn.execute(
            "SELECT state, attempt, last_error_reason, last_error FROM corral_jobs_finished"
            " WHERE id = %s",
            (ids[2],),
        ).fetchone() or (None, None, None, None)
    assert (state, attempt, reason) == ("dead", 1, "payload")
    assert "run_at cannot be loaded" in (error or ""), error
    assert w.proc.poll() is None and w.http("/healthz")[0] == 200


def test_sigterm_hands_back_every_job_although_one_handler_ignores_its_cancellation(
    database_url: str, start: Callable[..., WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        held = q.enqueue_many([queue.JobSpec("hold", queue="t") for _ in range(3)])
        stubborn = q.enqueue("stubborn", {}, queue="t")
        w = start("--term-grace", "1s")
        wait_until(lambda: w.status()["in_flight"] == 4, what="4 jobs in flight")
        w.signal(signal.SIGTERM)
        # The three that stop when cancelled are back in the queue, unspent,
        # without waiting for the one that does not stop.
        wait_until(lambda: all(q.get_job(i).state == "pending" for i in held), 15, "the hand-back")
        assert {(q.get_job(i).attempt, q.get_job(i).last_error) for i in held} == {(0, None)}
        assert w.wait(30) == 0, w.output()  # not after the handler's hour
        assert q.get_job(stubborn).state == "pending"  # released too
    assert "handed 4 unfinished job(s) back" in w.output()

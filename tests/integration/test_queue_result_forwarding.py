"""Result forwarding: a job that names a result queue has its result
enqueued there (kind "result") by the statement that completes it, so
exactly once: a completion retried after its answer was lost, or one fenced
by a lost lease, forwards nothing more; a failure forwards nothing."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from corral.queue import Failure, InvalidJob, JobSpec, JobState, Queue
from tests.integration._enrolled import enroll, run_sql
from tests.integration._workers import WorkerProcess, mint_token, wait_until


def _forwarded(queue: Queue, name: str = "results") -> list[Any]:
    return sorted(
        (j for j in queue.list_jobs(queue=name, limit=1000)), key=lambda j: j.payload["job_id"]
    )


def test_a_completed_jobs_result_is_enqueued_on_its_result_queue_once(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("http", {"url": "x"}, queue="q", result_queue="results")
        plain = queue.enqueue("http", queue="q")
        worker = enroll(queue)
        held = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2)
        results = {job_id: {"status": 200}, plain: {"status": 204}}
        assert queue.complete_many(held, results, worker=worker) == []
        [forward] = _forwarded(queue)
        assert (forward.kind, forward.queue, forward.state) == ("result", "results", "pending")
        finished_at = dt.datetime.fromisoformat(forward.payload.pop("finished_at"))
        assert abs((finished_at - dt.datetime.now(dt.UTC)).total_seconds()) < 60
        assert forward.payload == {
            "job_id": job_id,
            "kind": "http",
            "queue": "q",
            "attempt": 1,
            "result": {"status": 200},
        }
        # The job without a result queue forwarded nothing anywhere.
        assert run_sql(database_url, "SELECT count(*) FROM corral_jobs WHERE kind = 'result'") == [
            (1,)
        ]


def test_a_completion_retried_after_its_answer_was_lost_forwards_nothing_more(
    database_url: str,
) -> None:
    """The worker's first completion committed but its answer never came
    back (a cut connection): it sends the same completion again, on a new
    connection. The job is finished already, so the retry is rejected and
    the result is not enqueued a second time."""
    with Queue.connect(database_url) as first:
        job_id = first.enqueue("http", queue="q", result_queue="results")
        worker = enroll(first)
        [held] = first.claim(worker.worker_id, worker.credential, ["q"])
        assert first.complete_many([held], {job_id: {"n": 1}}, worker=worker) == []
    with Queue.connect(database_url) as retry:
        assert retry.complete_many([held], {job_id: {"n": 1}}, worker=worker) == [job_id]
        # And the admin's completion path (complete_v1/v2) is held to the same.
        assert retry.complete_many([held], {job_id: {"n": 1}}) == [job_id]
        assert retry.complete_many([held]) == [job_id]
        assert [j.payload["job_id"] for j in _forwarded(retry)] == [job_id]


def test_a_fenced_late_completion_forwards_nothing_and_the_new_holders_forwards_once(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("http", queue="q", result_queue="results")
        late = enroll(queue, name="late")
        [stale] = queue.claim(late.worker_id, late.credential, ["q"])
        queue.release_many([stale])  # the lease is lost (as the reaper would)
        current = enroll(queue, name="current")
        [fresh] = queue.claim(current.worker_id, current.credential, ["q"])
        assert queue.complete_many([stale], {job_id: "late"}, worker=late) == [job_id]
        assert _forwarded(queue) == []
        assert queue.complete_many([fresh], {job_id: "current"}, worker=current) == []
        assert queue.complete_many([stale], {job_id: "late"}, worker=late) == [job_id]
        [forward] = _forwarded(queue)
        assert forward.payload["result"] == "current"


def test_a_failed_job_forwards_nothing_and_a_queue_keeping_no_history_still_forwards(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("quiet", keep_completed=False)
        failing = queue.enqueue("http", queue="q", result_queue="results", max_attempts=1)
        quiet = queue.enqueue("http", queue="quiet", result_queue="results")
        worker = enroll(queue, queues=["q", "quiet"])
        [held] = queue.claim(worker.worker_id, worker.credential, ["q"])
        assert queue.fail_many([Failure(held, "boom", retry=False)], worker=worker) == []
        assert queue.get_job(failing).state == JobState.DEAD
        [held] = queue.claim(worker.worker_id, worker.credential, ["quiet"])
        assert queue.complete_many([held], {quiet: 7}, worker=worker) == []
        [forward] = _forwarded(queue)
        assert (forward.payload["job_id"], forward.payload["result"]) == (quiet, 7)


def test_a_result_queue_that_is_empty_or_reserved_is_refused_naming_the_field(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        for name in ("", "*"):
            with pytest.raises(InvalidJob, match="result_queue"):
                queue.enqueue_many([JobSpec("noop", queue="q", result_queue=name)])
        assert queue.list_jobs(queue="q") == []


def test_jobs_enqueue_result_queue_forwards_and_a_reserved_name_is_a_usage_error(
    database_url: str,
) -> None:
    from tests.integration.test_queue_cli import corral

    enqueued = corral(database_url, "jobs", "enqueue", "noop", "--result-queue", "done")
    assert enqueued.exit_code == 0, enqueued.output
    job_id = int(enqueued.output)
    refused = corral(database_url, "jobs", "enqueue", "noop", "--result-queue", "*")
    assert refused.exit_code == 2, refused.output  # a usage error, naming the flag
    assert "'--result-queue': '*' is not a queue name" in refused.output
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, queues=["noop"])
        held = queue.claim(worker.worker_id, worker.credential, ["noop"])
        assert [j.id for j in held] == [job_id]
        assert queue.complete_many(held, worker=worker) == []
        [forward] = _forwarded(queue, "done")
        assert (forward.payload["job_id"], forward.payload["result"]) == (job_id, None)


def test_jobs_get_shows_the_result_queue_before_and_after_completion(database_url: str) -> None:
    from tests.integration.test_queue_cli import corral

    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("noop", queue="q", result_queue="results")
        assert queue.get_job(job_id).result_queue == "results"
        worker = enroll(queue)
        assert queue.complete_many(queue.claim(worker.worker_id, worker.credential, ["q"])) == []
        assert queue.get_job(job_id).result_queue == "results"
    shown = corral(database_url, "jobs", "get", str(job_id), "-o", "json")
    assert '"result_queue": "results"' in shown.output, shown.output


@pytest.mark.slow
def test_a_worker_in_a_storm_of_terminated_sessions_forwards_each_result_exactly_once(
    database_url: str, tmp_path: Path
) -> None:
    """Completions cut mid-flight are written again on a new connection (a
    lost answer included): every result still arrives once, never twice."""
    with Queue.connect(database_url) as q:
        ids = q.enqueue_many(
            [JobSpec("hold", {"sleep_s": 0.2}, queue="t", result_queue="out") for _ in range(60)]
        )
    w = WorkerProcess(
        database_url, tmp_path / "w", name="w", token=mint_token(database_url), queues="t"
    )
    try:
        w.wait_ready()
        killed = 0
        with psycopg.connect(database_url, autocommit=True) as admin:
            for _ in range(8):
                killed += len(
                    admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    ).fetchall()
                )
                time.sleep(0.5)
        assert killed >= 8, f"the storm terminated only {killed} session(s)"

        def all_done() -> bool:
            with Queue.connect(database_url) as q:
                return all(q.get_job(i).state == JobState.COMPLETED for i in ids)

        wait_until(all_done, 90, "every job completed")
        assert w.proc.poll() is None, f"the worker exited:\n{w.output()}"
        forwarded = run_sql(
            database_url,
            "SELECT (payload->>'job_id')::int8, count(*) FROM corral_jobs"
            " WHERE queue = 'out' AND kind = 'result' GROUP BY 1",
        )
        assert dict(forwarded) == dict.fromkeys(ids, 1)
    finally:
        w.stop()

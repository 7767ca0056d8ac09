"""Crash safety of the data layer: a claimer killed with SIGKILL loses no job."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import psycopg

from corral.queue import Enrollment, JobSpec, Queue
from tests.integration._enrolled import enroll, run_sql

TOTAL = 5000


def _record(queue: Queue, jobs: list[tuple[int, int]]) -> None:
    # The "handler": a side effect per (job id, attempt), committed before the ack.
    with queue.conn.cursor() as cur:
        cur.executemany("INSERT INTO ran (job_id, attempt) VALUES (%s, %s)", jobs)


def _survivor(url: str, me: Enrollment) -> None:
    with Queue.connect(url) as queue:
        idle_since = None
        while True:
            queue.reap()
            jobs = queue.claim(me.worker_id, me.credential, ["q"], batch=50, lease_s=30)
            if jobs:
                idle_since = None
                _record(queue, [(j.id, j.attempt) for j in jobs])
                assert queue.complete_many(jobs) == []
                continue
            left = queue.conn.execute("SELECT count(*) FROM corral_jobs").fetchone()
            if left == (0,):
                return
            idle_since = idle_since or time.monotonic()
            assert time.monotonic() - idle_since < 60, "jobs stranded"
            time.sleep(0.05)


def _victim(url: str, me: Enrollment, holding: mp.synchronize.Event) -> None:
    with Queue.connect(url) as queue:
        for _ in range(5):  # some normal work first
            jobs = queue.claim(me.worker_id, me.credential, ["q"], batch=50, lease_s=1)
            _record(queue, [(j.id, j.attempt) for j in jobs])
            queue.complete_many(jobs)
        jobs = queue.claim(me.worker_id, me.credential, ["q"], batch=50, lease_s=1)
        _record(queue, [(j.id, j.attempt) for j in jobs])
        holding.set()  # mid-run: side effects done, not acknowledged
        time.sleep(3600)


def test_a_claimer_killed_mid_batch_loses_no_job_and_only_its_held_jobs_run_twice(
    database_url: str,
) -> None:
    run_sql(database_url, "CREATE TABLE ran (job_id bigint NOT NULL, attempt int NOT NULL)")
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("q", retry_base_s=0.05, retry_max_s=0.1)
        queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(TOTAL)])
        workers = [enroll(queue, name=f"w{i}") for i in range(3)]
    ctx = mp.get_context("spawn")
    holding = ctx.Event()
    victim = ctx.Process(target=_victim, args=(database_url, workers[0], holding))
    victim.start()
    assert holding.wait(60), "the victim never got to hold a batch"
    held = {
        row[0]
        for row in run_sql(
            database_url,
            "SELECT id FROM corral_jobs WHERE state = 'running' AND worker_id = %s",
            [workers[0].worker_id],
        )
    }
    assert victim.pid is not None
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(10)
    survivors = [ctx.Process(target=_survivor, args=(database_url, w)) for w in workers[1:]]
    for process in survivors:
        process.start()
    for process in survivors:
        process.join(120)
        assert process.exitcode == 0

    with psycopg.connect(database_url) as conn:
        finished = conn.execute(
            "SELECT count(*) FROM corral_jobs_finished WHERE state = 'completed'"
        ).fetchone()
        twice = {
            r[0] for r in conn.execute("SELECT job_id FROM ran GROUP BY 1 HAVING count(*) > 1")
        }
        never = conn.execute(
            "SELECT count(*) FROM corral_jobs_finished f"
            " WHERE NOT EXISTS (SELECT 1 FROM ran WHERE ran.job_id = f.id)"
        ).fetchone()
    assert finished == (TOTAL,)
    assert never == (0,)
    assert len(held) == 50
    assert twice == held

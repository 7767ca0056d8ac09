"""Leases: fencing, heartbeats, the reaper and release on shutdown."""

from __future__ import annotations

import psycopg

from corral.queue import FailureReason, JobSpec, JobState, Queue
from tests.integration._clients import Client, Connect
from tests.integration._enrolled import enroll, run_sql

_EXPIRE_LEASES = (
    "UPDATE corral_jobs SET lease_expires_at = now() - interval '1 s' WHERE state = 'running'"
)


def test_a_worker_that_lost_its_lease_cannot_complete_the_job(
    database_url: str, queue: Client
) -> None:
    job_id = queue.enqueue("noop", queue="q")
    slow = enroll(queue, name="slow")
    fast = enroll(queue, name="fast")
    [held] = queue.claim(slow.worker_id, slow.credential, ["q"])
    run_sql(database_url, _EXPIRE_LEASES)
    assert queue.reap() == 1
    run_sql(database_url, "UPDATE corral_jobs SET run_at = now() WHERE id = %s", [job_id])
    [again] = queue.claim(fast.worker_id, fast.credential, ["q"])
    assert again.attempt == held.attempt + 1
    assert queue.complete_many([held]) == [job_id]  # fenced out
    assert queue.get_job(job_id).state == JobState.RUNNING
    assert queue.complete_many([again]) == []
    assert queue.get_job(job_id).state == JobState.COMPLETED


def test_the_reaper_sends_a_lapsed_lease_back_through_the_retry_path(
    database_url: str, queue: Client
) -> None:
    job_id = queue.enqueue("noop", queue="q", max_attempts=3)
    worker = enroll(queue)
    queue.claim(worker.worker_id, worker.credential, ["q"])
    assert queue.reap() == 0  # lease still good
    run_sql(database_url, _EXPIRE_LEASES)
    assert queue.reap() == 1
    job = queue.get_job(job_id)
    assert job.state == JobState.SCHEDULED
    assert job.attempt == 1
    assert job.last_error_reason == FailureReason.LEASE_EXPIRED
    assert job.last_error is not None and "lease expired" in job.last_error


def test_only_one_reaper_runs_at_a_time_across_the_fleet(
    database_url: str, connect: Connect
) -> None:
    with psycopg.connect(database_url) as other, connect(database_url) as queue:
        other.execute("SELECT pg_advisory_xact_lock(hashtext('corral_reaper'))")
        assert queue.reap() is None  # another reaper is busy: return at once
        other.rollback()
        assert queue.reap() == 0


def test_a_heartbeat_extends_every_lease_the_worker_holds(database_url: str, queue: Client) -> None:
    queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(5)])
    worker = enroll(queue)
    other = enroll(queue, name="other")
    mine = queue.claim(worker.worker_id, worker.credential, ["q"], batch=3, lease_s=5)
    theirs = queue.claim(other.worker_id, other.credential, ["q"], batch=2, lease_s=5)
    assert (
        queue.heartbeat(worker.worker_id, worker.credential, in_flight=3, lease_s=600) == "active"
    )
    rows = run_sql(
        database_url, "SELECT id, lease_expires_at - now() > interval '500 s' FROM corral_jobs"
    )
    leases = {row[0]: row[1] for row in rows}
    assert all(leases[j.id] for j in mine)
    assert not any(leases[j.id] for j in theirs)


def test_a_heartbeat_naming_its_held_jobs_lets_a_claim_the_worker_never_saw_lapse(
    database_url: str, queue: Client
) -> None:
    queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(3)])
    worker = enroll(queue)
    seen = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2, lease_s=5)
    # A claim that committed while the worker's connection broke: leased to
    # it, but the worker never got the answer, so it does not name the job.
    unseen = queue.claim(worker.worker_id, worker.credential, ["q"], batch=1, lease_s=5)
    held = [j.id for j in seen]
    state = queue.heartbeat(
        worker.worker_id, worker.credential, in_flight=2, lease_s=600, held=held
    )
    assert state == "active"
    rows = run_sql(
        database_url, "SELECT id, lease_expires_at - now() > interval '500 s' FROM corral_jobs"
    )
    leases = {row[0]: row[1] for row in rows}
    assert all(leases[i] for i in held)
    assert not leases[unseen[0].id]  # it lapses with its claim's lease, and is retried


def test_a_heartbeat_renews_only_the_leases_with_less_than_renew_below_left(
    database_url: str, queue: Client
) -> None:
    queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(2)])
    worker = enroll(queue)
    [fresh] = queue.claim(worker.worker_id, worker.credential, ["q"], batch=1, lease_s=600)
    [low] = queue.claim(worker.worker_id, worker.credential, ["q"], batch=1, lease_s=5)
    versions = "SELECT id, xmin::text, lease_expires_at - now() > interval '500 s' FROM corral_jobs"
    before = {row[0]: row[1] for row in run_sql(database_url, versions)}
    state = queue.heartbeat(
        worker.worker_id,
        worker.credential,
        in_flight=2,
        lease_s=600,
        held=[fresh.id, low.id],
        renew_below_s=300,
    )
    assert state == "active"
    after = {row[0]: (row[1], row[2]) for row in run_sql(database_url, versions)}
    # 600 s left, renewed below 300: the row is not written at all.
    assert after[fresh.id] == (before[fresh.id], True)
    # 5 s left: renewed to 600 s, a new row version.
    assert after[low.id][0] != before[low.id] and after[low.id][1]


def test_earlier_releases_beats_renew_every_lease_and_answer_as_they_did(
    database_url: str, queue: Client
) -> None:
    # Workers of earlier releases call _v3 (or _v2) during a rolling upgrade:
    # both go through _v4 now, with no threshold.
    queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(2)])
    worker = enroll(queue)
    held = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2, lease_s=600)
    ids = [job.id for job in held]
    versions = "SELECT id, xmin::text FROM corral_jobs ORDER BY id"

    def beat(version: int) -> str:
        sql = f"SELECT corral_heartbeat_v{version}(%s, %s, 2, 600, %s)"
        [(state,)] = run_sql(database_url, sql, [worker.worker_id, worker.credential, ids])
        return str(state)

    for version in (3, 2):
        before = run_sql(database_url, versions)
        assert beat(version) == "active"
        after = run_sql(database_url, versions)
        assert all(a[1] != b[1] for a, b in zip(after, before, strict=True)), version
    queue.request_restart(worker.worker_id)
    assert beat(3) == "restarting"
    assert beat(2) == "draining"


def test_released_jobs_go_back_to_pending_without_spending_an_attempt(queue: Client) -> None:
    job_id = queue.enqueue("noop", queue="q")
    worker = enroll(queue)
    [held] = queue.claim(worker.worker_id, worker.credential, ["q"])
    assert queue.release_many([held]) == []
    job = queue.get_job(job_id)
    assert (job.state, job.attempt) == (JobState.PENDING, 0)
    assert queue.complete_many([held]) == [job_id]  # the released lease is dead


def test_acks_skip_the_flush_wait_but_enqueues_never_do_unless_durable_acks_is_on(
    database_url: str,
) -> None:
    def commit_mode(conn: psycopg.Connection[tuple[object, ...]], call: str) -> object:
        with conn.transaction():
            queue = Queue(conn)
            if call == "enqueue":
                queue.enqueue("noop", queue="q")
            else:
                queue.claim(worker.worker_id, worker.credential, ["q"])
            row = conn.execute("SHOW synchronous_commit").fetchone()
        return row[0] if row else None

    with Queue.connect(database_url) as setup:
        worker = enroll(setup)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert commit_mode(conn, "enqueue") == "on"
        assert commit_mode(conn, "claim") == "off"
        conn.execute("SET corral.durable_acks = on")
        assert commit_mode(conn, "claim") == "on"


def test_a_heartbeat_never_waits_for_a_job_being_acknowledged_elsewhere(database_url: str) -> None:
    # Waiting could deadlock against a completion on the worker's other
    # connection; a job being acknowledged needs no longer lease anyway.
    with Queue.connect(database_url) as queue:
        queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(2)])
        worker = enroll(queue)
        busy, free = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2, lease_s=5)
        with psycopg.connect(database_url) as other:
            other.execute("SELECT 1 FROM corral_jobs WHERE id = %s FOR UPDATE", [busy.id])
            queue.conn.execute("SET lock_timeout = '2s'")
            state = queue.heartbeat(worker.worker_id, worker.credential, in_flight=2, lease_s=600)
            other.rollback()
        rows = run_sql(
            database_url, "SELECT id, lease_expires_at - now() > interval '500 s' FROM corral_jobs"
        )
    assert state == "active"
    assert {row[0]: row[1] for row in rows} == {busy.id: False, free.id: True}

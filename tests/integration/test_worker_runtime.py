"""`corral worker` as a real process against a real PostgreSQL: one test per
guarantee the runtime makes (completion, failures dead-lettered without
stopping, drain, SIGTERM hand-back, removal, NOTIFY wake-up, polling
fallback, a persisted credential, and crash safety with kill -9)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from corral import queue
from corral.worker.metrics import parse_text as parse_metrics
from tests._postgres import WORKER_ROLE
from tests.integration._local_servers import ok_server
from tests.integration._workers import CORRAL, ROOT, WorkerProcess, mint_token, wait_until

pytestmark = pytest.mark.slow


# The admin URL of a test's database -> the worker role's URL of it: every
# worker process here connects as a member of corral_worker only, so the
# whole runtime (enrollment, claims, acknowledgements, heartbeats, drains,
# reaper, retention, LISTEN) is proven to need nothing but its grants.
_AS_WORKER: dict[str, str] = {}


def as_worker(dsn: str) -> str:
    return _AS_WORKER.get(dsn, dsn)


@pytest.fixture
def workers(
    workers: list[WorkerProcess], database_url: str, worker_database_url: str
) -> Iterator[list[WorkerProcess]]:
    """conftest's `workers`, each started as the worker role (`spawn`)."""
    _AS_WORKER[database_url] = worker_database_url
    yield workers
    _AS_WORKER.pop(database_url, None)


def spawn(
    started: list[WorkerProcess],
    dsn: str,
    tmp_path: Path,
    name: str,
    *args: str,
    queues: str = "noop",
    token: str | None = "mint",
) -> WorkerProcess:
    if token == "mint":
        token = mint_token(dsn)
    w = WorkerProcess(
        as_worker(dsn), tmp_path / name, name=name, token=token, queues=queues, args=args
    )
    started.append(w)
    return w.wait_ready()


def holding(
    workers: list[WorkerProcess],
    dsn: str,
    tmp_path: Path,
    sleep_s: float | None,
    *args: str,
    jobs: int = 1,
) -> tuple[WorkerProcess, str]:
    """Worker w1 on queue t (with `args`), once it holds the `jobs` `hold`
    jobs enqueued before it started, each `sleep_s` long (None: until
    cancelled); and its id in the registry."""
    payload = {} if sleep_s is None else {"sleep_s": sleep_s}
    with queue.Queue.connect(dsn) as q:
        q.enqueue_many([queue.JobSpec("hold", payload, queue="t") for _ in range(jobs)])
    w = spawn(workers, dsn, tmp_path, "w1", *args, queues="t")
    wait_until(lambda: w.status()["in_flight"] == jobs, what=f"{jobs} job(s) in flight")
    return w, str(w.status()["worker_id"])


def a_noop_job_completes(dsn: str) -> None:
    """Enqueue a `noop` job and wait (30 s) for a worker to complete it."""
    with queue.Queue.connect(dsn) as q:
        job_id = q.enqueue("noop")
        wait_until(lambda: q.get_job(job_id).state == "completed", 30, "the job to complete")


def admin(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORRAL, *args],
        cwd=ROOT,
        env=dict(os.environ, CORRAL_DATABASE_URL=dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )


def finished(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT state, count(*) FROM corral_jobs_finished GROUP BY 1"
        ).fetchall()
    return {str(state): int(n) for state, n in rows}


def unfinished(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM corral_jobs").fetchone()
    assert row is not None
    return int(row[0])


def test_jobs_complete_end_to_end_in_a_real_worker_process(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        q.enqueue_many([queue.JobSpec("noop", {"n": i}) for i in range(500)])
    w = spawn(workers, database_url, tmp_path, "w1", "--concurrency", "50")
    wait_until(lambda: finished(database_url).get("completed") == 500, what="500 completions")
    assert unfinished(database_url) == 0
    code, metrics = w.http("/metrics")
    assert code == 200
    assert 'corral_worker_jobs_total{outcome="completed",queue="noop"} 500.0' in metrics
    assert "corral_worker_enqueue_to_start_seconds_bucket" in metrics
    assert w.http("/healthz")[0] == 200 and w.http("/readyz")[0] == 200


def test_the_garbage_collector_paused_for_the_start_runs_again_once_the_worker_claims(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # The console script pauses it while the modules load (corral.entry,
    # tests/unit/test_entry.py); a handler sees it on again.
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("collector", queue="noop")
        spawn(workers, database_url, tmp_path, "w1")
        wait_until(lambda: q.get_job(job_id).state == "completed", what="the job to complete")
        assert q.get_job(job_id).result == {"gc_enabled": True}


def test_failures_of_every_kind_are_dead_lettered_with_their_error_and_the_worker_keeps_running(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        ids = {
            kind: q.enqueue(kind, payload, queue="t", max_attempts=1)
            for kind, payload in [
                ("explode", {}),
                ("sleepy", {}),
                ("resize", {"width": "wide"}),
                ("no-such-kind", {}),
            ]
        }
    w = spawn(workers, database_url, tmp_path, "w1", queues="t")
    wait_until(lambda: finished(database_url).get("dead") == 4, what="4 dead jobs")
    with queue.Queue.connect(database_url) as q:
        jobs = {kind: q.get_job(job_id) for kind, job_id in ids.items()}
        assert jobs["explode"].last_error_reason == "exception"
        assert "RuntimeError: kaboom in job" in (jobs["explode"].last_error or "")
        assert jobs["sleepy"].last_error_reason == "timeout"
        assert "timed out after 0.3s" in (jobs["sleepy"].last_error or "")
        assert jobs["resize"].last_error_reason == "payload"
        assert "width" in (jobs["resize"].last_error or "")
        assert jobs["no-such-kind"].last_error_reason == "unknown_kind"
        assert "no handler registered for kind 'no-such-kind'" in (
            jobs["no-such-kind"].last_error or ""
        )
        # Still alive and still working.
        good = q.enqueue("resize", {"width": 3, "height": 4}, queue="t")
    wait_until(lambda: queue.Queue.connect(database_url).get_job(good).state == "completed")
    assert w.proc.poll() is None
    # What the (sync) handler returned is the job's result.
    with queue.Queue.connect(database_url) as q:
        assert q.get_job(good).result == 12


def test_draining_through_the_cli_reaches_drained_with_nothing_in_flight_and_readyz_fails(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # 8 s: long enough that a loaded machine still sees the transient `draining`.
    w, worker_id = holding(workers, database_url, tmp_path, 8.0, "--pool", "p1", jobs=3)
    workers_command(database_url, "drain", worker_id)
    wait_until(lambda: w.status()["state"] == "draining", 10, "the worker to see the drain")
    assert w.http("/readyz")[0] == 503
    with queue.Queue.connect(database_url) as q:
        q.enqueue("hold", {"sleep_s": 0}, queue="t")  # must not be claimed any more
    wait_until(lambda: w.status()["state"] == "drained", 30, "drained")
    assert w.status()["in_flight"] == 0
    assert finished(database_url).get("completed") == 3
    assert unfinished(database_url) == 1
    with queue.Queue.connect(database_url) as q:
        assert q.get_worker(int(worker_id)).state == "drained"
    # A pool's drained workers stay up (not ready) until terminated, then exit 0.
    time.sleep(0.5)
    assert w.proc.poll() is None and w.http("/readyz")[0] == 503
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0


def test_prestop_drains_the_local_worker_and_returns_when_it_is_drained(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # 5 s, not 1: under load a 1 s job could finish between two polls of
    # the status, and the wait for it in flight never saw it.
    w, _ = holding(workers, database_url, tmp_path, 5.0)
    hook = subprocess.run(
        [CORRAL, "worker", "prestop", "--port", str(w.port), "--state-dir", str(w.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert hook.returncode == 0, hook.stderr
    assert "drained, 0 in flight" in hook.stdout
    assert finished(database_url).get("completed") == 1


def test_sigterm_mid_job_hands_the_jobs_back_and_exits_0_within_the_deadline(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        ids = [q.enqueue("hold", {}, queue="t") for _ in range(4)]
    w = spawn(
        workers, database_url, tmp_path, "w1", "--term-grace", "1s", "--drain-timeout", "1h",
        queues="t",
    )  # fmt: skip
    wait_until(lambda: w.status()["in_flight"] == 4, what="4 jobs in flight")
    sent = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0, w.output()
    took = time.monotonic() - sent
    assert took >= 1.0  # it waited out the grace first
    assert took < 20  # SIGTERM keeps --term-grace, not --drain-timeout
    assert "handed 4 unfinished job(s) back" in w.output()
    with queue.Queue.connect(database_url) as q:
        for job_id in ids:
            job = q.get_job(job_id)
            # Back in the queue, and the interrupted run did not use up an attempt.
            assert (job.state, job.attempt, job.last_error) == ("pending", 0, None)


def test_a_job_handed_back_stays_handed_back_when_its_handler_wraps_the_cancellation(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # Its handler turns the cancellation into an error of its own: still a
    # hand-back, not a failed attempt, even on its last try.
    with queue.Queue.connect(database_url) as q:
        ids = [q.enqueue("wraps_cancel", {}, queue="t", max_attempts=1) for _ in range(2)]
    w = spawn(workers, database_url, tmp_path, "w1", "--term-grace", "1s", queues="t")
    wait_until(lambda: w.status()["in_flight"] == 2, what="2 jobs in flight")
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0, w.output()
    assert "handed 2 unfinished job(s) back" in w.output()
    with queue.Queue.connect(database_url) as q:
        for job_id in ids:
            job = q.get_job(job_id)
            assert (job.state, job.attempt, job.last_error) == ("pending", 0, None), job


def test_a_second_signal_stops_the_worker_at_once(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w, _ = holding(workers, database_url, tmp_path, None, "--term-grace", "1h")
    w.signal(signal.SIGTERM)
    wait_until(lambda: w.status()["state"] == "draining", what="draining")
    w.signal(signal.SIGTERM)
    assert w.wait(10) != 0
    assert "stopping at once" in w.output()


def test_a_removed_worker_stops_and_exits_saying_it_was_removed(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w = spawn(workers, database_url, tmp_path, "w1")
    with queue.Queue.connect(database_url) as q:
        q.remove_worker(int(w.status()["worker_id"]))
    assert w.wait(30) == 3
    assert "was removed from the corral workers registry" in w.output()
    # A restart with the same (removed) credential refuses to run.
    again = WorkerProcess(as_worker(database_url), tmp_path / "w1", name="w1", token=None)
    workers.append(again)
    assert again.wait(30) == 3
    assert "was removed" in again.output()


def test_a_port_already_taken_stops_the_worker_naming_the_setting_and_the_address(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        w = WorkerProcess(
            as_worker(database_url), tmp_path / "w1", name="w1", token=mint_token(database_url),
            args=("--http-port", str(port)),
        )  # fmt: skip
        workers.append(w)
        assert w.wait(30) == 1
    assert f"--http-port / CORRAL_HTTP_PORT: cannot listen on 127.0.0.1:{port}" in w.output()


def test_an_idle_worker_is_woken_by_notify_long_before_its_polling_interval(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # Polling once an hour: a job that completes at all was woken by NOTIFY.
    spawn(workers, database_url, tmp_path, "w1", "--poll-interval", "1h")
    time.sleep(0.5)  # the worker has found the queue empty and sleeps
    a_noop_job_completes(database_url)


def test_a_job_that_becomes_due_without_a_notification_is_found_by_polling(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # A delayed job sends no NOTIFY when it falls due: only polling finds it.
    spawn(workers, database_url, tmp_path, "w1", "--poll-interval", "200ms")
    with queue.Queue.connect(database_url) as q:
        run_at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
        job_id = q.enqueue("noop", run_at=run_at)
        wait_until(lambda: q.get_job(job_id).state == "completed", 30, "the delayed job")


def test_the_credential_is_persisted_and_reused_after_a_restart(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    first = spawn(workers, database_url, tmp_path, "w1")  # one-use token
    worker_id = first.status()["worker_id"]
    saved = json.loads((tmp_path / "w1" / "credential.json").read_text())
    assert str(saved["worker_id"]) == str(worker_id)
    assert oct((tmp_path / "w1" / "credential.json").stat().st_mode & 0o777) == "0o600"
    first.signal(signal.SIGTERM)
    assert first.wait(30) == 0
    second = spawn(workers, database_url, tmp_path, "w1", token=None)
    assert second.status()["worker_id"] == worker_id
    with queue.Queue.connect(database_url) as q:
        assert len(q.list_workers()) == 1


def test_a_worker_without_token_or_credential_says_how_to_get_one(
    database_url: str, tmp_path: Path
) -> None:
    w = WorkerProcess(as_worker(database_url), tmp_path / "w1", name="w1", token=None)
    assert w.wait(30) == 1
    assert "CORRAL_ENROLLMENT_TOKEN" in w.output() and "corral tokens create" in w.output()


def test_a_wrong_password_is_reported_without_showing_it(tmp_path: Path, database_url: str) -> None:
    bad = make_conninfo(database_url, password="wrong-pw-4711")
    w = WorkerProcess(bad, tmp_path / "w1", name="w1", token="x")
    assert w.wait(30) == 1
    out = w.output()
    assert "password authentication" in out and "wrong-pw-4711" not in out


def test_a_handlers_own_deadline_and_context_variables_stay_its_own(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # A handler that enters asyncio.timeout before it first waits: the
    # deadline fails that job (a TimeoutError of its own) and the worker
    # goes on claiming; a context variable one job sets, the next never sees.
    with queue.Queue.connect(database_url) as q:
        late = q.enqueue("own_deadline", {"within_s": 0.2}, queue="t", max_attempts=1)
    w = spawn(workers, database_url, tmp_path, "w1", queues="t")
    wait_until(lambda: finished(database_url).get("dead") == 1, 30, "the job past its deadline")
    with queue.Queue.connect(database_url) as q:
        job = q.get_job(late)
        assert job.last_error_reason == "exception", job
        assert "TimeoutError" in (job.last_error or ""), job.last_error
        first = q.enqueue("context", queue="t")
        wait_until(lambda: q.get_job(first).state == "completed", 30, "the first context job")
        second = q.enqueue("context", queue="t")
        wait_until(lambda: q.get_job(second).state == "completed", 30, "the second")
        results = [q.get_job(first).result, q.get_job(second).result]
    assert results == [{"seen": None}, {"seen": None}]
    assert w.proc.poll() is None


def test_heartbeats_keep_the_lease_of_a_job_that_outlives_it(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # The worker names the jobs it holds in each beat; a job it runs must be
    # among them, or its 2 s lease lapses mid-run and the reaper retries it.
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("sleep", {"seconds": 6}, queue="long")
    spawn(workers, database_url, tmp_path, "w1", "--lease", "2s", "--heartbeat-interval", "300ms",
          queues="long")  # fmt: skip
    wait_until(lambda: finished(database_url).get("completed") == 1, 60, "the long job")
    with queue.Queue.connect(database_url) as q:
        job = q.get_job(job_id)
    assert job is not None and job.attempt == 1, job


def test_beats_rewrite_a_held_jobs_lease_only_once_less_than_the_lease_is_left(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # --lease 8s: claimed for 8 s plus a quarter (10 s); the beats, every
    # 300 ms, leave the row alone until less than 8 s is left, then renew it
    # to 10 s again. A beat that renewed every lease would write it each time
    # (with 9.7 s or more left); one that waited for less (the slack, half
    # the lease) would leave a database outage shorter than --lease room to
    # cost the job a second run.
    holding(workers, database_url, tmp_path, None, "--lease", "8s", "--heartbeat-interval", "300ms")
    lease = (
        "SELECT xmin::text, state, attempt, extract(epoch FROM lease_expires_at),"
        " extract(epoch FROM lease_expires_at - started_at) FROM corral_jobs WHERE queue = 't'"
    )

    def read() -> tuple[Any, ...]:
        with psycopg.connect(database_url) as conn:
            row = conn.execute(lease).fetchone()
        assert row is not None
        return tuple(row)

    claimed, _, _, claimed_until, granted = read()
    assert 9.5 <= granted <= 10.5, granted
    wait_until(lambda: read()[0] != claimed, 10, "the lease to be renewed")
    _, state, attempt, renewed_until, _ = read()
    # Renewed by a beat while held (not reaped and claimed again).
    assert (state, attempt) == ("running", 1)
    # The beat that renewed it set it to its now() + 10 s: what was left of
    # the claim's lease then, from the database's own clock.
    left_at_renewal = float(claimed_until) - (float(renewed_until) - 10.0)
    assert 6.5 < left_at_renewal < 8.0, left_at_renewal


def test_a_crashed_worker_loses_no_job_and_only_its_own_jobs_run_twice(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE handled (job_id bigint, attempt int, worker text)")
        # The handler writes with the worker's URL: its own table needs its
        # own grant (the worker role may touch no corral table, nor any other).
        conn.execute(f"GRANT INSERT ON handled TO {WORKER_ROLE}")
    total = 5000
    with queue.Queue.connect(database_url) as q:
        q.enqueue_many([queue.JobSpec("record", {"sleep_s": 0.02}) for _ in range(total)])
    token = mint_token(database_url, uses=3)
    fast_lease = ("--concurrency", "20", "--lease", "5s", "--heartbeat-interval", "500ms")
    trio = [
        spawn(workers, database_url, tmp_path, f"w{i}", *fast_lease, queues="record", token=token)
        for i in range(3)
    ]

    def handled() -> int:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM handled").fetchone()
        return int(row[0]) if row else 0

    wait_until(lambda: handled() >= total // 4, 120, "a quarter of the jobs to run")
    victim = trio[1]
    victim.signal(signal.SIGKILL)
    victim.wait(10)
    wait_until(lambda: finished(database_url).get("completed") == total, 300, "every job")
    assert unfinished(database_url) == 0
    with psycopg.connect(database_url) as conn:
        runs = conn.execute(
            "SELECT job_id, array_agg(worker ORDER BY attempt), count(*) FROM handled GROUP BY 1"
        ).fetchall()
    assert len(runs) == total  # none lost
    twice = [(job_id, who) for job_id, who, n in runs if n > 1]
    # Only jobs the killed worker held ran again; every repeat began there.
    assert all(who[0] == victim.name for _, who in twice), twice[:5]
    assert all(n <= 2 for _, _, n in runs)


def test_the_builtin_http_tcp_and_dns_checks_pass_and_a_wrong_status_is_dead_lettered(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    server = ok_server()
    url = f"http://127.0.0.1:{server.server_address[1]}/health"
    pg_port = int(conninfo_to_dict(database_url)["port"] or 5432)
    try:
        with queue.Queue.connect(database_url) as q:
            ok = [
                q.enqueue("http", {"url": url}, queue="checks", max_attempts=1),
                q.enqueue("tcp", {"host": "127.0.0.1", "port": pg_port}, queue="checks"),
                q.enqueue("dns", {"name": "localhost"}, queue="checks", max_attempts=1),
            ]
            wrong = q.enqueue(
                "http", {"url": url, "expected_status": 201}, queue="checks", max_attempts=1
            )
            spawn(workers, database_url, tmp_path, "w1", queues="checks")
            wait_until(lambda: sum(finished(database_url).values()) == 4, what="4 checks")
            assert [q.get_job(i).state for i in ok] == ["completed"] * 3
            http, tcp, dns = (q.get_job(i).result for i in ok)
            assert http["status"] == 200 and http["latency_ms"] >= 0
            assert http["cert_expires_in_days"] is None  # plain http: no certificate
            assert tcp["latency_ms"] >= 0
            assert "127.0.0.1" in dns["addresses"] or "::1" in dns["addresses"]
            failed = q.get_job(wrong)
            assert failed.state == "dead"
            assert "status 200, expected [201]" in (failed.last_error or "")
    finally:
        server.shutdown()


def test_a_worker_whose_connections_are_all_cut_opens_them_again_and_works_on(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w = spawn(workers, database_url, tmp_path, "w1", "--poll-interval", "200ms")
    dbname = conninfo_to_dict(database_url)["dbname"]
    others = "FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
    with psycopg.connect(database_url, autocommit=True) as conn:
        # "ready" is printed while the other connections are still opening
        # (the first claim goes out first): wait for all four, then cut them.
        wait_until(
            lambda: len(conn.execute(f"SELECT pid {others}", (dbname,)).fetchall()) >= 4,
            what="the worker's four connections",
        )
        cut = conn.execute(f"SELECT pg_terminate_backend(pid) {others}", (dbname,)).fetchall()
    assert len(cut) >= 4  # claims, completions, control, LISTEN
    a_noop_job_completes(database_url)
    assert w.proc.poll() is None, w.output()
    assert "connection to the database open again" in w.output()


def test_a_broken_listen_connection_is_reopened_and_wakes_the_worker_again(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    spawn(workers, database_url, tmp_path, "w1", "--poll-interval", "1h")
    dbname = conninfo_to_dict(database_url)["dbname"]
    listeners = (
        "SELECT pid FROM pg_stat_activity WHERE datname = %s AND query LIKE 'LISTEN%%'"
        " AND pid <> pg_backend_pid()"
    )
    with psycopg.connect(database_url, autocommit=True) as conn:
        old = wait_until(lambda: conn.execute(listeners, (dbname,)).fetchall(), what="LISTEN")
        conn.execute("SELECT pg_terminate_backend(%s)", (old[0][0],))
        wait_until(
            lambda: [r for r in conn.execute(listeners, (dbname,)).fetchall() if r != old[0]],
            what="a new LISTEN connection",
        )
    a_noop_job_completes(database_url)


def test_sigterm_does_not_wait_for_a_sync_handler_stuck_in_its_thread(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("blocking", {"sleep_s": 60}, queue="t")
    w = spawn(workers, database_url, tmp_path, "w1", "--term-grace", "500ms", queues="t")
    wait_until(lambda: w.status()["in_flight"] == 1, what="the job in flight")
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0, w.output()
    with queue.Queue.connect(database_url) as q:
        assert (q.get_job(job_id).state, q.get_job(job_id).attempt) == ("pending", 0)


def registry_row(dsn: str, worker_id: object) -> queue.Worker:
    with queue.Queue.connect(dsn) as q:
        return q.get_worker(int(str(worker_id)))


def test_sigterm_shows_draining_then_drained_in_the_registry_and_a_restart_is_active_again(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # 6 s: the `draining` row must be seen while the job runs, on a loaded machine too.
    w, worker_id = holding(workers, database_url, tmp_path, 6.0, "--term-grace", "30s")
    w.signal(signal.SIGTERM)
    # Within a heartbeat, while the job still runs, the operator can see it:
    # draining, with the job in flight. (The drain is recorded at once; the
    # in-flight count comes with the next heartbeat, so wait for both.)
    row = wait_until(
        lambda: (
            (r := registry_row(database_url, worker_id)).state == "draining"
            and r.in_flight == 1
            and r
        ),
        5,
        "the registry row to say draining with the job in flight",
    )
    assert row.drain_requested_by == "self"
    assert w.wait(30) == 0, w.output()
    row = registry_row(database_url, worker_id)
    assert (row.state, row.in_flight) == ("drained", 0)
    assert row.drained_at is not None
    assert finished(database_url).get("completed") == 1
    # The same container restarted (same state directory): active and working.
    again = spawn(workers, database_url, tmp_path, "w1", token=None, queues="t")
    assert again.status()["worker_id"] == worker_id
    assert registry_row(database_url, worker_id).state == "active"
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("hold", {"sleep_s": 0}, queue="t")
        wait_until(lambda: q.get_job(job_id).state == "completed", 30, "a job after restart")


def test_post_drain_shows_draining_then_drained_with_nothing_in_flight_in_the_registry(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # 6 s: the `draining` row must be seen while the job runs, on a loaded machine too.
    w, worker_id = holding(workers, database_url, tmp_path, 6.0)
    # Neither a caller without the key (another pod, a job's `http` request)
    # nor one with a wrong key drains it; the key from its state dir does.
    assert w.http("/drain", "POST")[0] == 401
    assert w.http("/drain", "POST", {"Authorization": "Bearer guessed"})[0] == 403
    assert w.status()["state"] == "active"
    assert w.http("/drain", "POST", {"Authorization": f"Bearer {w.drain_key()}"})[0] == 202
    wait_until(
        lambda: registry_row(database_url, worker_id).state == "draining",
        5,
        "the registry row to say draining",
    )
    row = wait_until(
        lambda: (r := registry_row(database_url, worker_id)).state == "drained" and r,
        30,
        "the registry row to say drained",
    )
    assert row.in_flight == 0 and row.drain_requested_by == "self"
    assert w.proc.poll() is None and w.http("/readyz")[0] == 503


def test_a_running_worker_deletes_finished_jobs_past_its_retention_and_keeps_the_rest(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        q.enqueue_many([queue.JobSpec("noop", queue="old") for _ in range(30)])
        enrolled = q.enroll(mint_token(database_url), name="seed", queues=["old"], concurrency=1)
        jobs = q.claim(enrolled.worker_id, enrolled.credential, ["old"], batch=30)
        q.complete_many(jobs)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE corral_jobs_finished SET finished_at = now() - interval '3 days'"
            " WHERE id = ANY(%s)",
            ([j.id for j in jobs[:20]],),
        )
    spawn(workers, database_url, tmp_path, "w1", "--retention", "2d")
    wait_until(lambda: finished(database_url).get("completed") == 10, 30, "old jobs purged")
    with queue.Queue.connect(database_url) as q:
        kept = {j.id for j in q.list_jobs(state="completed", limit=100)}
    assert kept == {j.id for j in jobs[20:]}


def test_a_running_worker_keeps_the_dashboard_counters_and_depth_samples_current(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # No dashboard runs: the worker's upkeep folds what it finished and
    # samples the depth of a queue it does not serve.
    with queue.Queue.connect(database_url) as q:
        q.enqueue_many([queue.JobSpec("noop") for _ in range(5)])
        q.enqueue_many([queue.JobSpec("noop", queue="elsewhere") for _ in range(3)])
    spawn(workers, database_url, tmp_path, "w1")
    with queue.Queue.connect(database_url) as q:
        wait_until(
            lambda: sum(m.completed for m in q.throughput() if m.queue == "noop") == 5,
            60,  # the first pass may precede the jobs; the next is 20-24 s later
            "the worker's rollup to count its 5 completions",
        )
        samples = {(d.queue, d.waiting) for d in q.depth_history()}
    assert ("elsewhere", 3) in samples


def test_a_drain_the_scaler_cancels_sends_the_worker_back_to_work_whether_draining_or_drained(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w, registered = holding(workers, database_url, tmp_path, 2.0, "--pool", "p1", jobs=2)
    worker_id = int(registered)
    with queue.Queue.connect(database_url) as q:
        # Cancelled while still draining (jobs held): they go on, claims resume.
        assert q.scaler_drain([worker_id]) == [worker_id]
        wait_until(lambda: w.status()["state"] == "draining", 10, "the worker to see the drain")
        assert q.scaler_undrain([worker_id]) == [worker_id]
        wait_until(lambda: w.status()["state"] == "active", 10, "the drain to be undone")
        assert w.http("/readyz")[0] == 200
        # Cancelled once drained: the worker claims again and runs new jobs.
        q.scaler_drain([worker_id])
        wait_until(lambda: w.status()["state"] == "drained", 30, "drained")
        # The registry hears it with the beat that follows the local change.
        wait_until(lambda: q.get_worker(worker_id).state == "drained", 10, "registry: drained")
        assert q.scaler_undrain([worker_id]) == [worker_id]
        wait_until(lambda: w.status()["state"] == "active", 10, "active again")
        q.enqueue("hold", {"sleep_s": 0}, queue="t")
    wait_until(lambda: finished(database_url).get("completed") == 3, 30, "the new job to run")
    with queue.Queue.connect(database_url) as q:
        assert q.get_worker(worker_id).state == "active"
        assert q.interruptions() == []
    assert "drain cancelled, active again" in w.output()


def test_a_worker_terminating_keeps_draining_whatever_the_scaler_says(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w = spawn(workers, database_url, tmp_path, "w1", queues="t")
    worker_id = int(w.status()["worker_id"])
    with queue.Queue.connect(database_url) as q:
        q.enqueue("hold", {"sleep_s": 3.0}, queue="t")
        wait_until(lambda: w.status()["in_flight"] == 1, what="a job in flight")
        q.scaler_drain([worker_id])
        wait_until(lambda: w.status()["state"] == "draining", 10, "the worker to see the drain")
        w.signal(signal.SIGTERM)  # its pod is going
        wait_until(lambda: q.get_worker(worker_id).drain_requested_by == "self", 10, "self")
        assert q.scaler_undrain([worker_id]) == []
    assert w.wait(30) == 0
    assert finished(database_url).get("completed") == 1


def test_sync_handlers_stuck_past_their_timeout_restart_the_worker_once_too_many_slots_are_lost(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # Two slots, half may be lost: the one stuck thread is one too many.
    w = spawn(workers, database_url, tmp_path, "w1", "--concurrency", "2", "--stuck-share", "0.5",
              queues="t")  # fmt: skip
    with queue.Queue.connect(database_url) as q:
        held = q.enqueue("hold", {"sleep_s": 3600}, queue="t")
        stuck = q.enqueue("wedged", {}, queue="t")
    assert w.wait(30) == 4, w.output()
    assert "slots are held by sync handlers stuck past their timeout" in w.output()
    with queue.Queue.connect(database_url) as q:
        # the stuck job failed (timeout) and will be retried; the other was handed back
        assert q.get_job(stuck).state == "scheduled", w.output()
        assert "timed out" in (q.get_job(stuck).last_error or "")
        assert (q.get_job(held).state, q.get_job(held).attempt) == ("pending", 0)


def test_a_stuck_sync_handler_keeps_its_slot_until_it_returns(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        q.enqueue("blocking", {"sleep_s": 4}, queue="t", max_attempts=1)
    w = spawn(workers, database_url, tmp_path, "w1", "--concurrency", "2", "--job-timeout", "500ms",
              "--stuck-share", "1", queues="t")  # fmt: skip

    def stuck() -> float:
        return float(parse_metrics(w.http("/metrics")[1]).get("corral_worker_stuck_handlers", -1))

    wait_until(lambda: stuck() == 1.0, 15, "the timed-out handler to be counted stuck")
    # One slot left: two long async jobs run one at a time, not side by side.
    with queue.Queue.connect(database_url) as q:
        q.enqueue_many([queue.JobSpec("hold", {"sleep_s": 1}, queue="t") for _ in range(2)])
    wait_until(lambda: w.status()["in_flight"] >= 1, 10, "a hold job to start")
    assert w.status()["in_flight"] == 1
    wait_until(lambda: stuck() == 0.0, 15, "the stuck handler to return and free its slot")
    assert "its slot stays taken until it returns (1 stuck)" in w.output()


def test_an_async_handler_blocking_the_event_loop_is_named_in_the_log(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        job = q.enqueue("block_loop", {"sleep_s": 2.5}, queue="t")
    w = spawn(workers, database_url, tmp_path, "w1", queues="t")
    wait_until(lambda: q_state(database_url, job) == "completed", 30, "the job to finish")
    wait_until(lambda: "event loop blocked" in w.output(), 10, "the stall to be logged")
    assert "by handler 'block_loop'" in w.output()
    metrics = parse_metrics(w.http("/metrics")[1])
    assert metrics["corral_worker_event_loop_stalls_total"] == 1.0


def q_state(dsn: str, job_id: int) -> str:
    with queue.Queue.connect(dsn) as q:
        return str(q.get_job(job_id).state)


def test_a_bad_payload_and_an_unknown_kind_go_straight_to_dead_whatever_attempts_are_left(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:  # the default: 20 attempts
        bad = q.enqueue("resize", {"width": "wide"}, queue="t")
        unknown = q.enqueue("no-such-kind", {}, queue="t")
        flaky = q.enqueue("explode", {}, queue="t")
    spawn(workers, database_url, tmp_path, "w1", queues="t")
    wait_until(lambda: finished(database_url).get("dead") == 2, what="2 dead jobs")
    with queue.Queue.connect(database_url) as q:
        assert (q.get_job(bad).state, q.get_job(bad).attempt) == ("dead", 1)
        assert (q.get_job(unknown).state, q.get_job(unknown).attempt) == ("dead", 1)
        # an exception is worth another attempt: it waits for its retry
        wait_until(lambda: q.get_job(flaky).state == "scheduled", what="the retry of explode")


def test_a_payload_the_worker_cannot_decode_dead_letters_that_job_and_its_batch_runs(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        ids = q.enqueue_many([queue.JobSpec("noop", queue="t") for _ in range(9)])
    # Written past the client (another producer, plain SQL): jsonb takes a
    # depth that Python's JSON parser refuses.
    deep = "[" * 5000 + "]" * 5000
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE corral_jobs SET payload = %s::jsonb WHERE id = %s", (deep, ids[4]))
    w = spawn(workers, database_url, tmp_path, "w1", "--concurrency", "20", queues="t")
    wait_until(lambda: finished(database_url) == {"completed": 8, "dead": 1}, 60, "every job")
    with psycopg.connect(database_url) as conn:  # not get_job: it would decode the payload
        state, attempt, error = conn.execute(
            "SELECT state, attempt, last_error FROM corral_jobs_finished WHERE id = %s", (ids[4],)
        ).fetchone() or (None, None, None)
    assert (state, attempt) == ("dead", 1)
    assert "the payload cannot be decoded (RecursionError" in (error or ""), error
    assert w.proc.poll() is None and w.http("/healthz")[0] == 200


def test_poison_results_and_errors_are_stored_cleaned_and_the_run_goes_on(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        before = q.enqueue_many([queue.JobSpec("noop", queue="t") for _ in range(50)])
        bad_result = q.enqueue("poison", {}, queue="t")
        bad_error = q.enqueue("poison", {"raise": True}, queue="t", max_attempts=1)
        after = q.enqueue_many([queue.JobSpec("noop", queue="t") for _ in range(50)])
    w = spawn(workers, database_url, tmp_path, "w1", "--concurrency", "20", queues="t")
    wait_until(lambda: finished(database_url) == {"completed": 101, "dead": 1}, 60, "every job")
    with queue.Queue.connect(database_url) as q:
        assert q.get_job(bad_result).result == {"text": "nul \ufffd here", "half": "\ufffd"}
        assert "bad \ufffd byte and half a \ufffd pair" in (q.get_job(bad_error).last_error or "")
        assert {q.get_job(i).state for i in before + after} == {"completed"}
    assert w.proc.poll() is None and w.http("/healthz")[0] == 200


def test_the_queue_names_a_value_postgres_cannot_store(database_url: str) -> None:
    with queue.Queue.connect(database_url) as q:
        q.enqueue("x", queue="t")
        token = q.create_token("default", ttl_s=60, uses=1)
        me = q.enroll(token.secret, name="w", queues=["t"], concurrency=1)
        (job,) = q.claim(me.worker_id, me.credential, ["t"], batch=1)
        with pytest.raises(queue.DataRefused):
            q.complete_many([job], {job.id: {"text": "nul \x00 here"}})
        assert q.complete_many([job], {job.id: {"text": "clean"}}) == []


# -- corral workers drain | resume | restart ------------------------------------------


def workers_command(
    dsn: str, verb: str, worker_id: object, exit_code: int = 0
) -> subprocess.CompletedProcess[str]:
    """`corral workers VERB ID`, which must exit with `exit_code`."""
    done = admin(dsn, "workers", verb, str(worker_id))
    assert done.returncode == exit_code, (done.stdout, done.stderr)
    return done


def listed_state(dsn: str, worker_id: object) -> str:
    listing = admin(dsn, "workers", "list", "-o", "json")
    assert listing.returncode == 0, listing.stderr
    (row,) = [w for w in json.loads(listing.stdout) if str(w["id"]) == str(worker_id)]
    return str(row["state"])


def test_a_drain_exits_0_a_worker_outside_a_pool_once_its_jobs_are_done(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w, worker_id = holding(workers, database_url, tmp_path, 1.5)
    workers_command(database_url, "drain", worker_id)
    assert w.wait(30) == 0, w.output()
    assert finished(database_url).get("completed") == 1  # finished, not handed back
    assert registry_row(database_url, worker_id).state == "drained"
    assert "drained, not in a pool: exiting" in w.output()
    # Resume marks it to be active once started again (tests/integration/test_cli_workers.py).
    resumed = workers_command(database_url, "resume", worker_id).stdout
    assert "active once it is started again" in resumed, resumed


def test_resume_undoes_a_drain_under_way_and_the_worker_claims_again(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # Its job is held through the drain and after.
    w, worker_id = holding(workers, database_url, tmp_path, 60.0, "--drain-timeout", "1s")
    workers_command(database_url, "drain", worker_id)
    wait_until(lambda: w.status()["state"] == "draining", 10, "the worker to see the drain")
    assert listed_state(database_url, worker_id) == "draining"
    assert "is active" in workers_command(database_url, "resume", worker_id).stdout
    wait_until(lambda: w.status()["state"] == "active", 10, "the worker to claim again")
    with queue.Queue.connect(database_url) as q:
        q.enqueue("hold", {"sleep_s": 0}, queue="t")
    wait_until(lambda: finished(database_url).get("completed") == 1, 30, "a new job to run")
    assert w.proc.poll() is None and listed_state(database_url, worker_id) == "active"
    assert "drain cancelled, active again" in w.output()
    # A worker draining on its own (SIGTERM) is not resumed: its process is going.
    w.signal(signal.SIGTERM)
    assert w.wait(30) == 0
    assert "by its own drain" in workers_command(database_url, "resume", worker_id, 1).stderr


def test_restart_drains_exits_75_and_the_worker_comes_back_with_its_credential(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w, worker_id = holding(workers, database_url, tmp_path, 2.0, "--pool", "p1")
    assert "is restarting" in workers_command(database_url, "restart", worker_id).stdout
    assert listed_state(database_url, worker_id) == "restarting"
    assert w.wait(30) == 75, w.output()  # even a pool's worker exits: for a restart
    assert finished(database_url).get("completed") == 1
    assert "restarting (exit code 75)" in w.output()
    # Its supervisor starts it again: no token, the stored credential.
    again = spawn(workers, database_url, tmp_path, "w1", "--pool", "p1", queues="t", token=None)
    assert again.status()["worker_id"] == worker_id
    wait_until(lambda: listed_state(database_url, worker_id) == "active", 10, "active again")
    with queue.Queue.connect(database_url) as q:
        q.enqueue("hold", {"sleep_s": 0}, queue="t")
        assert len(q.list_workers()) == 1
    wait_until(lambda: finished(database_url).get("completed") == 2, 30, "a job after restart")

"""A worker rides out the database going away (issue 15, item 1): a restart,
a storm of terminated sessions. It keeps the jobs it holds running, keeps
their results until the database is back, writes them then, and claims
again; no job runs twice when the outage is shorter than the lease. Past the
lease it exits and says why.

The restart tests run their own PostgreSQL server (the session's shared one
must stay up for the other tests); the storm runs on the test's database.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from corral import queue
from corral_local.postgres import PostgresServer
from tests._postgres import restartable_server
from tests.integration._workers import WorkerProcess, mint_token, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A server of the test's own (`restartable_server`)."""
    with restartable_server("corral-pg-restart-") as pg:
        yield pg


def _migrated(server: PostgresServer) -> str:
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE corral")
    url = server.dsn("corral")
    queue.migrate(url)
    return url


def _start(workers: list[WorkerProcess], url: str, tmp_path: Path, *args: str) -> WorkerProcess:
    w = WorkerProcess(url, tmp_path / "w1", name="w1", token=mint_token(url), queues="t", args=args)
    workers.append(w)
    return w.wait_ready()


def _attempts(url: str, ids: list[int]) -> dict[int, int]:
    with queue.Queue.connect(url) as q:
        return {i: q.get_job(i).attempt for i in ids}


def _completed(url: str, ids: list[int]) -> int:
    with queue.Queue.connect(url) as q:
        return sum(q.get_job(i).state == "completed" for i in ids)


def test_a_database_restart_costs_no_job_a_second_run_and_the_worker_stays_up(
    server: PostgresServer, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    url = _migrated(server)
    with queue.Queue.connect(url) as q:
        ids = q.enqueue_many(
            [queue.JobSpec("hold", {"sleep_s": 1.5}, queue="t") for _ in range(24)]
        )
    w = _start(workers, url, tmp_path, "--concurrency", "4")
    wait_until(lambda: _completed(url, ids) >= 4, 60, "a few jobs done before the restart")
    wait_until(lambda: w.status()["in_flight"] >= 1, 10, "jobs in flight")

    server.stop()  # a fast shutdown: every session is cut, nothing answers
    time.sleep(3)  # jobs finish meanwhile; their results wait in the worker
    assert w.proc.poll() is None, f"the worker exited during the outage:\n{w.output()}"
    assert w.http("/healthz")[0] == 200  # an outage shorter than the lease is not a fault
    server.start()  # same port, same data: the database is back

    wait_until(lambda: _completed(url, ids) == len(ids), 90, "every job completed")
    assert w.proc.poll() is None, f"the worker exited:\n{w.output()}"
    reruns = {i: a for i, a in _attempts(url, ids).items() if a != 1}
    assert reruns == {}, f"jobs that ran twice: {reruns}\n{w.output()}"
    with queue.Queue.connect(url) as q:
        assert q.interruptions() == []
    assert "the database answers again" in w.output(), w.output()


def test_a_storm_of_terminated_sessions_loses_no_job_and_repeats_none(
    database_url: str, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    with queue.Queue.connect(database_url) as q:
        ids = q.enqueue_many(
            [queue.JobSpec("hold", {"sleep_s": 0.3}, queue="t") for _ in range(60)]
        )
    w = _start(workers, database_url, tmp_path, "--concurrency", "4")
    killed = 0
    with psycopg.connect(database_url, autocommit=True) as admin:
        for _ in range(8):
            assert w.proc.poll() is None, f"the worker exited in the storm:\n{w.output()}"
            if _completed(database_url, ids) == len(ids):
                break
            killed += len(
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            )
            time.sleep(0.7)
    assert killed >= 8, f"the storm terminated only {killed} session(s)"
    wait_until(lambda: _completed(database_url, ids) == len(ids), 90, "every job completed")
    assert w.proc.poll() is None, f"the worker exited:\n{w.output()}"
    reruns = {i: a for i, a in _attempts(database_url, ids).items() if a != 1}
    assert reruns == {}, f"jobs that ran twice: {reruns}\n{w.output()}"
    # A job handed back (released) runs again at the same attempt: only the
    # interruptions record tells such a second run apart.
    with queue.Queue.connect(database_url) as q:
        assert q.interruptions() == [], w.output()


def test_a_worker_cut_off_for_longer_than_its_lease_exits_and_says_why(
    server: PostgresServer, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    url = _migrated(server)
    with queue.Queue.connect(url) as q:
        q.enqueue("hold", {"sleep_s": 600}, queue="t")
    w = _start(workers, url, tmp_path, "--lease", "4s", "--heartbeat-interval", "1s")
    wait_until(lambda: w.status()["in_flight"] == 1, 20, "the job in flight")
    server.stop()
    code = w.wait(30)
    assert code == 1, w.output()
    assert "longer than --lease (4s)" in w.output(), w.output()


def test_sigterm_during_an_outage_keeps_the_grace_and_leaves_the_completions_to_the_leases(
    server: PostgresServer, workers: list[WorkerProcess], tmp_path: Path
) -> None:
    url = _migrated(server)
    with queue.Queue.connect(url) as q:
        q.enqueue_many([queue.JobSpec("hold", {"sleep_s": 2.5}, queue="t") for _ in range(4)])
    w = _start(workers, url, tmp_path, "--lease", "20s", "--term-grace", "4s")
    wait_until(lambda: w.status()["in_flight"] == 4, 20, "4 jobs in flight")
    server.stop()
    w.signal(signal.SIGTERM)
    # The jobs finish within the grace, but nothing can be written: the
    # worker leaves them to their leases instead of waiting the lease out.
    code = w.wait(18)  # the grace and a margin, not the lease
    assert code == 1, w.output()
    assert "left 4 completion(s) to their leases" in w.output(), w.output()

"""Chaos drills against the database under a fleet of real workers (issue 15,
item 8). Each drill runs jobs, injects one fault in the middle of the run,
and ends with the same audit (`_audit.audit`): every job completed or dead
exactly as expected, none lost, none run twice, every worker still running.
Each prints what it injected and the audit's figures (`pytest -s` shows them;
`make test-chaos` runs this tier)."""

from __future__ import annotations

import os
import signal
import time

import psycopg
import pytest

from corral import queue
from corral_local.postgres import PostgresServer
from tests.chaos.conftest import Fleet
from tests.integration._workers import wait_until

pytestmark = pytest.mark.slow

WORKERS = 3
CONCURRENCY = "8"


def test_a_fast_database_restart_during_a_5000_job_run(
    server: PostgresServer, url: str, fleet: Fleet
) -> None:
    fleet.enqueue(5000)
    fleet.start(WORKERS, "--concurrency", CONCURRENCY)
    wait_until(lambda: fleet.done() >= 1000, 120, "1,000 jobs done before the restart")
    done, held = fleet.done(), fleet.running()
    assert held > 0 and done < 5000, f"no job held at the restart ({done} of 5000 done)"
    started = time.monotonic()
    server.stop()  # SIGINT: PostgreSQL's fast shutdown, every session cut
    server.start()
    down_s = time.monotonic() - started
    fleet.audit(
        "restart",
        f"a fast restart of PostgreSQL after {done} of 5000 jobs, {held} held ({down_s:.1f}s down)",
    )


def test_a_storm_of_terminated_worker_sessions(url: str, fleet: Fleet) -> None:
    fleet.enqueue(3000)
    fleet.start(WORKERS, "--concurrency", CONCURRENCY)
    killed = rounds = 0
    with psycopg.connect(url, autocommit=True) as admin:
        while fleet.done() < len(fleet.ids) and rounds < 20:
            rounds += 1
            killed += len(
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
            )
            time.sleep(0.3)
    assert killed > 0, "the storm found no worker session to terminate"
    fleet.audit(
        "terminate-storm",
        f"{killed} worker sessions terminated in {rounds} rounds 0.3 s apart",
    )


def test_a_poison_result_and_a_poison_error_in_the_middle_of_a_run(url: str, fleet: Fleet) -> None:
    fleet.enqueue(1000)
    with queue.Queue.connect(url) as q:
        bad_result = q.enqueue("poison", {}, queue="chaos")
        bad_error = q.enqueue("poison", {"raise": True}, queue="chaos", max_attempts=1)
    fleet.ids += [bad_result, bad_error]
    fleet.enqueue(1000)
    fleet.start(WORKERS, "--concurrency", CONCURRENCY)
    fleet.audit(
        "poison",
        "a result with NUL and a lone surrogate, an error with both, amid 2,000 jobs",
        dead={bad_error},  # one attempt allowed: its cleaned error is kept
    )
    with queue.Queue.connect(url) as q:
        assert q.get_job(bad_result).result == {"text": "nul \ufffd here", "half": "\ufffd"}
        assert "\ufffd" in (q.get_job(bad_error).last_error or "")


def test_a_database_frozen_longer_than_the_statement_timeout(
    server: PostgresServer, url: str, fleet: Fleet
) -> None:
    # A 2 s statement limit (the default is 30 s) so that a 5 s freeze outlasts it.
    limited = url + "?options=-c%20statement_timeout%3D2000"
    fleet.enqueue(3000)
    fleet.start(WORKERS, "--concurrency", CONCURRENCY, dsn=limited)
    wait_until(lambda: fleet.done() >= 500, 120, "500 jobs done before the freeze")
    held = fleet.running()
    assert held > 0, f"no job held at the freeze ({fleet.done()} of 3000 done)"
    assert server._proc is not None
    group = os.getpgid(server._proc.pid)  # the postmaster and every backend
    os.killpg(group, signal.SIGSTOP)
    try:
        time.sleep(5)
    finally:
        os.killpg(group, signal.SIGCONT)
    fleet.audit(
        "freeze",
        f"SIGSTOP of every PostgreSQL process for 5 s (statement_timeout 2 s), {held} jobs held",
    )

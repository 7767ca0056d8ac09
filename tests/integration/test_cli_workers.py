"""`corral workers drain | resume` on real `corral worker` processes started
by hand (no pool): what the admin sees, and whether the worker comes back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from corral import queue
from tests.integration._workers import CORRAL, ROOT, WorkerProcess, mint_token, wait_until

pytestmark = pytest.mark.slow


def corral(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORRAL, *args],
        cwd=ROOT,
        env=dict(os.environ, CORRAL_DATABASE_URL=dsn),
        capture_output=True,
        text=True,
        timeout=60,
    )


def start(
    workers: list[WorkerProcess], dsn: str, state_dir: Path, token: str | None
) -> WorkerProcess:
    w = WorkerProcess(dsn, state_dir, name="by-hand", token=token, queues="t")
    workers.append(w)
    return w.wait_ready()


def test_a_hand_run_worker_whose_drain_finished_comes_back_after_workers_resume(
    database_url: str, worker_database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    state_dir = tmp_path / "w"
    first = start(workers, worker_database_url, state_dir, mint_token(database_url))
    worker_id = str(first.status()["worker_id"])
    assert corral(database_url, "workers", "drain", worker_id).returncode == 0
    assert first.wait(30) == 0, first.output()
    # Exiting, it says how to bring it back.
    assert f"corral workers resume {worker_id}" in first.output()

    resumed = corral(database_url, "workers", "resume", worker_id)
    assert resumed.returncode == 0, resumed.stderr
    assert "active once it is started again" in resumed.stdout, resumed.stdout

    # Started again with the same --state-dir (no token): it claims and stays.
    again = start(workers, worker_database_url, state_dir, None)
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("noop", queue="t")
        wait_until(lambda: q.get_job(job_id).state == "completed", 30, "the job to run")
        assert q.get_worker(int(worker_id)).state == "active"
    assert again.proc.poll() is None and again.status()["state"] == "active"


def test_a_hand_run_worker_started_again_without_resume_says_how_to_resume(
    database_url: str, worker_database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    state_dir = tmp_path / "w"
    first = start(workers, worker_database_url, state_dir, mint_token(database_url))
    worker_id = str(first.status()["worker_id"])
    assert corral(database_url, "workers", "drain", worker_id).returncode == 0
    assert first.wait(30) == 0, first.output()
    # The admin's drain stands across a plain restart; the exit says what to run.
    again = WorkerProcess(worker_database_url, state_dir, name="by-hand", token=None, queues="t")
    workers.append(again)
    assert again.wait(30) == 0, again.output()
    assert f"corral workers resume {worker_id}" in again.output()


def test_the_start_up_line_names_the_region_workers_list_shows(
    database_url: str, worker_database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    # No --region: the token's region ("default") is the worker's.
    state_dir = tmp_path / "w"
    first = start(workers, worker_database_url, state_dir, mint_token(database_url))
    listed = corral(database_url, "workers", "list", "-o", "json")
    assert '"region": "default"' in listed.stdout, listed.stdout
    wait_until(lambda: " started: " in first.output(), 10, "the start-up line")
    assert "region=default " in first.output(), first.output()
    first.signal()
    assert first.wait(30) == 0
    # Started again with its stored credential: the same region.
    again = start(workers, worker_database_url, state_dir, None)
    wait_until(lambda: " started: " in again.output(), 10, "the start-up line")
    assert "region=default " in again.output(), again.output()


def holding_one(
    workers: list[WorkerProcess], admin_url: str, worker_url: str, tmp_path: Path, sleep_s: float
) -> tuple[WorkerProcess, str]:
    """A hand-run worker on queue t once it holds one `hold` job of `sleep_s`."""
    with queue.Queue.connect(admin_url) as q:
        q.enqueue("hold", {"sleep_s": sleep_s}, queue="t")
    w = start(workers, worker_url, tmp_path / "w", mint_token(admin_url))
    wait_until(lambda: w.status()["in_flight"] == 1, 30, "the job in flight")
    return w, str(w.status()["worker_id"])


def test_worker_drain_says_where_the_drain_is_while_it_waits(
    database_url: str, worker_database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w, worker_id = holding_one(workers, database_url, worker_database_url, tmp_path, 8.0)
    done = corral(
        database_url, "worker", "drain", "--port", str(w.port), "--state-dir",
        str(tmp_path / "w"), "--timeout", "60s",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"worker {worker_id}: draining, 1 in flight (" in done.stderr, done.stderr
    assert done.stdout.strip() == f"worker {worker_id}: drained, 0 in flight", done.stdout


def test_workers_drain_wait_says_where_the_drain_is_until_it_is_drained(
    database_url: str, worker_database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    w, worker_id = holding_one(workers, database_url, worker_database_url, tmp_path, 8.0)
    done = corral(database_url, "workers", "drain", worker_id, "--wait", "--timeout", "60s")
    assert done.returncode == 0, done.stderr
    assert f"worker {worker_id} (by-hand): draining, 1 job(s) in flight (" in done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        f"worker {worker_id} (by-hand) is draining",
        f"worker {worker_id} (by-hand) is drained",
    ]
    assert w.wait(30) == 0

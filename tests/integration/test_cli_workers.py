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

"""What each stop signal does to a real `corral worker` process against a
real PostgreSQL: SIGQUIT drains (up to --drain-timeout), SIGTERM and SIGINT
keep a short grace (--term-grace) then hand back, a second signal of any
kind stops at once. Every worker connects as the least-privileged worker
role, as in a pod."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from corral import queue
from tests.integration._workers import WorkerProcess, starting_workers, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def start(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    with starting_workers(database_url, worker_database_url, tmp_path, queues="t") as begin:
        yield lambda *args: begin("w1", *args)


def test_sigquit_lets_a_long_job_finish_then_exits_0(
    database_url: str, start: Callable[..., WorkerProcess]
) -> None:
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("hold", {"sleep_s": 3}, queue="t")
        # A job enqueued after the signal is not claimed: the worker drains.
        w = start("--drain-timeout", "1h", "--term-grace", "0s")
        wait_until(lambda: w.status()["in_flight"] == 1, what="the job in flight")
        w.signal(signal.SIGQUIT)
        wait_until(lambda: w.status()["state"] == "draining", 5, "draining")
        later = q.enqueue("hold", {"sleep_s": 0}, queue="t")
        assert w.wait(30) == 0, w.output()
        job = q.get_job(job_id)
        # It ran to the end (3 s, longer than --term-grace): completed, once.
        assert (job.state, job.attempt) == ("completed", 1), job
        assert q.get_job(later).state == "pending"
    assert "SIGQUIT" in w.output() and "--drain-timeout" in w.output()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_hand_back_a_job_longer_than_the_grace_and_exit_0(
    database_url: str, start: Callable[..., WorkerProcess], sig: signal.Signals
) -> None:
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("hold", {"sleep_s": 30}, queue="t")
        w = start("--term-grace", "1s", "--drain-timeout", "1h")
        wait_until(lambda: w.status()["in_flight"] == 1, what="the job in flight")
        sent = time.monotonic()
        w.signal(sig)
        assert w.wait(20) == 0, w.output()
        assert 1.0 <= time.monotonic() - sent < 15  # the grace, not the drain timeout
        job = q.get_job(job_id)
        # Back in the queue at once; the interrupted run used up no attempt.
        assert (job.state, job.attempt, job.last_error) == ("pending", 0, None), job
    assert "handed 1 unfinished job(s) back" in w.output()


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (signal.SIGQUIT, signal.SIGTERM),
        (signal.SIGTERM, signal.SIGQUIT),
        (signal.SIGINT, signal.SIGINT),
    ],
)
def test_a_second_signal_of_any_kind_stops_the_worker_at_once(
    database_url: str,
    start: Callable[..., WorkerProcess],
    first: signal.Signals,
    second: signal.Signals,
) -> None:
    with queue.Queue.connect(database_url) as q:
        q.enqueue("hold", {}, queue="t")
    w = start("--term-grace", "1h", "--drain-timeout", "1h")
    wait_until(lambda: w.status()["in_flight"] == 1, what="a job in flight")
    w.signal(first)
    wait_until(lambda: w.status()["state"] == "draining", 5, "draining")
    sent = time.monotonic()
    w.signal(second)
    assert w.wait(10) == 1, w.output()
    assert time.monotonic() - sent < 5
    assert "stopping at once" in w.output()


def test_the_grace_and_the_drain_timeout_can_come_from_the_config_file(
    database_url: str, start: Callable[..., WorkerProcess], tmp_path: Path
) -> None:
    config = tmp_path / "worker.toml"
    config.write_text('term-grace = "1s"\ndrain-timeout = "1h"\n')
    with queue.Queue.connect(database_url) as q:
        job_id = q.enqueue("hold", {"sleep_s": 30}, queue="t")
        w = start("--config", str(config))
        wait_until(lambda: w.status()["in_flight"] == 1, what="the job in flight")
        sent = time.monotonic()
        w.signal(signal.SIGTERM)
        assert w.wait(20) == 0, w.output()
        assert 1.0 <= time.monotonic() - sent < 15
        assert (q.get_job(job_id).state, q.get_job(job_id).attempt) == ("pending", 0)

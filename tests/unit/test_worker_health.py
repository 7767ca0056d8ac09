"""The worker's /healthz verdict (`Worker.is_healthy`): a worker that cannot
make progress says so, so that Kubernetes restarts it; one riding out a short
outage does not."""

from __future__ import annotations

import time

from corral.worker.completions import Flusher
from corral.worker.config import WorkerSettings
from corral.worker.heartbeat import Heartbeat
from corral.worker.probes import FLUSH_STALL_S
from corral.worker.runtime import Worker


def _worker() -> Worker:
    settings = WorkerSettings.from_raw(
        database_url="postgresql://corral:pw@db.example/corral", queues="q"
    )
    worker = Worker(settings)
    worker.worker_id = "7"
    return worker


def _beat(worker: Worker, last_ok: float) -> None:
    beat = Heartbeat.__new__(Heartbeat)
    beat.last_ok = last_ok
    worker._heartbeat = beat


def _flusher(worker: Worker, failing_since: float) -> None:
    flusher = Flusher.__new__(Flusher)
    flusher.failing_since = failing_since
    worker._flusher = flusher


def test_a_worker_whose_beats_and_writes_succeed_is_healthy() -> None:
    worker = _worker()
    _beat(worker, time.monotonic())
    _flusher(worker, 0.0)
    assert worker.is_healthy() == (True, "ok")


def test_completions_that_cannot_be_written_past_the_limit_fail_healthz() -> None:
    worker = _worker()
    _beat(worker, time.monotonic())
    _flusher(worker, time.monotonic() - 5)  # a short outage: still healthy
    assert worker.is_healthy()[0]
    _flusher(worker, time.monotonic() - FLUSH_STALL_S - 1)
    healthy, why = worker.is_healthy()
    assert not healthy and why.startswith("completions could not be written for"), why


def test_a_heartbeat_silent_for_30_s_fails_healthz() -> None:
    worker = _worker()
    _flusher(worker, 0.0)
    _beat(worker, time.monotonic() - 31)
    healthy, why = worker.is_healthy()
    assert not healthy and why.startswith("no successful heartbeat for"), why


def test_a_slow_heartbeat_interval_stretches_the_staleness_limit() -> None:
    from corral.worker.probes import liveness

    assert liveness(heartbeat_age_s=45, heartbeat_interval_s=5, flush_stalled_s=0) == (True, "ok")
    healthy, why = liveness(heartbeat_age_s=51, heartbeat_interval_s=5, flush_stalled_s=0)
    assert not healthy and why == "no successful heartbeat for 51s"


def test_a_worker_is_ready_only_once_enrolled_and_while_active() -> None:
    from corral.worker.drain import State
    from corral.worker.probes import readiness

    assert readiness(False, State.ACTIVE) == (False, "not enrolled yet")
    assert readiness(True, State.DRAINING) == (False, "draining: not accepting jobs")
    assert readiness(True, State.ACTIVE) == (True, "ready")

"""The operator's autoscaler hears enqueues (corral.controller.autoscaler):
its LISTEN connection against a real PostgreSQL makes a pool due the moment
a job lands on one of its queues, however long the pool's pollSeconds."""

from __future__ import annotations

import queue as threadsafe
import threading
import time

from corral.api import WorkerPool
from corral.controller.autoscaler import Autoscaler
from corral.queue import Queue
from tests.integration._enrolled import run_sql
from tests.integration._workers import wait_until

POLL_S = 300  # the pool's own poll: far longer than the test waits


def _pool(queues: list[str]) -> WorkerPool:
    return WorkerPool.from_kube({
        "metadata": {"name": "email", "namespace": "jobs", "generation": 1},
        "spec": {"queues": queues, "autoscaling": {"pollSeconds": POLL_S}},
    })  # fmt: skip


def _next(evaluated: threadsafe.Queue[str], timeout_s: float) -> str | None:
    try:
        return evaluated.get(timeout=timeout_s)
    except threadsafe.Empty:
        return None


def test_an_enqueue_wakes_the_pools_serving_its_queue_long_before_their_poll(
    database_url: str,
) -> None:
    evaluated: threadsafe.Queue[str] = threadsafe.Queue()
    scaler = Autoscaler(lambda _ns, name: evaluated.put(name), database_url)
    scaler.track(_pool(["email"]))
    stop = threading.Event()
    scaler.start(stop)
    try:
        assert _next(evaluated, 10) == "email"  # a new pool is due at once
        wait_until(
            lambda: run_sql(
                database_url,
                "SELECT 1 FROM pg_stat_activity WHERE datname = current_database()"
                " AND query ILIKE 'LISTEN%%'",
            ),
            what="the autoscaler's LISTEN",
        )
        # Listening, it looks at every pool once (what it may have missed):
        # let that pass, then only a notification can bring the next one.
        time.sleep(1.0)
        while not evaluated.empty():
            evaluated.get()
        with Queue.connect(database_url) as q:
            q.enqueue("noop", queue="sms")  # a queue the pool does not serve
            time.sleep(1.0)
            assert evaluated.empty(), "a job on another queue woke the pool"
            q.enqueue("noop", queue="email")
        assert _next(evaluated, 20) == "email", "the enqueue did not wake the pool"
    finally:
        stop.set()

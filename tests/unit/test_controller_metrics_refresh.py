"""The queue figures are refreshed off the scrape path: a database that
accepts connections and never answers (a frozen server) must not hold up
`/metrics`, or Prometheus' scrape times out, every operator series vanishes
and `absent(corral_operator_leader)` pages while the operator leads.
`corral_operator_database_up` says whether the last read got through."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest

from corral.controller import metrics
from corral.queue.records import JobState, QueueStats
from tests._metrics_doc import samples

# How long a test waits for something that should take milliseconds; a
# failing test waits this long, a passing one does not.
PATIENCE_S = 5.0
PENDING = (("queue", "q"), ("state", "pending"))


def _collector(
    read: Callable[[], list[QueueStats]], now: list[float], **kwargs: Any
) -> tuple[CollectorRegistry, metrics.QueueStatsCollector]:
    registry = CollectorRegistry()
    collector = metrics.QueueStatsCollector(read, clock=lambda: now[0], **kwargs)
    registry.register(collector)
    return registry, collector


def _up(page: str) -> float | None:
    return samples(page, "corral_operator_database_up").get(())


def _scrape_in_thread(registry: CollectorRegistry) -> tuple[threading.Event, list[str]]:
    done = threading.Event()
    pages: list[str] = []

    def scrape() -> None:
        pages.append(generate_latest(registry).decode())
        done.set()

    threading.Thread(target=scrape, daemon=True).start()
    return done, pages


def test_a_scrape_answers_while_the_database_never_does() -> None:
    release = threading.Event()
    reads: list[int] = []

    def read() -> list[QueueStats]:
        reads.append(1)
        release.wait(30)  # a frozen server: connected, no answer
        raise RuntimeError("database unreachable: connecting timed out")

    registry, _ = _collector(read, [100.0])
    try:
        for _ in range(3):
            done, pages = _scrape_in_thread(registry)
            assert done.wait(PATIENCE_S), "a scrape waited for the database"
            assert not release.is_set()  # the read is still hanging
            assert samples(pages[0], "corral_queue_jobs") == {}
            assert _up(pages[0]) == 0  # no read has got through yet
        assert reads == [1]  # one read in flight, not one per scrape
    finally:
        release.set()


def _inline(refresh: Callable[[], None]) -> None:
    refresh()  # the refresh runs inside the scrape: no thread, no timing


def test_a_failed_refresh_reads_0_and_is_retried_only_after_the_interval() -> None:
    now = [100.0]
    fail = [True]
    reads: list[float] = []

    def read() -> list[QueueStats]:
        reads.append(now[0])
        if fail[0]:
            raise RuntimeError("database unreachable: connection refused")
        return [QueueStats(queue="q", counts={JobState.PENDING: 3})]

    registry, _ = _collector(read, now, min_interval_s=15, spawn=_inline)
    page = generate_latest(registry).decode()
    assert _up(page) == 0
    assert samples(page, "corral_queue_jobs") == {}
    now[0] += 10
    assert _up(generate_latest(registry).decode()) == 0
    assert reads == [100.0]  # the failure is kept for the interval, like a result
    fail[0] = False
    now[0] += 10
    page = generate_latest(registry).decode()
    assert reads == [100.0, 120.0]
    assert _up(page) == 1
    assert samples(page, "corral_queue_jobs")[PENDING] == 3


def test_the_last_figures_stay_while_a_refresh_is_slow_and_go_once_it_is_overdue() -> None:
    now = [100.0]
    reads: list[float] = []
    started: list[Callable[[], None]] = []  # refreshes begun, run when the test says

    def read() -> list[QueueStats]:
        reads.append(now[0])
        return [QueueStats(queue="q", counts={JobState.PENDING: len(reads)})]

    registry, _ = _collector(read, now, min_interval_s=15, wait_s=0, spawn=started.append)
    assert _up(generate_latest(registry).decode()) == 0  # the first read is under way
    started.pop()()
    page = generate_latest(registry).decode()
    assert (_up(page), samples(page, "corral_queue_jobs")[PENDING]) == (1, 1)
    now[0] += 20  # due: this scrape starts a refresh, which hangs
    page = generate_latest(registry).decode()
    assert len(started) == 1
    assert (_up(page), samples(page, "corral_queue_jobs")[PENDING]) == (1, 1)
    now[0] += 15  # the refresh has run a whole interval: overdue
    page = generate_latest(registry).decode()
    assert _up(page) == 0
    assert samples(page, "corral_queue_jobs") == {}
    assert len(started) == 1  # still one refresh in flight
    started.pop()()  # it gets through at last
    page = generate_latest(registry).decode()
    assert (_up(page), samples(page, "corral_queue_jobs")[PENDING]) == (1, 2)
    assert reads == [100.0, 135.0]

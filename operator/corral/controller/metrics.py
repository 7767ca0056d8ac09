"""The operator's Prometheus metrics and its small HTTP endpoint.

`/metrics` (prometheus-client text format) and `/healthz` (200 while the
process is healthy, leader or standby; 503 once it lost leadership or kopf
stopped). Started by `corral.controller.cli`; updated by the handlers (each
pool's status, through `record_pool`), the autoscaler, and by
`QueueStatsCollector` (the leader's view of every queue and of the database,
refreshed in the background when scrapes ask for it). Every name is
listed in docs/metrics.md; a test scrapes a real operator against that list.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import prometheus_client
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, CollectorRegistry

from corral.queue.records import JobState, QueueStats

log = logging.getLogger(__name__)

# prometheus-client adds a `<name>_created` gauge beside every counter and
# histogram (an OpenMetrics notion); in the text format Prometheus scrapes it
# is one more series per label set that no query here uses.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

RECONCILES = Counter(
    "corral_operator_reconciles_total",
    "Reconciles run, by kind of object and outcome.",
    ["kind", "outcome"],
)
_POOL_LABELS = ("namespace", "pool")  # the first labels of every pool series


def _pool_gauge(name: str, help: str, *extra_labels: str) -> Gauge:
    """A gauge of one pool, labelled by its namespace and name (then `extra_labels`)."""
    return Gauge(name, help, [*_POOL_LABELS, *extra_labels])


POOL_QUEUE_DEPTH = _pool_gauge(
    "corral_pool_queue_depth", "Jobs waiting in a pool's queues for its region."
)
POOL_REPLICAS = _pool_gauge(
    "corral_pool_replicas", "Worker pods of a pool: desired, existing and ready.", "which"
)
POOL_WORKERS = _pool_gauge(
    "corral_pool_workers", "Workers of a pool heartbeating into the registry."
)
POOL_INFO = _pool_gauge(
    "corral_pool_info",
    "Always 1: names the Region a pool resolved to (join on namespace and pool).",
    "region",
)
POOL_SCALING_LIMITED = _pool_gauge(
    "corral_pool_scaling_limited",
    "1 while demand asks for more workers than the pool's replicas.max allows.",
)
POOL_DEGRADED = _pool_gauge(
    "corral_pool_degraded",
    "1 while the pool's Degraded condition is True, labelled with its reason; no series "
    "while it is not.",
    "reason",
)
# seconds; a drain waits for the jobs in flight, which may run for minutes
SCALE_DOWN_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
POOL_SCALE_DOWN = Histogram(
    "corral_pool_scale_down_duration_seconds",
    "Drain-first scale-downs, from the start of the drain until the pool's status "
    "no longer carries it (replicas lowered, or the drain called off).",
    _POOL_LABELS,
    buckets=SCALE_DOWN_BUCKETS,
)
LEADER = Gauge("corral_operator_leader", "1 while this replica is the active operator.")
SCALE_EVALUATIONS = Counter(
    "corral_operator_scale_evaluations_total",
    "Autoscaler evaluations of a pool (notifications are coalesced into these).",
)
SCALE_EVALUATION_SECONDS = Histogram(
    "corral_operator_scale_evaluation_seconds",
    "How long one autoscaler evaluation of a pool took: reading the pool, its "
    "Deployment and its queues, deciding, and writing replicas and status.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SCALE_NOTIFICATIONS = Counter(
    "corral_operator_queue_notifications_total",
    "Wake-ups received from the queue's NOTIFY channel (each may name several queues).",
)
REGISTRY_PURGED = Counter(
    "corral_operator_registry_purged_total",
    "Rows deleted by registry retention: workers removed or silent, tokens dead (--registry-retention).",
    ["what"],
)
SCHEDULE_OCCURRENCES = Counter(
    "corral_operator_schedule_occurrences_total",
    "Schedule occurrences the operator's firing passes recorded, by outcome (enqueued, skipped).",
    ["outcome"],
)
SCALE_CHANGES = Counter(
    "corral_operator_scale_changes_total",
    "Changes of a pool's Deployment replicas made by the autoscaler, by direction.",
    ["direction"],
)


# What record_pool last saw of each pool, to notice a Region change and the
# end of a drain. Handlers, the autoscaler and the resync all record pools
# from their own threads.
_pools_lock = threading.Lock()
_pool_regions: dict[tuple[str, str], str] = {}
_pool_drains: dict[tuple[str, str], str] = {}  # the drain's startedAt, as written
_pool_degraded: dict[tuple[str, str], str] = {}  # the Degraded reason exported


def record_pool(
    namespace: str, name: str, status: dict[str, Any], now: datetime | None = None
) -> None:
    """Export a pool's `.status` (as written to the API, camelCase)."""
    if status.get("queueDepth") is not None:
        POOL_QUEUE_DEPTH.labels(namespace, name).set(status["queueDepth"])
    for which, key in (
        ("desired", "desiredReplicas"),
        ("current", "replicas"),
        ("ready", "readyReplicas"),
    ):
        if status.get(key) is not None:
            POOL_REPLICAS.labels(namespace, name, which).set(status[key])
    if status.get("workers") is not None:
        POOL_WORKERS.labels(namespace, name).set(status["workers"])
    limited = any(
        c.get("type") == "ScalingLimited" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    POOL_SCALING_LIMITED.labels(namespace, name).set(int(limited))
    degraded = next(
        (
            str(c.get("reason") or "Unknown")
            for c in status.get("conditions") or []
            if c.get("type") == "Degraded" and c.get("status") == "True"
        ),
        None,
    )
    pool = (namespace, name)
    with _pools_lock:
        # One series a pool, and only while it is Degraded: the reasons are
        # the status decider's few names (and the Deployment controller's).
        exported = _pool_degraded.get(pool)
        if exported is not None and exported != degraded:
            with contextlib.suppress(KeyError):
                POOL_DEGRADED.remove(namespace, name, exported)
            del _pool_degraded[pool]
        if degraded is not None:
            POOL_DEGRADED.labels(namespace, name, degraded).set(1)
            _pool_degraded[pool] = degraded
        region = status.get("region")
        if region and _pool_regions.get(pool) != region:
            with contextlib.suppress(KeyError):
                POOL_INFO.remove(namespace, name, _pool_regions[pool])
            POOL_INFO.labels(namespace, name, region).set(1)
            _pool_regions[pool] = region
        started = (status.get("scaleDown") or {}).get("startedAt")
        previous = _pool_drains.get(pool)
        if previous is not None and previous != started:
            _observe_drain(namespace, name, previous, now)
        if started is None:
            _pool_drains.pop(pool, None)
        else:
            _pool_drains[pool] = started


def _observe_drain(namespace: str, name: str, started_at: str, now: datetime | None) -> None:
    try:
        began = datetime.fromisoformat(started_at)
    except ValueError:
        return  # not a time this operator wrote; nothing to measure
    ended = now or datetime.now(began.tzinfo)
    POOL_SCALE_DOWN.labels(namespace, name).observe(max(0.0, (ended - began).total_seconds()))


def forget_pool(namespace: str, name: str) -> None:
    # A pool without a sample yet has nothing to remove.
    for which in ("desired", "current", "ready"):
        with contextlib.suppress(KeyError):
            POOL_REPLICAS.remove(namespace, name, which)
    for family in (POOL_QUEUE_DEPTH, POOL_WORKERS, POOL_SCALING_LIMITED, POOL_SCALE_DOWN):
        with contextlib.suppress(KeyError):
            family.remove(namespace, name)
    with _pools_lock:
        region = _pool_regions.pop((namespace, name), None)
        _pool_drains.pop((namespace, name), None)
        degraded = _pool_degraded.pop((namespace, name), None)
        if degraded is not None:
            with contextlib.suppress(KeyError):
                POOL_DEGRADED.remove(namespace, name, degraded)
        if region is not None:
            with contextlib.suppress(KeyError):
                POOL_INFO.remove(namespace, name, region)


def _in_thread(refresh: Callable[[], None]) -> None:
    threading.Thread(target=refresh, name="queue-figures", daemon=True).start()


class QueueStatsCollector:
    """Every queue's job counts by state and its oldest ready job, read
    through `read` (`corral.queue.Queue.stats`, on a connection of its own so
    a scrape never waits behind a reconcile), and whether that read got
    through (`corral_operator_database_up`).

    The read runs off the scrape path, in a thread of its own (`spawn`): a
    database that accepts connections and never answers must not hold up
    `/metrics`, or Prometheus' scrape times out and every operator series,
    `corral_operator_leader` included, vanishes with it. A scrape starts a
    refresh when the last one is `min_interval_s` old (a read costs a count
    over the queue's tables; a failure is kept as long as a result, so a dead
    database is not retried on every scrape) and waits for it at most
    `wait_s`; otherwise it answers with what it has. One read at a time.

    While a refresh runs, the last figures stay, until it has run
    `min_interval_s` itself: then, and after a failed read, the families come
    out empty and the database reads 0 (the failure is logged). A stale
    figure would look like a healthy queue.
    """

    def __init__(
        self,
        read: Callable[[], Sequence[QueueStats]],
        *,
        min_interval_s: float = 15.0,
        wait_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        spawn: Callable[[Callable[[], None]], None] = _in_thread,
    ) -> None:
        self._read = read
        self._min_interval_s = min_interval_s
        self._wait_s = wait_s
        self._clock = clock
        self._spawn = spawn
        self._lock = threading.Lock()  # held for bookkeeping only, never across a read
        self._finished_at: float | None = None  # when the last read ended
        self._stats: Sequence[QueueStats] | None = None  # its figures; None: it failed
        self._running_since: float | None = None  # the read in flight, if any

    def _refresh(self) -> None:
        stats: Sequence[QueueStats] | None
        try:
            stats = self._read()
        except Exception as exc:  # a scrape must answer even with the database down
            log.warning("queue figures for /metrics unavailable: %s", exc)
            stats = None
        with self._lock:
            self._finished_at = self._clock()
            self._stats = stats
            self._running_since = None

    def _refresh_and_signal(self, done: threading.Event) -> Callable[[], None]:
        def refresh() -> None:
            try:
                self._refresh()
            finally:
                done.set()

        return refresh

    def _current(self) -> tuple[bool, Sequence[QueueStats]]:
        """(database up, the figures to export), starting a refresh when due."""
        done: threading.Event | None = None
        with self._lock:
            now = self._clock()
            due = self._finished_at is None or now - self._finished_at >= self._min_interval_s
            if due and self._running_since is None:
                self._running_since = now
                done = threading.Event()
        if done is not None:
            try:
                self._spawn(self._refresh_and_signal(done))
            except Exception as exc:  # no thread to be had: say so, try again next scrape
                log.warning("cannot refresh the queue figures for /metrics: %s", exc)
                with self._lock:
                    self._running_since = None
            else:
                done.wait(self._wait_s)
        with self._lock:
            running = self._running_since
            overdue = running is not None and self._clock() - running >= self._min_interval_s
            if self._stats is None or overdue:
                return False, []
            return True, self._stats

    def describe(self) -> Iterator[Metric]:
        # Without it, registering would call collect() and query the database.
        yield from self._families(False, [])

    def collect(self) -> Iterator[Metric]:
        yield from self._families(*self._current())

    @staticmethod
    def _families(up: bool, stats: Sequence[QueueStats]) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "corral_operator_database_up",
            "1 while the leader's last read of the queue's figures got through in time.",
            value=int(up),
        )
        jobs = GaugeMetricFamily(
            "corral_queue_jobs",
            "Jobs in a queue by state; finished states count until retention removes them.",
            labels=["queue", "state"],
        )
        oldest = GaugeMetricFamily(
            "corral_queue_oldest_pending_age_seconds",
            "How long the queue's oldest ready job has waited; 0 when none waits.",
            labels=["queue"],
        )
        paused = GaugeMetricFamily(
            "corral_queue_paused", "1 while dispatch of the queue is paused.", labels=["queue"]
        )
        for queue in stats:
            # Every state, zeros included: a series that appears only with the
            # first dead job would hide that job from delta() and increase().
            for state in JobState:
                jobs.add_metric([queue.queue, str(state)], queue.counts.get(state, 0))
            oldest.add_metric([queue.queue], queue.oldest_pending_age_s or 0.0)
            paused.add_metric([queue.queue], int(queue.paused))
        yield from (jobs, oldest, paused)


def register_queue_stats(
    read: Callable[[], Sequence[QueueStats]], registry: CollectorRegistry = REGISTRY
) -> QueueStatsCollector:
    """Export the queue's figures from this process (the leader calls it once)."""
    collector = QueueStatsCollector(read)
    registry.register(collector)
    return collector


def serve(host: str, port: int, healthy: Callable[[], bool]) -> ThreadingHTTPServer:
    """Serve /metrics and /healthz from a daemon thread; returns the server
    (its `server_address` tells the port when `port` was 0)."""

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest())
            elif path in ("/healthz", "/livez", "/readyz"):
                ok = healthy()
                self._reply(200 if ok else 503, "text/plain", b"ok\n" if ok else b"unhealthy\n")
            else:
                self._reply(404, "text/plain", b"try /metrics or /healthz\n")

        def _reply(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the operator's log

    server = ThreadingHTTPServer((host, port), _Handler)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server

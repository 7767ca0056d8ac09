"""The worker's Prometheus metrics, served at `/metrics` by `corral.worker.endpoint`.

The runtime records into plain counters and bucket arrays on its hot path
(no lock, no label lookup per job: a no-op job costs microseconds, and a
prometheus-client `labels().observe()` would be a visible share of that); the
collector turns them into metric families only when Prometheus scrapes.

prometheus_client (and urllib, http.server and email under it) is imported by
the first scrape, not at start: a worker claims before anyone scrapes it
(`tests/unit/test_worker_start_imports.py` keeps it so).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import HistogramMetricFamily, Metric

# seconds
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    30,
    60,
    300,
)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)

# corral_worker_jobs_total's outcomes: how a run ended (`completed`, or the
# failure reason of corral.worker.jobs) and what became of a completion the
# database refused. Those last three are counted on top of the job's
# `completed`, so a sum over every outcome counts such a job twice.
ALSO_COMPLETED = ("lease_lost", "result_refused", "unstorable")
OUTCOMES = ("completed", "exception", "timeout", "payload", "unknown_kind", *ALSO_COMPLETED)
SCHEDULE_OUTCOMES = ("enqueued", "skipped")


class Histogram:
    """Cumulative-at-scrape histogram with O(log buckets) observe and no lock
    (the runtime is one asyncio thread)."""

    __slots__ = ("bounds", "counts", "n", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.n += 1

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        running = 0.0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_fmt(bound), running))
        out.append(("+Inf", running + self.counts[-1]))
        return out


def _fmt(value: float) -> str:
    return repr(float(value))


class WorkerMetrics:
    """Everything the worker counts. `registry` is private to this worker so
    that several workers (tests, embedding) never collide."""

    def __init__(self, gauges: Callable[[], dict[str, float]], queues: Iterable[str] = ()) -> None:
        self.jobs: dict[tuple[str, str], int] = {}  # (queue, outcome) -> count
        # Queues whose every outcome is exported, zeros included, from the
        # start: a series born at its first increment hides that increment
        # from increase(). A queue counted later joins them.
        self.queues: tuple[str, ...] = tuple(queues)
        self.duration: dict[str, Histogram] = {}  # queue -> job run time
        self.latency: dict[str, Histogram] = {}  # queue -> enqueue (or run_at) to start
        self.claim_batch = Histogram(BATCH_BUCKETS)
        self.flush_batch = Histogram(BATCH_BUCKETS)
        self.loop_stalls = 0  # times the event loop stopped turning (corral.worker.loopwatch)
        # outcome (enqueued, skipped) -> schedule occurrences this worker fired
        self.schedule_occurrences: dict[str, int] = {}
        self._gauges = gauges
        self._registry: CollectorRegistry | None = None  # built by the first scrape

    @property
    def registry(self) -> CollectorRegistry:
        """This worker's own registry (several workers in one process, as in
        tests or embedding, never collide), built on first use."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry(auto_describe=False)
            self._registry.register(_Collector(self))
        return self._registry

    def count(self, queue: str, outcome: str, n: int = 1) -> None:
        key = (queue, outcome)
        self.jobs[key] = self.jobs.get(key, 0) + n

    def count_occurrences(self, outcome: str, n: int) -> None:
        if n:
            self.schedule_occurrences[outcome] = self.schedule_occurrences.get(outcome, 0) + n

    def observe_duration(self, queue: str, seconds: float) -> None:
        h = self.duration.get(queue)
        if h is None:
            h = self.duration[queue] = Histogram(DURATION_BUCKETS)
        h.observe(seconds)

    def observe_latency(self, queue: str, seconds: float) -> None:
        h = self.latency.get(queue)
        if h is None:
            h = self.latency[queue] = Histogram(LATENCY_BUCKETS)
        h.observe(seconds)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class _Collector:
    def __init__(self, metrics: WorkerMetrics) -> None:
        self._m = metrics

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        m = self._m
        jobs = CounterMetricFamily(
            "corral_worker_jobs",
            "Jobs finished by this worker, by queue and outcome",
            labels=["queue", "outcome"],
        )
        counted = m.jobs
        for queue in sorted({*m.queues, *(queue for queue, _ in counted)}):
            for outcome in OUTCOMES:
                jobs.add_metric([queue, outcome], counted.get((queue, outcome), 0))
        for (queue, outcome), value in sorted(counted.items()):
            if outcome not in OUTCOMES:  # not one of ours: still counted
                jobs.add_metric([queue, outcome], value)
        yield jobs
        yield _histogram(
            "corral_worker_job_duration_seconds", "Time a handler ran, by queue", m.duration
        )
        yield _histogram(
            "corral_worker_enqueue_to_start_seconds",
            "Time from when a job became runnable (enqueue or run_at) to its start, by queue",
            m.latency,
        )
        for name, doc, h in (
            ("corral_worker_claim_batch_size", "Jobs per claim statement", m.claim_batch),
            ("corral_worker_completion_batch_size", "Results per completion flush", m.flush_batch),
        ):
            fam = HistogramMetricFamily(name, doc)
            fam.add_metric([], h.buckets(), sum_value=h.total)
            yield fam
        yield CounterMetricFamily(
            "corral_worker_event_loop_stalls",
            "Times the worker's event loop was blocked past its threshold (an async handler "
            "that does blocking work)",
            value=m.loop_stalls,
        )
        occurrences = CounterMetricFamily(
            "corral_worker_schedule_occurrences",
            "Schedule occurrences this worker's firing passes recorded, by outcome (enqueued: "
            "a job; skipped: overlap=skip while the previous job ran)",
            labels=["outcome"],
        )
        for outcome in sorted({*SCHEDULE_OUTCOMES, *m.schedule_occurrences}):
            occurrences.add_metric([outcome], m.schedule_occurrences.get(outcome, 0))
        yield occurrences
        for gauge, level in m._gauges().items():
            yield GaugeMetricFamily(
                f"corral_worker_{gauge}", _GAUGE_DOCS.get(gauge, gauge), value=level
            )


_GAUGE_DOCS = {
    "in_flight": "Jobs this worker is running now",
    "concurrency": "Jobs this worker may run at once",
    "draining": "1 while the worker drains or is drained",
    "ready": "1 when enrolled and accepting jobs",
    "stuck_handlers": "Sync handlers still running in their thread past their job's timeout "
    "(each holds a slot)",
}


def _histogram(name: str, doc: str, per_queue: dict[str, Histogram]) -> HistogramMetricFamily:
    from prometheus_client.core import HistogramMetricFamily

    fam = HistogramMetricFamily(name, doc, labels=["queue"])
    for queue, h in sorted(per_queue.items()):
        fam.add_metric([queue], h.buckets(), sum_value=h.total)
    return fam


def parse_text(text: str) -> dict[str, Any]:
    """Tiny parser for tests and `corral worker prestop`: sample name+labels -> value."""
    out: dict[str, Any] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out

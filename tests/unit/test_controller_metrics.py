"""The operator's metrics from a pool's status and from the queue's figures:
what the alerts and the dashboard rely on (docs/metrics.md)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from corral.controller import metrics
from corral.queue.records import JobState, QueueStats
from tests._metrics_doc import problems, samples

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def _status(**extra: Any) -> dict[str, Any]:
    return {
        "region": "eu",
        "replicas": 2,
        "readyReplicas": 1,
        "desiredReplicas": 3,
        "queueDepth": 40,
        "workers": 1,
        **extra,
    }


def _pool() -> tuple[str, str]:
    return "jobs", f"p-{uuid.uuid4().hex[:6]}"


def test_a_pools_status_becomes_its_replicas_depth_workers_and_region() -> None:
    namespace, pool = _pool()
    metrics.record_pool(namespace, pool, _status())
    labels = {"namespace": namespace, "pool": pool}
    assert _value("corral_pool_replicas", which="desired", **labels) == 3
    assert _value("corral_pool_replicas", which="ready", **labels) == 1
    assert _value("corral_pool_queue_depth", **labels) == 40
    assert _value("corral_pool_workers", **labels) == 1
    assert _value("corral_pool_info", region="eu", **labels) == 1
    assert _value("corral_pool_scaling_limited", **labels) == 0


def test_scaling_limited_follows_the_pools_condition() -> None:
    namespace, pool = _pool()
    limited = {"type": "ScalingLimited", "status": "True", "reason": "AtMaxReplicas"}
    metrics.record_pool(namespace, pool, _status(conditions=[limited]))
    assert _value("corral_pool_scaling_limited", namespace=namespace, pool=pool) == 1
    metrics.record_pool(namespace, pool, _status(conditions=[{**limited, "status": "False"}]))
    assert _value("corral_pool_scaling_limited", namespace=namespace, pool=pool) == 0


def test_a_pool_moved_to_another_region_keeps_one_info_series() -> None:
    namespace, pool = _pool()
    metrics.record_pool(namespace, pool, _status(region="eu"))
    metrics.record_pool(namespace, pool, _status(region="us"))
    assert _value("corral_pool_info", namespace=namespace, pool=pool, region="eu") is None
    assert _value("corral_pool_info", namespace=namespace, pool=pool, region="us") == 1


def test_a_finished_drain_is_observed_once_with_its_duration() -> None:
    namespace, pool = _pool()
    drain = {"targetReplicas": 1, "pods": ["a"], "startedAt": "2026-01-01T12:00:00Z"}
    labels = {"namespace": namespace, "pool": pool}
    metrics.record_pool(namespace, pool, _status(scaleDown=drain), now=T0 + timedelta(seconds=5))
    metrics.record_pool(namespace, pool, _status(scaleDown=drain), now=T0 + timedelta(seconds=9))
    assert _value("corral_pool_scale_down_duration_seconds_count", **labels) in (None, 0)
    metrics.record_pool(namespace, pool, _status(), now=T0 + timedelta(seconds=42))
    metrics.record_pool(namespace, pool, _status(), now=T0 + timedelta(seconds=60))
    assert _value("corral_pool_scale_down_duration_seconds_count", **labels) == 1
    assert _value("corral_pool_scale_down_duration_seconds_sum", **labels) == 42
    assert _value("corral_pool_scale_down_duration_seconds_bucket", le="60.0", **labels) == 1
    assert _value("corral_pool_scale_down_duration_seconds_bucket", le="30.0", **labels) == 0


def test_a_drain_replaced_by_a_new_one_counts_the_first() -> None:
    namespace, pool = _pool()
    first = {"targetReplicas": 2, "pods": ["a"], "startedAt": "2026-01-01T12:00:00Z"}
    second = {"targetReplicas": 1, "pods": ["b"], "startedAt": "2026-01-01T12:00:20Z"}
    metrics.record_pool(namespace, pool, _status(scaleDown=first), now=T0)
    metrics.record_pool(namespace, pool, _status(scaleDown=second), now=T0 + timedelta(seconds=20))
    labels = {"namespace": namespace, "pool": pool}
    assert _value("corral_pool_scale_down_duration_seconds_sum", **labels) == 20


def _degraded(reason: str, status: str = "True") -> dict[str, str]:
    return {"type": "Degraded", "status": status, "reason": reason, "message": "..."}


def _degraded_series(namespace: str, pool: str) -> dict[str, float]:
    """reason -> value of the pool's corral_pool_degraded series."""
    page = generate_latest(REGISTRY).decode()
    return {
        dict(labels)["reason"]: value
        for labels, value in samples(page, "corral_pool_degraded").items()
        if dict(labels)["namespace"] == namespace and dict(labels)["pool"] == pool
    }


def test_a_degraded_pool_has_one_series_naming_its_reason_until_it_recovers() -> None:
    namespace, pool = _pool()
    metrics.record_pool(namespace, pool, _status(conditions=[_degraded("AsExpected", "False")]))
    assert _degraded_series(namespace, pool) == {}
    metrics.record_pool(namespace, pool, _status(conditions=[_degraded("DatabaseUnreachable")]))
    assert _degraded_series(namespace, pool) == {"DatabaseUnreachable": 1}
    metrics.record_pool(namespace, pool, _status(conditions=[_degraded("RegionNotFound")]))
    assert _degraded_series(namespace, pool) == {"RegionNotFound": 1}
    metrics.record_pool(namespace, pool, _status(conditions=[_degraded("AsExpected", "False")]))
    assert _degraded_series(namespace, pool) == {}


def test_a_deleted_pool_leaves_no_series() -> None:
    namespace, pool = _pool()
    metrics.record_pool(namespace, pool, _status(conditions=[_degraded("ForeignDeployment")]))
    assert _degraded_series(namespace, pool) == {"ForeignDeployment": 1}
    metrics.forget_pool(namespace, pool)
    page = generate_latest(REGISTRY).decode()
    assert f'pool="{pool}"' not in page


def _stats(*queues: QueueStats) -> list[QueueStats]:
    return list(queues)


def test_queue_figures_cover_every_state_with_zeros_and_the_oldest_wait() -> None:
    registry = CollectorRegistry()
    stats = QueueStats(
        queue="email",
        counts={JobState.PENDING: 7, JobState.DEAD: 2},
        oldest_pending_age_s=93.5,
        paused=True,
    )
    metrics.register_queue_stats(lambda: _stats(stats, QueueStats(queue="idle")), registry)
    page = generate_latest(registry).decode()
    jobs = samples(page, "corral_queue_jobs")
    assert jobs[(("queue", "email"), ("state", "pending"))] == 7
    assert jobs[(("queue", "email"), ("state", "dead"))] == 2
    assert jobs[(("queue", "email"), ("state", "running"))] == 0
    assert len(jobs) == 2 * len(JobState)
    oldest = samples(page, "corral_queue_oldest_pending_age_seconds")
    assert oldest == {(("queue", "email"),): 93.5, (("queue", "idle"),): 0.0}
    paused = samples(page, "corral_queue_paused")
    assert paused == {(("queue", "email"),): 1.0, (("queue", "idle"),): 0.0}


def test_queue_figures_are_read_at_most_once_per_interval() -> None:
    reads: list[float] = []
    now = [100.0]

    def read() -> list[QueueStats]:
        reads.append(now[0])
        return [QueueStats(queue="q", counts={JobState.PENDING: len(reads)})]

    registry = CollectorRegistry()
    registry.register(metrics.QueueStatsCollector(read, min_interval_s=15, clock=lambda: now[0]))
    first = generate_latest(registry).decode()
    now[0] += 10
    second = generate_latest(registry).decode()
    now[0] += 10
    third = generate_latest(registry).decode()
    assert reads == [100.0, 120.0]
    key = (("queue", "q"), ("state", "pending"))
    assert samples(first, "corral_queue_jobs")[key] == 1
    assert samples(second, "corral_queue_jobs")[key] == 1
    assert samples(third, "corral_queue_jobs")[key] == 2


def test_an_unreadable_database_empties_the_queue_figures_instead_of_failing_the_scrape() -> None:
    def read() -> list[QueueStats]:
        raise RuntimeError("database unreachable: connection refused")

    registry = CollectorRegistry()
    registry.register(metrics.QueueStatsCollector(read))
    page = generate_latest(registry).decode()
    assert "# TYPE corral_queue_jobs gauge" in page
    assert samples(page, "corral_queue_jobs") == {}


def test_registering_the_queue_figures_does_not_query_the_database() -> None:
    reads: list[int] = []

    def read() -> list[QueueStats]:
        reads.append(1)
        return []

    # The process-wide registry describes a collector when it is registered.
    registry = CollectorRegistry(auto_describe=True)
    metrics.register_queue_stats(read, registry)
    assert reads == []
    generate_latest(registry)
    assert reads == [1]


def test_an_operator_page_rendered_in_process_matches_the_doc() -> None:
    # What the leader serves: the module's families and the queue collector
    # (the e2e tier checks a real `corral operator` the same way).
    namespace, pool = _pool()
    metrics.record_pool(namespace, pool, _status(conditions=[_degraded("RegionNotFound")]))
    queues = CollectorRegistry()
    metrics.register_queue_stats(lambda: _stats(QueueStats(queue="q")), queues)
    page = generate_latest(REGISTRY).decode() + generate_latest(queues).decode()
    assert problems(page, "operator") == []
    metrics.forget_pool(namespace, pool)

"""WorkerPool and Region status: phase, conditions, the ready string (corral.controller.status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.api import WorkerPool, WorkerPoolStatus
from corral.controller.status import (
    DeploymentFigures,
    QueueFigures,
    region_readiness,
    region_status,
    workerpool_status,
)
from tests.unit._pools import make_pool, make_region

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)


def _deployment(
    replicas: int, ready: int, updated: int | None = None, **extra: Any
) -> DeploymentFigures:
    return DeploymentFigures(
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=replicas if updated is None else updated,
        spec_replicas=replicas,
        generation=1,
        observed_generation=1,
        **extra,
    )


def _status(pool: WorkerPool | None = None, **kwargs: Any) -> WorkerPoolStatus:
    arguments: dict[str, Any] = {
        "region": "eu-west",
        "region_exists": True,
        "deployment": _deployment(3, 3),
        "desired_replicas": 3,
        "queue": QueueFigures(depth=12, running=4, workers=3),
        "now": NOW,
    }
    arguments.update(kwargs)
    return workerpool_status(pool or make_pool(), **arguments)


def _condition(status: WorkerPoolStatus, kind: str) -> tuple[str, str, str]:
    (condition,) = [c for c in status.conditions or [] if c.type == kind]
    return condition.status, condition.reason, condition.message


def _with_status(status: WorkerPoolStatus, **spec: Any) -> WorkerPool:
    pool = make_pool(**spec)
    return pool.model_copy(update={"status": status})


def test_all_workers_ready_is_ready_with_figures_from_the_deployment_and_queue() -> None:
    status = _status()
    assert status.phase == "Ready"
    assert status.ready == "3/3"
    assert (status.replicas, status.ready_replicas, status.desired_replicas) == (3, 3, 3)
    assert (status.queue_depth, status.running_jobs, status.workers) == (12, 4, 3)
    assert status.region == "eu-west"
    assert status.observed_generation == 1
    assert status.selector == "app.kubernetes.io/name=corral-worker,corral.dev/pool=email"
    assert _condition(status, "Ready")[:2] == ("True", "WorkersReady")
    assert _condition(status, "Degraded")[:2] == ("False", "AsExpected")
    assert _condition(status, "Progressing")[:2] == ("False", "Stable")


def test_the_queues_column_reads_the_queue_names_joined_by_commas() -> None:
    status = _status(make_pool(queues=["default", "email"]))
    assert status.queues_text == "default,email"
    assert status.to_kube()["queuesText"] == "default,email"


def test_a_new_pool_with_no_ready_worker_is_pending() -> None:
    status = _status(deployment=None)
    assert status.phase == "Pending"
    assert status.ready == "0/3"
    assert _condition(status, "Ready")[:2] == ("False", "WorkersNotReady")


def test_a_pool_with_some_workers_ready_is_scaling() -> None:
    status = _status(deployment=_deployment(3, 1))
    assert status.phase == "Scaling"
    assert status.ready == "1/3"
    assert _condition(status, "Progressing")[:2] == ("True", "ScalingUp")


def test_a_pool_that_was_ready_and_loses_every_worker_is_scaling_not_pending() -> None:
    previous = _status()
    status = _status(_with_status(previous), deployment=_deployment(3, 0))
    assert status.phase == "Scaling"


def test_a_rollout_in_progress_is_scaling_and_not_ready() -> None:
    status = _status(deployment=_deployment(3, 3, updated=1))
    assert status.phase == "Scaling"
    assert _condition(status, "Progressing")[:2] == ("True", "RollingOut")
    assert _condition(status, "Ready")[0] == "False"


def test_more_pods_than_desired_is_draining() -> None:
    status = _status(deployment=_deployment(5, 5), desired_replicas=3)
    assert status.phase == "Draining"
    assert _condition(status, "Progressing")[:2] == ("True", "ScalingDown")


def test_a_paused_pool_is_paused_and_not_ready() -> None:
    status = _status(make_pool(paused=True), deployment=_deployment(0, 0), desired_replicas=0)
    assert status.phase == "Paused"
    assert _condition(status, "Ready")[:2] == ("False", "Paused")


def test_a_missing_region_degrades_the_pool_with_a_message_naming_it() -> None:
    status = _status(make_pool(region="mars"), region="mars", region_exists=False, deployment=None)
    assert status.phase == "Degraded"
    state, reason, message = _condition(status, "Degraded")
    assert (state, reason) == ("True", "RegionNotFound")
    assert "spec.region 'mars' does not exist" in message
    assert _condition(status, "Ready")[:2] == ("False", "RegionNotFound")


def test_the_pool_heals_when_the_region_appears() -> None:
    degraded = _status(region_exists=False, deployment=None)
    healed = _status(_with_status(degraded), now=LATER)
    assert healed.phase == "Ready"
    assert _condition(healed, "Degraded")[:2] == ("False", "AsExpected")


def test_a_missing_default_region_says_it_is_the_default() -> None:
    status = _status(region="default", region_exists=False)
    assert "the default Region 'default' does not exist" in _condition(status, "Degraded")[2]


def test_an_unreachable_database_degrades_the_pool_and_keeps_the_last_queue_figures() -> None:
    previous = _status()
    status = _status(
        _with_status(previous), queue=None, database_error="connection refused", now=LATER
    )
    assert status.phase == "Degraded"
    assert _condition(status, "Degraded")[1:] == ("DatabaseUnreachable", "connection refused")
    assert (status.queue_depth, status.running_jobs, status.workers) == (12, 4, 3)


def test_a_deployment_that_cannot_progress_degrades_the_pool() -> None:
    figures = _deployment(
        3, 1, failure=("ProgressDeadlineExceeded", "ReplicaSet has timed out progressing.")
    )
    status = _status(deployment=figures)
    assert status.phase == "Degraded"
    assert "timed out" in _condition(status, "Degraded")[2]


def test_last_transition_time_moves_only_when_a_condition_flips() -> None:
    first = _status()
    same = _status(_with_status(first), now=LATER)
    flipped = _status(_with_status(first), deployment=_deployment(3, 1), now=LATER)
    ready_at = {c.type: c.last_transition_time for c in same.conditions or []}
    assert ready_at["Ready"] == NOW
    flipped_at = {c.type: c.last_transition_time for c in flipped.conditions or []}
    assert flipped_at["Ready"] == LATER
    assert flipped_at["Degraded"] == NOW


def test_last_scale_time_records_when_the_desired_count_changed() -> None:
    first = _status()
    assert first.last_scale_time == NOW
    unchanged = _status(_with_status(first), now=LATER)
    assert unchanged.last_scale_time == NOW
    scaled = _status(_with_status(first), desired_replicas=5, now=LATER)
    assert scaled.last_scale_time == LATER


def test_deployment_figures_are_read_from_a_deployment_object() -> None:
    figures = DeploymentFigures.from_kube(
        {
            "metadata": {"generation": 4},
            "spec": {"replicas": 3},
            "status": {
                "observedGeneration": 3,
                "replicas": 3,
                "readyReplicas": 2,
                "updatedReplicas": 1,
                "conditions": [
                    {"type": "Available", "status": "True"},
                    {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
                     "message": "pods \"email-1\" is forbidden"},
                ],
            },
        }
    )  # fmt: skip
    assert (figures.generation, figures.observed_generation) == (4, 3)
    assert (figures.replicas, figures.ready_replicas, figures.updated_replicas) == (3, 2, 1)
    assert figures.failure == ("FailedCreate", 'pods "email-1" is forbidden')


def test_the_status_serialises_to_the_crd_field_names() -> None:
    body = _status().to_kube()
    assert body["readyReplicas"] == 3
    assert body["ready"] == "3/3"
    assert body["lastScaleTime"] == "2026-11-22T12:00:00Z"
    assert {c["type"] for c in body["conditions"]} == {"Ready", "Progressing", "Degraded"}


def test_a_region_with_heartbeating_workers_is_ready() -> None:
    status = region_status(make_region(), pools=[make_pool()], queue=QueueFigures(5, 1, 2), now=NOW)
    assert status.phase == "Ready"
    assert (status.pools, status.workers, status.queue_depth) == (1, 2, 5)


def _with_desired(pool: WorkerPool, desired: int) -> WorkerPool:
    return pool.model_copy(update={"status": WorkerPoolStatus(desired_replicas=desired)})


def test_a_region_whose_pools_are_scaled_to_zero_on_purpose_is_ready_without_workers() -> None:
    pool = _with_desired(make_pool(replicas={"min": 0, "max": 3}), 0)
    status = region_status(make_region(), pools=[pool], queue=QueueFigures(0, 0, 0), now=NOW)
    assert status.phase == "Ready"
    (condition,) = status.conditions or []
    assert (condition.status, condition.reason) == ("True", "ScaledToZero")
    # A pool not reconciled yet has never wanted more than its min of 0.
    fresh = make_pool(replicas={"min": 0, "max": 3})
    assert region_readiness("eu-west", workers=0, pools=[fresh])[:2] == (True, "ScaledToZero")


@pytest.mark.parametrize(
    "pools",
    [
        [make_pool(replicas={"min": 2, "max": 3})],  # wants at least two, always
        [_with_desired(make_pool(replicas={"min": 0, "max": 3}), 2)],  # jobs came: wants two
        [  # one pool at zero on purpose does not excuse another that wants workers
            _with_desired(make_pool("a", replicas={"min": 0, "max": 3}), 0),
            _with_desired(make_pool("b", replicas={"min": 1, "max": 3}), 1),
        ],
    ],
)
def test_a_region_whose_pools_want_workers_and_have_none_heartbeating_has_no_workers(
    pools: list[WorkerPool],
) -> None:
    status = region_status(make_region(), pools=pools, queue=QueueFigures(3, 0, 0), now=NOW)
    assert status.phase == "NoWorkers"
    (condition,) = status.conditions or []
    assert (condition.status, condition.reason) == ("False", "NoWorkers")
    assert "wants" in condition.message
    # The same pools with one worker heartbeating: Ready.
    assert region_readiness("eu-west", workers=1, pools=pools)[:2] == (
        True,
        "WorkersHeartbeating",
    )


def test_a_region_with_only_paused_pools_and_no_workers_has_no_workers() -> None:
    status = region_status(
        make_region(), pools=[make_pool(paused=True)], queue=QueueFigures(0, 0, 0), now=NOW
    )
    assert status.phase == "NoWorkers"
    (condition,) = status.conditions or []
    assert condition.reason == "NoRunnablePools"


def test_a_region_without_pools_says_how_to_add_one() -> None:
    status = region_status(make_region("ap-south"), pools=[], queue=None, now=NOW)
    assert status.phase == "NoWorkers"
    (condition,) = status.conditions or []
    assert "spec.region: ap-south" in condition.message

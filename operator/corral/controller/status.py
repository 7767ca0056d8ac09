"""WorkerPool and Region status, computed from what the operator observed.

Pure; the kopf handlers gather the inputs (the Deployment as read through
`corral.kube`, queue figures from `corral.queue`) and patch the result into
`.status`. Keeping this a function of its inputs makes every phase and
condition a unit test rather than a cluster scenario.

Phase precedence, first match wins: Degraded (something needs a human),
Paused, Draining (deleting, or pods above the desired count), Pending
(nothing ready yet, never ready before), Scaling (rolling out or pods
missing), Ready.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from corral.api import (
    Condition,
    ConditionStatus,
    Region,
    RegionPhase,
    RegionStatus,
    WorkerPool,
    WorkerPoolPhase,
    WorkerPoolStatus,
)
from corral.api.v1alpha1 import ScaleDown
from corral.controller import naming
from corral.controller.events import Event


@dataclass(frozen=True)
class DeploymentFigures:
    """What the operator needs from a Deployment's status."""

    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    terminating_replicas: int = 0
    spec_replicas: int = 0
    generation: int = 0
    observed_generation: int = 0
    # The Deployment controller gave up on a rollout (ProgressDeadlineExceeded)
    # or cannot create pods (ReplicaFailure): reason, message.
    failure: tuple[str, str] | None = None

    @classmethod
    def from_kube(cls, deployment: dict[str, Any]) -> DeploymentFigures:
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        failure = None
        for condition in status.get("conditions") or []:
            kind, state = condition.get("type"), condition.get("status")
            stuck = kind == "Progressing" and state == "False"
            if stuck or (kind == "ReplicaFailure" and state == "True"):
                failure = (
                    str(condition.get("reason") or kind),
                    str(condition.get("message") or ""),
                )
        return cls(
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            terminating_replicas=int(status.get("terminatingReplicas") or 0),
            spec_replicas=int(spec.get("replicas") or 0),
            generation=int((deployment.get("metadata") or {}).get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            failure=failure,
        )


@dataclass(frozen=True)
class QueueFigures:
    """What the queue says about a pool's queues in its region (or a region)."""

    depth: int  # jobs waiting
    running: int  # jobs held by workers
    workers: int  # workers with a recent heartbeat


def set_condition(
    conditions: list[Condition],
    *,
    type: str,
    status: bool | None,
    reason: str,
    message: str,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """`conditions` with `type` set (`status` None: Unknown); lastTransitionTime
    moves only when status flips."""
    if status is None:
        state = ConditionStatus.UNKNOWN
    else:
        state = ConditionStatus.TRUE if status else ConditionStatus.FALSE
    previous = next((c for c in conditions if c.type == type), None)
    since = previous.last_transition_time if previous and previous.status == state else now
    updated = Condition(
        type=type,
        status=state,
        reason=reason,
        message=message,
        last_transition_time=since,
        observed_generation=generation,
    )
    return [c for c in conditions if c.type != type] + [updated]


def _problems(
    pool: WorkerPool,
    region: str,
    region_exists: bool,
    deployment: DeploymentFigures | None,
    database_error: str | None,
    blockers: tuple[tuple[str, str], ...] = (),
) -> list[tuple[str, str]]:
    problems = list(blockers)
    if not region_exists:
        where = f"spec.region {region!r}" if pool.spec.region else f"the default Region {region!r}"
        problems.append(
            (
                "RegionNotFound",
                f"{where} does not exist; create it (kind: Region, name: {region}) "
                "or set spec.region to an existing one",
            )
        )
    if database_error is not None:
        problems.append(("DatabaseUnreachable", database_error))
    if deployment is not None and deployment.failure is not None:
        reason, message = deployment.failure
        problems.append((reason, f"Deployment: {message}" if message else "Deployment failing"))
    return problems


@dataclass(frozen=True)
class ScalingFigures:
    """What the autoscaler decided, for status: the drain under way and
    whether demand asks for more than replicas.max allows."""

    scale_down: ScaleDown | None = None
    wanted: int | None = None  # replicas demand asks for before the bounds; None: unknown
    reason: str = ""


def workerpool_status(
    pool: WorkerPool,
    *,
    region: str,
    region_exists: bool,
    deployment: DeploymentFigures | None,
    desired_replicas: int,
    queue: QueueFigures | None,
    now: datetime,
    database_error: str | None = None,
    scaling: ScalingFigures | None = None,
    blockers: tuple[tuple[str, str], ...] = (),
) -> WorkerPoolStatus:
    """The pool's new `.status`.

    `deployment` is None when the pool has no Deployment yet; `queue` is None
    when the database could not be read (the last known figures are kept and
    `database_error` says why, without any password). `scaling` is None when
    no scaling decision was made (the previous drain and limit are kept).
    `blockers` are (reason, message) pairs that keep the reconcile from
    writing (a foreign Deployment, no worker database): the pool is Degraded.
    """
    previous = pool.status or WorkerPoolStatus()
    generation = pool.metadata.generation
    problems = _problems(pool, region, region_exists, deployment, database_error, blockers)
    figures = deployment or DeploymentFigures()
    ready = figures.ready_replicas
    was_ready = bool(previous.ready_replicas) or previous.phase in (
        WorkerPoolPhase.READY,
        WorkerPoolPhase.SCALING,
        WorkerPoolPhase.DRAINING,
    )
    rolling_out = deployment is not None and (
        figures.observed_generation < figures.generation
        or figures.updated_replicas < figures.replicas
    )

    scale_down = scaling.scale_down if scaling is not None else previous.scale_down
    if problems:
        phase = WorkerPoolPhase.DEGRADED
    elif pool.spec.paused:
        phase = WorkerPoolPhase.PAUSED
    elif (
        pool.metadata.deletion_timestamp is not None
        or figures.replicas > desired_replicas
        or scale_down is not None
    ):
        phase = WorkerPoolPhase.DRAINING
    elif desired_replicas > 0 and ready == 0 and not was_ready:
        phase = WorkerPoolPhase.PENDING
    elif rolling_out or figures.replicas < desired_replicas or ready < desired_replicas:
        phase = WorkerPoolPhase.SCALING
    else:
        phase = WorkerPoolPhase.READY

    # Each condition as (status, reason, message), set all at once below.
    decided: dict[str, tuple[bool, str, str]] = {}
    if problems:
        decided["Degraded"] = (True, problems[0][0], "; ".join(text for _, text in problems))
    else:
        decided["Degraded"] = (False, "AsExpected", "")

    if phase is WorkerPoolPhase.DRAINING and scale_down is not None:
        decided["Progressing"] = (
            True,
            "ScalingDown",
            f"draining {len(scale_down.pods)} worker(s) before scaling "
            f"{figures.spec_replicas} -> {desired_replicas}",
        )
    elif phase is WorkerPoolPhase.DRAINING:
        decided["Progressing"] = (True, "ScalingDown", f"draining to {desired_replicas} worker(s)")
    elif phase is WorkerPoolPhase.PAUSED:
        decided["Progressing"] = (
            figures.replicas > 0,
            "Paused",
            "spec.paused is true: workers drain and no new ones start",
        )
    elif rolling_out:
        decided["Progressing"] = (True, "RollingOut", "rolling out a spec change")
    elif figures.replicas < desired_replicas or ready < desired_replicas:
        decided["Progressing"] = (
            True,
            "ScalingUp",
            f"starting workers: {ready}/{desired_replicas} ready",
        )
    else:
        decided["Progressing"] = (
            False,
            "Stable",
            f"{ready} worker(s) ready, none starting or stopping",
        )

    if problems:
        decided["Ready"] = (False, problems[0][0], problems[0][1])
    elif pool.spec.paused:
        decided["Ready"] = (False, "Paused", "spec.paused is true")
    elif ready >= desired_replicas and not rolling_out:
        decided["Ready"] = (True, "WorkersReady", f"{ready}/{desired_replicas} workers ready")
    else:
        decided["Ready"] = (False, "WorkersNotReady", f"{ready}/{desired_replicas} workers ready")

    if scaling is not None and scaling.wanted is not None:
        limit = pool.spec.replicas.max
        if pool.spec.autoscaling.enabled and not pool.spec.paused and scaling.wanted > limit:
            decided["ScalingLimited"] = (
                True,
                "AtMaxReplicas",
                f"demand asks for {scaling.wanted} worker(s) ({scaling.reason}); "
                f"replicas.max is {limit}",
            )
        else:
            decided["ScalingLimited"] = (
                False,
                "DesiredWithinRange",
                f"{desired_replicas} worker(s) wanted",
            )

    conditions = list(previous.conditions or [])
    for kind, (status, reason, message) in decided.items():
        conditions = set_condition(
            conditions, type=kind, status=status, reason=reason, message=message,
            now=now, generation=generation,
        )  # fmt: skip
    order = {"Ready": 0, "Progressing": 1, "Degraded": 2, "ScalingLimited": 3}
    conditions.sort(key=lambda c: order.get(c.type, len(order)))
    scaled = previous.desired_replicas != desired_replicas
    return WorkerPoolStatus(
        phase=phase,
        region=region,
        replicas=figures.replicas,
        ready_replicas=ready,
        desired_replicas=desired_replicas,
        ready=f"{ready}/{desired_replicas}",
        queues_text=",".join(pool.spec.queues),
        queue_depth=queue.depth if queue else previous.queue_depth,
        running_jobs=queue.running if queue else previous.running_jobs,
        workers=queue.workers if queue else previous.workers,
        last_scale_time=now if scaled else previous.last_scale_time,
        scale_down=scale_down,
        selector=naming.selector_string(pool),
        observed_generation=generation,
        conditions=conditions,
    )


def degraded_events(previous: WorkerPoolStatus | None, status: WorkerPoolStatus) -> list[Event]:
    """A Warning when the pool becomes Degraded, or Degraded for a new reason
    (not at every reconcile while it stays so)."""
    was = {c.type: (c.status, c.reason) for c in (previous.conditions or [])} if previous else {}
    return [
        Event("Warning", c.reason, c.message)
        for c in status.conditions or []
        if c.type == "Degraded"
        and c.status == ConditionStatus.TRUE
        and was.get("Degraded") != (ConditionStatus.TRUE, c.reason)
    ]


def can_run_workers(pool: WorkerPool) -> bool:
    """Whether the pool runs workers now or may start some when jobs arrive."""
    spec = pool.spec
    return not spec.paused and (spec.autoscaling.enabled or spec.replicas.min > 0)


def scaled_to_zero(pool: WorkerPool) -> bool:
    """The pool runs no worker on purpose: it may (replicas.min 0) and the
    autoscaler wants none now (desired 0; a pool without status yet has
    never wanted more than its min)."""
    desired = pool.status.desired_replicas if pool.status is not None else None
    return pool.spec.replicas.min == 0 and (desired or 0) == 0


def region_readiness(
    region: str, *, workers: int, pools: Sequence[WorkerPool]
) -> tuple[bool, str, str]:
    """The Region's Ready condition (status, reason, message) from its live
    workers and its pools: a region whose pools should run workers and have
    none heartbeating is NoWorkers, unless every pool that can run workers
    is scaled to zero on purpose (waiting for jobs)."""
    runnable = [pool for pool in pools if can_run_workers(pool)]
    if workers > 0:
        return True, "WorkersHeartbeating", f"{workers} worker(s) heartbeating"
    if not pools:
        return (
            False,
            "NoPools",
            f"no WorkerPool runs in this region; create one with spec.region: {region}",
        )
    if not runnable:
        return (
            False,
            "NoRunnablePools",
            "every pool in this region is paused or fixed at zero replicas; "
            "unpause one or raise its replicas.min",
        )
    names = ", ".join(sorted(f"{p.metadata.namespace}/{p.metadata.name}" for p in runnable))
    if all(scaled_to_zero(pool) for pool in runnable):
        return True, "ScaledToZero", f"no jobs, no workers; pools that start one on demand: {names}"
    wanting = [pool for pool in runnable if not scaled_to_zero(pool)]
    wanted = ", ".join(
        sorted(
            f"{p.metadata.namespace}/{p.metadata.name} "
            f"(wants {max(p.spec.replicas.min, (p.status.desired_replicas if p.status else 0) or 0)})"
            for p in wanting
        )
    )
    return (
        False,
        "NoWorkers",
        f"no worker heartbeating in this region though its pools want some: {wanted}; "
        "see `kubectl describe workerpool` and the worker pods' logs",
    )


def region_status(
    region: Region,
    *,
    pools: list[WorkerPool],
    queue: QueueFigures | None,
    now: datetime,
    database_error: str | None = None,
) -> RegionStatus:
    """The Region's new `.status`; `pools` are the WorkerPools that resolve to
    it. Without `queue` (the database did not answer: `database_error`) the
    figures are the last ones read, and Ready is Unknown, saying why: a
    Region must not read Ready for hours of an outage on figures from before it."""
    previous = region.status or RegionStatus()
    workers = queue.workers if queue else (previous.workers or 0)
    ready: tuple[bool | None, str, str]
    if queue is None and database_error is not None:
        ready = (
            None,
            "DatabaseUnreachable",
            f"cannot read this region's workers and queue depth (the figures shown are the "
            f"last read): {database_error}",
        )
    else:
        ready = region_readiness(region.metadata.name, workers=workers, pools=pools)
    conditions = set_condition(
        list(previous.conditions or []), type="Ready", status=ready[0], reason=ready[1],
        message=ready[2], now=now, generation=region.metadata.generation,
    )  # fmt: skip
    if ready[0] is None:
        phase = previous.phase
    else:
        phase = RegionPhase.READY if ready[0] else RegionPhase.NO_WORKERS
    return RegionStatus(
        phase=phase,
        pools=len(pools),
        workers=workers,
        queue_depth=queue.depth if queue else previous.queue_depth,
        observed_generation=region.metadata.generation,
        conditions=conditions,
    )

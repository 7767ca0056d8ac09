"""What the operator reads about a pool, in the shapes its decisions take.

The registry's workers and the pool's pods as `corral.controller.scaling`
sees them (`worker_view`, `pod_view`), one round of the queue's figures
(`PoolSnapshot`), and when a worker counts as live. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from corral.api import WorkerPool
from corral.controller.scaling import Demand, FlowRate, PodView, WorkerView
from corral.controller.status import QueueFigures
from corral.queue import LIVE_WORKER_S, Backlog, Flow, Worker, WorkerState

__all__ = [
    "DELETION_COST",
    "HEARTBEAT_FRESH_S",
    "LOWEST_DELETION_COST",
    "PoolSnapshot",
    "finished_pod",
    "held_jobs",
    "live_worker",
    "may_have_orphans",
    "needs_pods",
    "orphaned_workers",
    "pod_view",
    "pool_key",
    "worker_view",
]

# A worker whose last heartbeat is older than this no longer counts as live:
# the queue's own measure (its region check and `corral regions list`).
HEARTBEAT_FRESH_S = LIVE_WORKER_S
# The pods chosen for a scale-down get the lowest cost there is (an int32), so
# the ReplicaSet removes them before any pod a user gave a cost of its own.
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
LOWEST_DELETION_COST = str(-(2**31))
# A worker enrolls while its pod starts, and the pod list may lag the API
# server (a watch cache): a row younger than this is never taken for one
# whose pod is gone.
ORPHAN_GRACE_S = 120.0


def pool_key(pool: WorkerPool) -> str:
    """How the queue's token and worker registry name a pool."""
    return f"{pool.metadata.namespace}/{pool.metadata.name}"


def live_worker(worker: Any, now: datetime) -> bool:
    # A worker just enrolled is alive before its first beat: it may claim
    # jobs first, and those must count.
    beat = worker.last_heartbeat or worker.enrolled_at
    return (
        worker.state != WorkerState.REMOVED
        and beat is not None
        and now - beat <= timedelta(seconds=HEARTBEAT_FRESH_S)
    )


def held_jobs(worker: Any) -> int:
    """The jobs a worker holds, as the scaler counts them: what it reports,
    never more than its concurrency (a worker's own heartbeat could say
    2147483647 and pin its pool at replicas.max; migration 0019 caps it in
    the database too)."""
    return max(0, min(int(worker.in_flight), int(worker.concurrency)))


@dataclass(frozen=True)
class PoolSnapshot:
    """What the queue said about one pool in one round of reads."""

    backlog: Backlog
    workers: list[Worker]  # the pool's registry rows (removed ones left out)
    flow: Flow | None  # target-wait mode only

    def figures(self, now: datetime) -> QueueFigures:
        live = [w for w in self.workers if live_worker(w, now)]
        return QueueFigures(
            depth=self.backlog.waiting,
            running=sum(held_jobs(w) for w in live),
            workers=len(live),
        )

    def demand(self, now: datetime, concurrency: int) -> Demand:
        live = [w for w in self.workers if live_worker(w, now)]
        rate = None
        flow = self.flow
        if flow is not None and flow.mean_duration_s is not None and flow.completed > 0:
            rate = FlowRate(flow.arrivals_per_s, flow.mean_duration_s)
        return Demand(
            waiting=self.backlog.dispatchable,
            running=sum(held_jobs(w) for w in live),
            busy_workers=sum(1 for w in live if held_jobs(w) > 0),
            rate=rate,
        )


def finished_pod(pod: dict[str, Any]) -> bool:
    """A pod whose containers have all stopped for good (an evicted pod is
    Failed): no worker runs in it, whether or not it is deleted yet."""
    return (pod.get("status") or {}).get("phase") in ("Failed", "Succeeded")


def pod_view(pod: dict[str, Any]) -> PodView:
    meta = pod.get("metadata") or {}
    conditions = (pod.get("status") or {}).get("conditions") or []
    return PodView(
        name=str(meta.get("name")),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        terminating=meta.get("deletionTimestamp") is not None,
        created=str(meta.get("creationTimestamp") or ""),
        marked=(meta.get("annotations") or {}).get(DELETION_COST) == LOWEST_DELETION_COST,
    )


def worker_view(worker: Worker, now: datetime) -> WorkerView:
    return WorkerView(
        id=worker.id,
        name=worker.name,
        state=str(worker.state),
        in_flight=held_jobs(worker),
        drain_by=worker.drain_requested_by,
        live=live_worker(worker, now),
    )


def needs_pods(
    plan_input_current: int, desired: int, pool: WorkerPool, workers: list[Worker]
) -> bool:
    """Whether deciding needs the pool's pods: a scale-down, a drain in
    progress, or a worker someone drained (the API call is skipped otherwise)."""
    return (
        desired < plan_input_current
        or (pool.status is not None and pool.status.scale_down is not None)
        or any(w.state in (WorkerState.DRAINING, WorkerState.DRAINED) for w in workers)
    )


def orphaned_workers(
    workers: list[Worker], pod_names: set[str], now: datetime, grace_s: float = ORPHAN_GRACE_S
) -> list[Worker]:
    """The pool's registry rows whose pod is gone: named after no pod of the
    pool's listing (`pod_names`: its pods that have not finished, terminating
    ones included) and enrolled more than `grace_s` ago. Their credentials
    must die with their pods, or whoever copied one could go on as the pool's
    worker (authenticate, heartbeat, claim); the operator removes them."""
    return [
        w
        for w in workers
        if w.state != WorkerState.REMOVED
        and w.name not in pod_names
        and now - w.enrolled_at > timedelta(seconds=grace_s)
    ]


def may_have_orphans(workers: list[Worker], replicas: int, now: datetime) -> bool:
    """Whether a row of the pool may have outlived its pod, so that its pods
    are worth listing: more rows than replicas, or a row gone silent. (A
    drained or draining one makes `needs_pods` list them anyway.) A pod
    that died leaves its row behind while the ReplicaSet starts another."""
    settled = [w for w in workers if now - w.enrolled_at > timedelta(seconds=ORPHAN_GRACE_S)]
    return len(workers) > replicas or any(not live_worker(w, now) for w in settled)

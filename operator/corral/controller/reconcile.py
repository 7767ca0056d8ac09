"""One reconcile of a WorkerPool or a Region: read, decide, write.

Called by the kopf handlers (`corral.controller.handlers`) on every event and
on a resync timer, so it is level-based: it reads the current state, asks the
pure deciding functions (`deployment`, `enrollment`, `status`) what should be,
and writes that with server-side apply. Running it twice, after a restart, or
after someone deleted the Deployment or the Secret by hand converges to the
same objects. It reaches Kubernetes only through `corral.kube` and Postgres
only through `corral.queue` (via `QueueAccess`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.api import Region, WorkerPool
from corral.controller import naming
from corral.controller.config import OperatorConfig
from corral.controller.deployment import desired_deployment, fixed_replicas, grace_period_s
from corral.controller.enrollment import (
    current_token_id,
    desired_secret,
    held_token,
    rotation,
    secret_is_current,
    token_expiry,
)
from corral.controller.queue_access import DatabaseUnavailable, QueueAccess
from corral.controller.status import (
    DeploymentFigures,
    QueueFigures,
    region_status,
    workerpool_status,
)
from corral.kube import Kube, owner_reference
from corral.queue import Queue, TokenNotFound, WorkerState

log = logging.getLogger(__name__)

# A worker whose last heartbeat is older than this no longer counts as live.
HEARTBEAT_FRESH_S = 30.0
# A pool token must enroll every pod started during its lifetime.
POOL_TOKEN_USES = 1_000_000


class StillDraining(Exception):
    """A deleted pool's workers are still draining; try again shortly."""


@dataclass(frozen=True)
class Event:
    """Something a user cares about, posted as a Kubernetes Event on the object."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Outcome:
    """What one reconcile did: the status it wrote and the events to post."""

    status: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)


def pool_key(pool: WorkerPool) -> str:
    """How the queue's token and worker registry name a pool."""
    return f"{pool.metadata.namespace}/{pool.metadata.name}"


def _live(worker: Any, now: datetime) -> bool:
    beat = worker.last_heartbeat
    return (
        worker.state != WorkerState.REMOVED
        and beat is not None
        and now - beat <= timedelta(seconds=HEARTBEAT_FRESH_S)
    )


def _template(deployment: dict[str, Any]) -> Any:
    return (deployment.get("spec") or {}).get("template")


def _replicas(deployment: dict[str, Any]) -> Any:
    return (deployment.get("spec") or {}).get("replicas")


def _deployment_events(
    name: str, before: dict[str, Any] | None, after: dict[str, Any]
) -> list[Event]:
    """Events for what an apply changed, judged from the Deployment itself
    (not the pool's status, which concurrent reconciles may not see yet)."""
    if before is None:
        return [Event("Normal", "Created", f"Deployment {name} with {_replicas(after)} worker(s)")]
    events = []
    if _template(before) != _template(after):
        events.append(
            Event("Normal", "SpecRolledOut", "the pod template changed; rolling out to the workers")
        )
    if _replicas(before) != _replicas(after):
        events.append(
            Event("Normal", "Scaled", f"workers {_replicas(before)} -> {_replicas(after)}")
        )
    return events


class Reconciler:
    def __init__(self, kube: Kube, queue: QueueAccess, config: OperatorConfig) -> None:
        self.kube = kube
        self.queue = queue
        self.config = config
        # One reconcile per object at a time: a timer and a watch event for the
        # same pool must not both mint a token.
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[key]

    # -- default Region ------------------------------------------------------------

    def ensure_default_region(self) -> bool:
        """Create the default Region when the installation asks for it; True if created."""
        if not self.config.create_default_region:
            return False
        return self.kube.create_region(
            {
                "apiVersion": "corral.dev/v1alpha1",
                "kind": "Region",
                "metadata": {"name": self.config.default_region},
                "spec": {"displayName": self.config.default_region_display_name},
            }
        )

    def region_of(self, pool: WorkerPool) -> str:
        return pool.spec.region or self.config.default_region

    # -- WorkerPool -----------------------------------------------------------------

    def reconcile_pool(self, body: dict[str, Any], now: datetime | None = None) -> Outcome:
        pool = WorkerPool.from_kube(body)
        with self._lock(f"pool/{pool_key(pool)}"):
            return self._reconcile_pool(pool, body, now or datetime.now(UTC))

    def _reconcile_pool(self, pool: WorkerPool, body: dict[str, Any], now: datetime) -> Outcome:
        outcome = Outcome()
        namespace = pool.metadata.namespace or "default"
        name = pool.metadata.name
        if pool.metadata.deletion_timestamp is not None:
            return outcome  # finalize_pool handles the way out
        region_name = self.region_of(pool)
        region_body = self.kube.get_region(region_name)
        region = Region.from_kube(region_body) if region_body else None
        deployment = self.kube.get_deployment(namespace, naming.deployment_name(pool))
        current = (deployment or {}).get("spec", {}).get("replicas")
        desired_replicas = fixed_replicas(pool, current)

        database_error: str | None = None
        figures: QueueFigures | None = None
        try:
            self._reconcile_secret(pool, body, region_name, now, outcome)
            figures = self.queue.run(lambda q: self._pool_figures(q, pool, region_name, now))
        except DatabaseUnavailable as exc:
            database_error = str(exc)

        previous = pool.status
        if region is not None:
            desired = desired_deployment(
                pool,
                region=region,
                replicas=desired_replicas,
                worker_image=self.config.worker_image,
            )
            desired["metadata"]["ownerReferences"] = [owner_reference(body)]
            before = deployment
            deployment = self.kube.apply(desired)
            outcome.events += _deployment_events(name, before, deployment)

        status = workerpool_status(
            pool,
            region=region_name,
            region_exists=region is not None,
            deployment=DeploymentFigures.from_kube(deployment) if deployment else None,
            desired_replicas=desired_replicas,
            queue=figures,
            now=now,
            database_error=database_error,
        )
        was = (
            {c.type: (c.status, c.reason) for c in (previous.conditions or [])} if previous else {}
        )
        for condition in status.conditions or []:
            newly_degraded = was.get("Degraded") != ("True", condition.reason)
            if condition.type == "Degraded" and condition.status == "True" and newly_degraded:
                outcome.events.append(Event("Warning", condition.reason, condition.message))
        outcome.status = status.to_kube()
        self.kube.patch_workerpool_status(namespace, name, outcome.status)
        return outcome

    def _reconcile_secret(
        self, pool: WorkerPool, body: dict[str, Any], region: str, now: datetime, outcome: Outcome
    ) -> None:
        namespace = pool.metadata.namespace or "default"
        secret = self.kube.get_secret(namespace, naming.secret_name(pool))
        ttl_s = pool.spec.enrollment.token_ttl_seconds
        decision = rotation(secret, ttl_s=ttl_s, now=now, region=region)
        held = None if decision.rotate else held_token(secret)
        if held is None:
            minted = self.queue.run(
                lambda q: q.create_token(
                    region, pool=pool_key(pool), ttl_s=ttl_s, uses=POOL_TOKEN_USES
                )
            )
            token, token_id = minted.secret, str(minted.info.id)
            created_at, expires_at = now, token_expiry(now, ttl_s)
            if secret is not None:
                outcome.events.append(Event("Normal", "TokenRotated", decision.reason))
        else:
            token, token_id = held.token, held.token_id
            created_at, expires_at = held.created_at, held.expires_at
        desired = desired_secret(
            pool,
            region=region,
            token=token,
            token_id=token_id,
            created_at=created_at,
            expires_at=expires_at,
            database_url=None if pool.spec.database else self.config.database_url,
        )
        desired["metadata"]["ownerReferences"] = [owner_reference(body)]
        if held is not None and secret_is_current(secret, desired):
            return
        self.kube.apply(desired)

    def _pool_figures(
        self, queue: Queue, pool: WorkerPool, region: str, now: datetime
    ) -> QueueFigures:
        depth = queue.depth(pool.spec.queues, region)
        key = pool_key(pool)
        workers = [w for w in queue.list_workers() if w.pool == key and _live(w, now)]
        return QueueFigures(
            depth=depth.pending, running=sum(w.in_flight for w in workers), workers=len(workers)
        )

    def finalize_pool(self, body: dict[str, Any], waited_s: float = 0.0) -> list[Event]:
        """The pool is being deleted: drain its workers, then revoke its token
        and take its workers out of the registry. Its Deployment and Secret go
        with it (owner references).

        Draining first means deleting a pool interrupts no job: the Deployment
        is scaled to zero, each pod's preStop hook drains its worker, and until
        the pods are gone this raises `StillDraining` (the handler retries).
        After drain.timeoutSeconds plus the margin it stops waiting.
        """
        pool = WorkerPool.from_kube(body)
        namespace = pool.metadata.namespace or "default"
        key = pool_key(pool)
        deployment = self.kube.get_deployment(namespace, naming.deployment_name(pool))
        if deployment is not None and waited_s < grace_period_s(pool):
            pods = int((deployment.get("status") or {}).get("replicas") or 0)
            if (deployment.get("spec") or {}).get("replicas") != 0:
                self.kube.scale_deployment(namespace, naming.deployment_name(pool), 0)
                raise StillDraining(f"scaling {pods} worker(s) to zero before the pool goes")
            if pods > 0:
                raise StillDraining(f"waiting for {pods} worker(s) to drain")
        secret = self.kube.get_secret(namespace, naming.secret_name(pool))
        token_id = current_token_id(secret)

        def _retire(queue: Queue) -> int:
            if token_id is not None:
                # Revoked already, or never stored: nothing left to do.
                with contextlib.suppress(TokenNotFound):
                    queue.revoke_token(int(token_id))
            removed = 0
            for worker in queue.list_workers():
                if worker.pool == key:
                    queue.remove_worker(worker.id)
                    removed += 1
            return removed

        with self._lock(f"pool/{key}"):
            removed = self.queue.run(_retire)
        return [Event("Normal", "Retired", f"token revoked, {removed} worker(s) left the registry")]

    # -- Region ---------------------------------------------------------------------

    def reconcile_region(self, body: dict[str, Any], now: datetime | None = None) -> Outcome:
        region = Region.from_kube(body)
        now = now or datetime.now(UTC)
        with self._lock(f"region/{region.metadata.name}"):
            pools = [
                pool
                for pool in (
                    WorkerPool.from_kube(item)
                    for item in self.kube.list_workerpools(list(self.config.watch_namespaces))
                )
                if self.region_of(pool) == region.metadata.name
            ]
            queues = sorted({queue for pool in pools for queue in pool.spec.queues})

            def _figures(queue: Queue) -> QueueFigures:
                workers = [
                    w
                    for w in queue.list_workers()
                    if w.region == region.metadata.name and _live(w, now)
                ]
                depth = queue.depth(queues, region.metadata.name).pending if queues else 0
                return QueueFigures(
                    depth=depth, running=sum(w.in_flight for w in workers), workers=len(workers)
                )

            try:
                figures: QueueFigures | None = self.queue.run(_figures)
            except DatabaseUnavailable as exc:
                log.warning("region %s: %s", region.metadata.name, exc)
                figures = None
            status = region_status(region, pools=pools, queue=figures, now=now)
            outcome = Outcome(status=status.to_kube())
            self.kube.patch_region_status(region.metadata.name, outcome.status or {})
            return outcome

    def resync_regions(self) -> int:
        """Refresh every Region's status (its worker and depth figures change
        without any event on the Region); returns how many were refreshed."""
        regions = self.kube.list_regions()
        for body in regions:
            self.reconcile_region(body)
        return len(regions)

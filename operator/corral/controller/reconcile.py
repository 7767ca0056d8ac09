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
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from corral.api import API_VERSION, Region, WorkerPool
from corral.controller import metrics, naming
from corral.controller.config import OperatorConfig
from corral.controller.deployment import (
    desired_deployment,
    desired_disruption_budget,
    desired_network_policy,
    grace_period_s,
)
from corral.controller.enrollment import current_token_id, previous_token
from corral.controller.events import Event
from corral.controller.observed import (
    DELETION_COST,
    LOWEST_DELETION_COST,
    PoolSnapshot,
    finished_pod,
    held_jobs,
    live_worker,
    may_have_orphans,
    needs_pods,
    orphaned_workers,
    pod_view,
    pool_key,
    worker_view,
)
from corral.controller.ownership import foreign_object, worker_database_problem
from corral.controller.pool_secret import PoolSecrets
from corral.controller.queue_access import DatabaseUnavailable, QueueAccess
from corral.controller.scaling import PodView, ScalePlan, Stabilizer, plan_scale, recommend
from corral.controller.status import (
    DeploymentFigures,
    QueueFigures,
    ScalingFigures,
    degraded_events,
    region_status,
    workerpool_status,
)
from corral.kube import Kube, KubeError, owner_reference
from corral.queue import (
    DEFAULT_DEPTH_CAP,
    Flow,
    Queue,
    TokenNotFound,
    Worker,
    WorkerNotFound,
    WorkerState,
    dsn_user,
)

# Re-exported: the handlers and tests name them here.
__all__ = [
    "Outcome",
    "PoolSnapshot",
    "Reconciler",
    "StillDraining",
    "pool_key",
    "scale_down_pending",
]

log = logging.getLogger(__name__)

# Target-wait mode: arrivals and durations are measured over this window
# (seconds) and read again at most this often (seconds).
FLOW_WINDOW_S = 60.0
FLOW_REFRESH_S = 5.0
# How long a check of the workers' URL's rights holds (seconds): a role
# granted more, or fixed, is seen within this without a restart.
WORKER_URL_RECHECK_S = 60.0
COMPONENT = "corral-operator"  # the source of the Events the autoscaler posts


class StillDraining(Exception):
    """A deleted pool's workers are still draining; try again shortly."""


@dataclass
class Outcome:
    """What one reconcile did: the status it wrote and the events to post."""

    status: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    acted: bool = False  # the scaling changed something: replicas, drains, pod costs


def scale_down_pending(outcome: Outcome) -> bool:
    """The status written says a drain-first scale-down waits for its workers."""
    return bool(outcome.status and outcome.status.get("scaleDown"))


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
    # Replicas change only through the autoscaler, which posts its own Events.
    return events


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        queue: QueueAccess,
        config: OperatorConfig,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.queue = queue
        self.config = config
        self.secrets = PoolSecrets(kube, queue, config)
        self._clock = clock
        # One reconcile per object at a time: a timer and a watch event for the
        # same pool must not both mint a token, and the autoscaler must not
        # change a Deployment's replicas between a reconcile's read and write.
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._locks_guard = threading.Lock()
        # Per pool: recommendations of the last scaleDownDelaySeconds, and the
        # last flow reading (target-wait mode) with when it was taken.
        self._stabilizers: dict[str, Stabilizer] = {}
        self._flows: dict[str, tuple[float, Flow]] = {}
        # Called with every pool the reconciler sees (the autoscaler tracks them).
        # After each reconcile: the pool, and whether a drain-first scale-down
        # waits for its workers (the autoscaler looks again soon, not later).
        self.on_pool: Callable[[WorkerPool, bool], None] | None = None
        self.on_pool_gone: Callable[[str], None] | None = None
        # Per Deployment ("namespace/name"): the generation of the spec this
        # operator last wrote, so that the watch's echo of its own write and
        # the kubelet's status updates do not each cost a full reconcile.
        self._written: dict[str, int] = {}
        self._written_guard = threading.Lock()
        # Per pool: what kept its last reconcile from writing (reason, message).
        # The autoscaler evaluates only pools this operator has reconciled, so
        # an evaluation always finds the pool's entry here.
        self._blockers: dict[str, tuple[tuple[str, str], ...]] = {}
        # The URL handed to workers: when its rights were last checked
        # (monotonic seconds) and what was found (`_privileged_worker_url`).
        self._worker_url_checked_at: float | None = None
        self._worker_url_problem: str | None = None

    def _privileged_worker_url(self) -> str | None:
        """Why the URL this operator hands to workers must not reach them: its
        role holds more than a worker's rights (a superuser, an owner, the
        operator's own role under another URL); None when it holds no more,
        or cannot be checked (another server, the database down: the
        reconcile's other paths report that). Checked again after
        WORKER_URL_RECHECK_S, so that a role fixed (or granted more) is seen
        without a restart."""
        checked = self._worker_url_checked_at
        if checked is not None and time.monotonic() - checked < WORKER_URL_RECHECK_S:
            return self._worker_url_problem
        url = self.config.worker_database_url or ""
        user = dsn_user(url)
        if user is None:
            return None
        try:
            found = self.queue.run(lambda q: q.worker_role_rights(user))
        except DatabaseUnavailable:
            return None
        self._worker_url_checked_at = time.monotonic()
        self._worker_url_problem = None
        if found:
            self._worker_url_problem = (
                f"the workers' database URL (--worker-database-url, chart value "
                f"workerDatabase) logs in as role {user!r}, which holds more than a worker "
                f"may ({'; '.join(found)}); every pod would get it: create a worker role "
                "with `corral db create-worker-role NAME` and give the operator its URL"
            )
        return self._worker_url_problem

    def _lock(self, key: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks[key]

    # -- Deployment events -------------------------------------------------------------

    @staticmethod
    def _deployment_key(deployment: dict[str, Any]) -> tuple[str, int | None]:
        """("namespace/name", generation) of a Deployment."""
        meta = deployment.get("metadata") or {}
        generation = meta.get("generation")
        key = f"{meta.get('namespace')}/{meta.get('name')}"
        return key, None if generation is None else int(generation)

    def _wrote(self, deployment: dict[str, Any] | None) -> None:
        if deployment is None:
            return
        key, generation = self._deployment_key(deployment)
        if generation is not None:
            with self._written_guard:
                self._written[key] = generation

    def deployment_changed(self, deployment: dict[str, Any], deleted: bool = False) -> bool:
        """Whether a watch event of a pool's Deployment needs a reconcile: it
        was deleted, or its spec is not the one this operator last wrote (an
        edit by hand, a rollback). Status-only updates (pods starting, ready,
        gone) keep the generation and need none."""
        key, generation = self._deployment_key(deployment)
        with self._written_guard:
            if deleted:
                self._written.pop(key, None)
                return True
            return generation is None or self._written.get(key) != generation

    # -- default Region ------------------------------------------------------------

    def ensure_default_region(self) -> bool:
        """Create the default Region when the installation asks for it; True if created."""
        if not self.config.create_default_region:
            return False
        return self.kube.create_region(
            {
                "apiVersion": API_VERSION,
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
            # kopf may hand us a body older than the status the autoscaler
            # wrote a moment ago (a drain in progress lives there): read it anew.
            namespace = pool.metadata.namespace or "default"
            fresh = self.kube.get_workerpool(namespace, pool.metadata.name)
            if fresh is None:
                return Outcome()
            return self._reconcile_pool(
                WorkerPool.from_kube(fresh), fresh, now or datetime.now(UTC)
            )

    def autoscale(self, namespace: str, name: str, now: datetime | None = None) -> Outcome | None:
        """One evaluation of a pool's scale (the autoscaler calls this when its
        queues get jobs and every pollSeconds): read the demand, decide, act,
        report. The Deployment's template and the Secret are the reconcile's
        business. Returns None when the pool or its Deployment is not there."""
        with self._lock(f"pool/{namespace}/{name}"):
            # Read under the lock: an evaluation that held it may have just
            # written status (a drain begun or cancelled) that this one must see.
            body = self.kube.get_workerpool(namespace, name)
            if body is None:
                self._blockers.pop(f"{namespace}/{name}", None)
                if self.on_pool_gone is not None:
                    self.on_pool_gone(f"{namespace}/{name}")
                return None
            pool = WorkerPool.from_kube(body)
            if pool.metadata.deletion_timestamp is not None:
                return None
            deployment = self.kube.get_deployment(namespace, naming.deployment_name(pool))
            if deployment is None or foreign_object("Deployment", deployment, pool):
                return None  # the next reconcile creates it (or reports whose it is)
            region_name = self.region_of(pool)
            region_exists = self.kube.get_region(region_name) is not None
            outcome = Outcome()
            now = now or datetime.now(UTC)
            snapshot, database_error = self._snapshot(pool, region_name)
            # The reconcile's blockers stand until it runs again: without them
            # the pool would flip out of Degraded (and back, with a Warning)
            # and be scaled while the reconcile writes nothing.
            self._scale_and_report(
                pool, body, deployment, snapshot, database_error,
                region_name=region_name, region_exists=region_exists, now=now, outcome=outcome,
                blockers=self._blockers.get(pool_key(pool), ()),
            )  # fmt: skip
        # Outside kopf's handlers, so the events go out through corral.kube.
        for event in outcome.events:
            try:
                self.kube.post_event(body, event.type, event.reason, event.message, COMPONENT)
            except KubeError as exc:
                log.warning("could not post %s on %s/%s: %s", event.reason, namespace, name, exc)
        return outcome

    def _snapshot(self, pool: WorkerPool, region: str) -> tuple[PoolSnapshot | None, str | None]:
        """The pool's backlog, workers and (target-wait mode) flow; or the error."""
        key = pool_key(pool)
        spec = pool.spec
        cap = DEFAULT_DEPTH_CAP
        if not spec.autoscaling.target_wait_seconds:
            # Past (max + 1) x jobsPerWorker the answer is max anyway.
            cap = min(cap, (spec.replicas.max + 1) * spec.autoscaling.jobs_per_worker)
        cap = max(cap, 1000)  # DEPTH stays informative for small pools
        wants_flow = spec.autoscaling.enabled and spec.autoscaling.target_wait_seconds is not None
        cached = self._flows.get(key)
        fresh_flow = cached is not None and self._clock() - cached[0] < FLOW_REFRESH_S

        def read(queue: Queue) -> PoolSnapshot:
            backlog = queue.backlog(
                spec.queues, region, cap=cap, lead_s=float(spec.autoscaling.activation_lead_seconds)
            )
            workers = queue.pool_workers(key)
            flow = None
            if wants_flow:
                if fresh_flow and cached is not None:
                    flow = cached[1]
                else:
                    flow = queue.flow(spec.queues, region, window_s=FLOW_WINDOW_S)
                    self._flows[key] = (self._clock(), flow)
            return PoolSnapshot(backlog, workers, flow)

        try:
            return self.queue.run(read), None
        except DatabaseUnavailable as exc:
            return None, str(exc)

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
        # What keeps this reconcile from writing: someone else's object under
        # the pool's names, or no database URL for the workers.
        blockers: list[tuple[str, str]] = []
        foreign = foreign_object("Deployment", deployment, pool)
        if foreign is not None:
            blockers.append(("ForeignDeployment", foreign))
            deployment = None  # neither applied over nor scaled
        no_database = worker_database_problem(pool, self.config.worker_database_url)
        privileged = None
        if no_database is not None:
            blockers.append(("NoWorkerDatabase", no_database))
        elif pool.spec.database is None:
            privileged = self._privileged_worker_url()
            if privileged is not None:
                blockers.append(("PrivilegedWorkerDatabase", privileged))

        database_error: str | None = None
        try:
            foreign = self.secrets.reconcile(
                pool, body, region_name, now, outcome.events, withhold_url=privileged is not None
            )
            if foreign is not None:
                blockers.append(("ForeignSecret", foreign))
        except DatabaseUnavailable as exc:
            database_error = str(exc)
        except KubeError as exc:
            if exc.status != 403:
                raise
            blockers.append(("SecretsForbidden", (
                f"the operator may not read or write Secrets in namespace {namespace} ({exc}): "
                "add it to the chart's rbac.poolNamespaces (or watch.namespaces)"
            )))  # fmt: skip
        snapshot, snapshot_error = (None, database_error)
        if database_error is None:
            snapshot, snapshot_error = self._snapshot(pool, region_name)

        if region is not None and not blockers:
            # The replicas in force stay as they are: changing them is the
            # autoscaler's job (below), which drains before it removes. A
            # new Deployment starts with what the demand asks for now.
            current = (deployment or {}).get("spec", {}).get("replicas")
            if current is None:
                current = self._initial_replicas(pool, snapshot, now)
            desired = desired_deployment(
                pool, region=region, replicas=int(current), worker_image=self.config.worker_image
            )
            desired["metadata"]["ownerReferences"] = [owner_reference(body)]
            before = deployment
            deployment = self.kube.apply(desired)
            self._wrote(deployment)
            outcome.events += _deployment_events(name, before, deployment)
            budget = desired_disruption_budget(pool, region=region_name)
            budget["metadata"]["ownerReferences"] = [owner_reference(body)]
            self.kube.apply(budget)
            policy = desired_network_policy(pool, region=region_name)
            policy["metadata"]["ownerReferences"] = [owner_reference(body)]
            self.kube.apply(policy)

        self._blockers[pool_key(pool)] = tuple(blockers)
        self._scale_and_report(
            pool, body, deployment, snapshot, snapshot_error,
            region_name=region_name, region_exists=region is not None, now=now, outcome=outcome,
            blockers=tuple(blockers),
        )  # fmt: skip
        if self.on_pool is not None:
            self.on_pool(pool, scale_down_pending(outcome))
        return outcome

    def _initial_replicas(
        self, pool: WorkerPool, snapshot: PoolSnapshot | None, now: datetime
    ) -> int:
        if snapshot is None:
            return 0 if pool.spec.paused else pool.spec.replicas.min
        demand = snapshot.demand(now, pool.spec.concurrency)
        return recommend(pool.spec, demand, current=0).replicas

    def _scale_and_report(
        self,
        pool: WorkerPool,
        body: dict[str, Any],
        deployment: dict[str, Any] | None,
        snapshot: PoolSnapshot | None,
        database_error: str | None,
        *,
        region_name: str,
        region_exists: bool,
        now: datetime,
        outcome: Outcome,
        blockers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """Decide the pool's replicas, carry the decision out, write status."""
        namespace = pool.metadata.namespace or "default"
        previous = pool.status
        current = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
        scaling: ScalingFigures | None = None
        # No figures (database down), no Deployment (missing Region), or a
        # blocker (the pool's objects are not written): hold.
        desired = (
            previous.desired_replicas
            if previous and previous.desired_replicas is not None
            else current
        )
        if snapshot is not None and deployment is not None and not blockers:
            try:
                desired, scaling = self._scale(pool, deployment, snapshot, current, now, outcome)
            except DatabaseUnavailable as exc:
                database_error = str(exc)
        status = workerpool_status(
            pool,
            region=region_name,
            region_exists=region_exists,
            deployment=DeploymentFigures.from_kube(deployment) if deployment else None,
            desired_replicas=desired,
            queue=snapshot.figures(now) if snapshot is not None else None,
            now=now,
            database_error=database_error,
            scaling=scaling,
            blockers=blockers,
        )
        outcome.events += degraded_events(previous, status)
        outcome.status = status.to_kube()
        written = body.get("status") or {}
        if written != outcome.status:
            # A merge patch keeps keys it does not name: a field that is gone
            # now (a finished drain's scaleDown) must be sent as null.
            patch = {
                **{key: None for key in written if key not in outcome.status},
                **outcome.status,
            }
            self.kube.patch_workerpool_status(namespace, pool.metadata.name, patch)

    def _scale(
        self,
        pool: WorkerPool,
        deployment: dict[str, Any],
        snapshot: PoolSnapshot,
        current: int,
        now: datetime,
        outcome: Outcome,
    ) -> tuple[int, ScalingFigures]:
        """One scaling decision for a pool with a Deployment, carried out."""
        key = pool_key(pool)
        spec = pool.spec
        in_progress = pool.status.scale_down if pool.status else None
        rec = recommend(spec, snapshot.demand(now, spec.concurrency), current=current)
        clock = self._clock()
        if spec.paused or not spec.autoscaling.enabled:
            # Set by hand: followed at once (still draining before removing).
            self._stabilizers[key] = Stabilizer.seeded(clock, rec.replicas)
            desired = rec.replicas
        else:
            stabilizer = self._stabilizers.get(key)
            if stabilizer is None:
                # A new leader: what was in force (or being drained to) is
                # the floor for one full window.
                seed = in_progress.target_replicas if in_progress is not None else current
                stabilizer = self._stabilizers[key] = Stabilizer.seeded(clock, seed)
            held = stabilizer.add(clock, rec.replicas, spec.autoscaling.scale_down_delay_seconds)
            desired = max(spec.replicas.min, min(spec.replicas.max, held))
        pods: list[PodView] = []
        workers = snapshot.workers
        if needs_pods(current, desired, pool, workers) or may_have_orphans(workers, current, now):
            # Only the pods the ReplicaSet counts (and terminating ones): a
            # Failed (evicted) pod is neither live nor there to remove.
            pods = [pod_view(p) for p in self._unfinished_pods(pool)]
            workers = self._remove_orphans(pool, workers, {p.name for p in pods}, now, outcome)
        plan = plan_scale(
            desired=desired,
            reason=rec.reason,
            current=current,
            pods=pods,
            workers=[worker_view(w, now) for w in workers],
            in_progress=in_progress,
            drain_timeout_s=spec.drain.timeout_seconds,
            now=now,
        )
        self._carry_out(pool, plan, workers, current)
        outcome.acted = plan.acts
        outcome.events += [Event(n.type, n.reason, n.message) for n in plan.events]
        return desired, ScalingFigures(
            scale_down=plan.scale_down, wanted=rec.wanted, reason=rec.reason
        )

    def _remove_orphans(
        self,
        pool: WorkerPool,
        workers: list[Worker],
        pod_names: set[str],
        now: datetime,
        outcome: Outcome,
    ) -> list[Worker]:
        """Remove the registry rows of the pool's workers whose pods are gone
        (`orphaned_workers`): their credentials stop working (CR410), so a
        copy taken out of a pod dies with the pod. Returns the rows left."""
        orphans = orphaned_workers(workers, pod_names, now)
        if not orphans:
            return workers

        def remove(queue: Queue) -> None:
            for worker in orphans:
                with contextlib.suppress(WorkerNotFound):
                    queue.remove_worker(worker.id)

        gone = ", ".join(f"{w.id} ({w.name}, {w.state})" for w in orphans)
        self.queue.run(remove)
        log.info("pool %s: removed worker(s) whose pod is gone: %s", pool_key(pool), gone)
        outcome.events.append(
            Event("Normal", "WorkersRemoved", f"removed worker(s) whose pod is gone: {gone}")
        )
        removed = {w.id for w in orphans}
        return [w for w in workers if w.id not in removed]

    def _carry_out(
        self, pool: WorkerPool, plan: ScalePlan, workers: list[Worker], current: int
    ) -> None:
        """Do what `plan_scale` decided, in its order: workers needed again go
        back to work first; pods are marked before the replicas go down."""
        namespace = pool.metadata.namespace or "default"
        if plan.undrain:
            self.queue.run(lambda q: q.scaler_undrain(plan.undrain))
            names = {w.id: w.name for w in workers}
            for worker_id in plan.undrain:
                if worker_id in names:
                    self.kube.annotate_pod(namespace, names[worker_id], {DELETION_COST: None})
        if plan.drain:
            self.queue.run(lambda q: q.scaler_drain(plan.drain))
        for pod in plan.lowest_cost:
            self.kube.annotate_pod(namespace, pod, {DELETION_COST: LOWEST_DELETION_COST})
        if plan.replicas is not None:
            self._wrote(
                self.kube.scale_deployment(namespace, naming.deployment_name(pool), plan.replicas)
            )
            metrics.SCALE_CHANGES.labels("up" if plan.replicas > current else "down").inc()
        for pod in plan.replace:
            self.kube.delete_pod(namespace, pod)

    def _unfinished_pods(self, pool: WorkerPool) -> list[dict[str, Any]]:
        """The pool's pods a worker may still run in: terminating ones too,
        not a Failed (evicted) or Succeeded one, which the ReplicaSet no
        longer counts either."""
        return [
            p
            for p in self.kube.list_pods(
                pool.metadata.namespace or "default", naming.selector_string(pool)
            )
            if not finished_pod(p)
        ]

    def _still_draining(self, pool: WorkerPool, now: datetime) -> int:
        """How many of a deleted pool's workers may still hold jobs: its pods
        that have not finished (terminating ones included) or its live
        workers draining or holding jobs, whichever is more. Not the
        Deployment's status.replicas: it leaves out terminating pods, the
        very ones whose preStop hooks are draining."""
        pods = self._unfinished_pods(pool)
        busy = [
            w
            for w in self.queue.run(lambda q: q.pool_workers(pool_key(pool)))
            if live_worker(w, now) and (w.in_flight > 0 or w.state == WorkerState.DRAINING)
        ]
        return max(len(pods), len(busy))

    def finalize_pool(
        self, body: dict[str, Any], waited_s: float = 0.0, now: datetime | None = None
    ) -> list[Event]:
        """The pool is being deleted: drain its workers, then revoke its token
        and take its workers out of the registry. Its Deployment and Secret go
        with it (owner references).

        Draining first means deleting a pool interrupts no job: the Deployment
        is scaled to zero, each pod's preStop hook drains its worker, and
        until the pods are gone (terminating ones too) and no live worker of
        the pool drains or holds a job this raises `StillDraining` (the
        handler retries). After drain.timeoutSeconds plus the margin it stops
        waiting.
        """
        pool = WorkerPool.from_kube(body)
        namespace = pool.metadata.namespace or "default"
        key = pool_key(pool)
        deployment = self.kube.get_deployment(namespace, naming.deployment_name(pool))
        if waited_s < grace_period_s(pool):
            if deployment is not None and (deployment.get("spec") or {}).get("replicas") != 0:
                pods = int((deployment.get("status") or {}).get("replicas") or 0)
                self.kube.scale_deployment(namespace, naming.deployment_name(pool), 0)
                raise StillDraining(f"scaling {pods} worker(s) to zero before the pool goes")
            draining = self._still_draining(pool, now or datetime.now(UTC))
            if draining > 0:
                raise StillDraining(f"waiting for {draining} worker(s) to drain")
        secret = self.kube.get_secret(namespace, naming.secret_name(pool))
        if foreign_object("Secret", secret, pool) is not None:
            secret = None  # not the pool's: its token annotations mean nothing here
        previous = previous_token(secret)
        token_ids = [t for t in (current_token_id(secret), previous and previous.token_id) if t]

        def _retire(queue: Queue) -> int:
            for token_id in token_ids:
                # Revoked already, or never stored: nothing left to do.
                with contextlib.suppress(TokenNotFound, ValueError):
                    queue.revoke_token(int(token_id))
            removed = 0
            for worker in queue.list_workers():
                if worker.pool == key:
                    queue.remove_worker(worker.id)
                    removed += 1
            return removed

        if self.on_pool_gone is not None:
            self.on_pool_gone(key)
        with self._lock(f"pool/{key}"):
            self._blockers.pop(key, None)
            removed = self.queue.run(_retire)
        return [Event("Normal", "Retired", f"token revoked, {removed} worker(s) left the registry")]

    # -- Region ---------------------------------------------------------------------

    def _pools_in(self, region: str) -> list[WorkerPool]:
        """The WorkerPools that resolve to `region`. A pool the model refuses
        (kept by the API server under a newer CRD or a rule this release
        lacks) is left out with a warning: it must not stop every Region's
        status (its own reconcile reports it)."""
        pools = []
        for item in self.kube.list_workerpools(list(self.config.watch_namespaces)):
            try:
                pool = WorkerPool.from_kube(item)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                meta = item.get("metadata") or {}
                log.warning(
                    "region %s: WorkerPool %s/%s left out, its spec does not parse: %s",
                    region, meta.get("namespace"), meta.get("name"), exc,
                )  # fmt: skip
                continue
            if self.region_of(pool) == region:
                pools.append(pool)
        return pools

    def reconcile_region(self, body: dict[str, Any], now: datetime | None = None) -> Outcome:
        region = Region.from_kube(body)
        now = now or datetime.now(UTC)
        with self._lock(f"region/{region.metadata.name}"):
            pools = self._pools_in(region.metadata.name)
            queues = sorted({queue for pool in pools for queue in pool.spec.queues})

            def _figures(queue: Queue) -> QueueFigures:
                workers = [
                    w
                    for w in queue.list_workers()
                    if w.region == region.metadata.name and live_worker(w, now)
                ]
                depth = queue.depth(queues, region.metadata.name).pending if queues else 0
                return QueueFigures(
                    depth=depth, running=sum(held_jobs(w) for w in workers), workers=len(workers)
                )

            database_error: str | None = None
            try:
                figures: QueueFigures | None = self.queue.run(_figures)
            except DatabaseUnavailable as exc:
                log.warning("region %s: %s", region.metadata.name, exc)
                figures, database_error = None, str(exc)
            status = region_status(
                region, pools=pools, queue=figures, now=now, database_error=database_error
            )
            outcome = Outcome(status=status.to_kube())
            self.kube.patch_region_status(region.metadata.name, outcome.status or {})
            return outcome

    def resync_regions(self) -> int:
        """Refresh every Region's status (its worker and depth figures change
        without any event on the Region), after putting the default Region
        back if it was deleted; returns how many were refreshed. One Region
        that fails is logged and the rest go on."""
        try:
            if self.ensure_default_region():
                log.info("created the default Region %r again", self.config.default_region)
        except KubeError as exc:
            log.warning("cannot create the default Region: %s", exc)
        regions = self.kube.list_regions()
        refreshed = 0
        for body in regions:
            try:
                self.reconcile_region(body)
            except (KubeError, ValueError) as exc:
                name = (body.get("metadata") or {}).get("name")
                log.warning("refreshing Region %s failed: %s", name, exc)
                continue
            refreshed += 1
        return refreshed

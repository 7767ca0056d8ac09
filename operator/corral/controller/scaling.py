"""How many workers a pool should run, and which of them leave first.

Pure: the functions here take the pool's spec and what the operator observed
(queue demand, the pool's pods and its workers' registry rows) and return
decisions as data. `corral.controller.reconcile` gathers the inputs and
carries the decisions out, on every reconcile and on every evaluation the
autoscaler (`corral.controller.autoscaler`) triggers; the unit tests call
them directly.

Three steps, each its own function:

1. `recommend`: the replicas the demand asks for right now, within
   [replicas.min, replicas.max] (the formulas are in docs/operator.md).
2. `Stabilizer`: scale up at once; scale down only to the highest
   recommendation of the last `scaleDownDelaySeconds` (the sliding-window
   maximum the HorizontalPodAutoscaler uses), so a dip in demand does not
   remove workers that are needed again a moment later.
3. `plan_scale`: turn a lower count into a drain that never removes a busy
   worker. The idlest workers are asked to drain through the registry; once
   they report drained (or `drain.timeoutSeconds` passed) their pods get the
   lowest `controller.kubernetes.io/pod-deletion-cost` and only then does the
   Deployment's replicas go down. New demand cancels the drain of the
   workers it needs. A higher count scales up at once.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

from corral.api import WorkerPoolSpec
from corral.api.v1alpha1 import ScaleDown
from corral.controller.events import Event

log = logging.getLogger(__name__)

# Target-wait mode keeps the busy share of the slots at or below this: at 100%
# a queue never drains (every burst waits for a slot), while a little headroom
# lets jobs start at once under a steady rate.
TARGET_UTILISATION = 0.8

# Registry states and drain origins as they arrive from corral.queue, kept as
# strings so that this module stays free of the queue package.
ACTIVE, DRAINING, DRAINED = "active", "draining", "drained"
BY_SCALER, BY_ADMIN = "scaler", "admin"


# ----------------------------------------------------------------------- demand


@dataclass(frozen=True)
class FlowRate:
    """The pool's queues over the last minute: arrivals and mean job duration."""

    arrivals_per_s: float
    mean_duration_s: float


@dataclass(frozen=True)
class Demand:
    """What the queue asks of a pool now."""

    waiting: int  # jobs ready to run in the pool's queues that are not paused
    running: int  # jobs held by workers in the pool's queues
    busy_workers: int  # live workers of the pool holding at least one job
    rate: FlowRate | None = None  # measured flow (target-wait mode); None: unknown


@dataclass(frozen=True)
class Recommendation:
    """The replicas wanted now, before stabilisation, and why."""

    replicas: int  # within [replicas.min, replicas.max]
    wanted: int  # what demand alone asks for, before the bounds
    reason: str  # for Events and status: "340 waiting + 12 running, 50 per worker"
    max_replicas: int = 0

    @property
    def limited_by_max(self) -> bool:
        return self.wanted > self.max_replicas


def recommend(spec: WorkerPoolSpec, demand: Demand, *, current: int) -> Recommendation:
    """Replicas for `demand`, given the `current` replicas of the Deployment.

    - paused: 0; autoscaling off: replicas.min;
    - default mode: ceil((waiting + running) / jobsPerWorker);
    - target-wait mode, once a flow rate is known: enough slots for the
      arrivals at TARGET_UTILISATION (Little's law: busy slots = arrival rate
      x mean duration) plus enough to start today's backlog within the target;
    - from zero, the first worker waits for activationDepth waiting jobs;
    - never fewer than the workers that hold jobs; then within [min, max].
    """
    bounds = spec.replicas
    if spec.paused:
        return Recommendation(0, 0, "spec.paused is true", bounds.max)
    if not spec.autoscaling.enabled:
        return Recommendation(
            bounds.min, bounds.min, "autoscaling is off: replicas.min", bounds.max
        )
    auto = spec.autoscaling
    rate = demand.rate
    if auto.target_wait_seconds and rate is not None and rate.mean_duration_s > 0:
        wanted, reason = _target_wait(
            rate, demand.waiting, auto.target_wait_seconds, spec.concurrency
        )
    else:
        wanted = math.ceil((demand.waiting + demand.running) / auto.jobs_per_worker)
        reason = (
            f"{demand.waiting} waiting + {demand.running} running, "
            f"{auto.jobs_per_worker} per worker"
        )
    threshold = max(1, auto.activation_depth)
    if current == 0 and demand.running == 0 and demand.waiting < threshold:
        wanted = 0
        reason = f"{demand.waiting} waiting, fewer than activationDepth {threshold}"
    if wanted < demand.busy_workers:
        wanted = demand.busy_workers
        reason += f"; {demand.busy_workers} worker(s) hold jobs"
    replicas = max(bounds.min, min(bounds.max, wanted))
    return Recommendation(replicas, wanted, reason, bounds.max)


def _target_wait(rate: FlowRate, waiting: int, target_s: int, concurrency: int) -> tuple[int, str]:
    duration = rate.mean_duration_s
    flow = rate.arrivals_per_s * duration / (concurrency * TARGET_UTILISATION)
    backlog = waiting * duration / (target_s * concurrency)
    # A hair under an integer is that integer (float noise must not add a worker).
    wanted = math.ceil(flow + backlog - 1e-9) if flow + backlog > 0 else 0
    reason = (
        f"{rate.arrivals_per_s:.2f} jobs/s x {duration:.2f}s mean over {concurrency} slot(s) "
        f"at {TARGET_UTILISATION:.0%} + {waiting} waiting to start within {target_s}s"
    )
    return wanted, reason


# -------------------------------------------------------------- stabilisation


@dataclass
class Stabilizer:
    """The highest recommendation of the last `window_s` seconds.

    A monotonic deque: each sample drops every older sample that is not
    higher, so the front is always the window's maximum and memory stays
    small whatever the evaluation rate. Times are the operator's monotonic
    clock (seconds). Seeded with the replicas in force when the operator
    took over, so a restart never scales down before a full window passed.
    """

    samples: deque[tuple[float, int]] = field(default_factory=deque)

    @classmethod
    def seeded(cls, now: float, replicas: int) -> Stabilizer:
        return cls(deque([(now, replicas)]))

    def add(self, now: float, replicas: int, window_s: float) -> int:
        """Record a recommendation; return the replicas to aim for."""
        samples = self.samples
        while samples and samples[-1][1] <= replicas:
            samples.pop()
        samples.append((now, replicas))
        while len(samples) > 1 and samples[0][0] <= now - window_s:
            samples.popleft()
        return samples[0][1]


# ------------------------------------------------------------------ the drain


@dataclass(frozen=True)
class PodView:
    """A pod of the pool that has not finished (Failed or Succeeded pods are
    left out, as the ReplicaSet does), as far as choosing one to remove goes."""

    name: str
    ready: bool
    terminating: bool
    created: str = ""  # RFC 3339; a newer pod goes first among equals, as the ReplicaSet does
    marked: bool = False  # has the lowest pod-deletion-cost: a finished scale-down chose it


@dataclass(frozen=True)
class WorkerView:
    """The registry row of the worker in a pod (the worker is named after its pod)."""

    id: int
    name: str
    state: str  # active, draining, drained
    in_flight: int
    drain_by: str | None  # scaler, admin, self or None
    live: bool  # heartbeating recently


@dataclass(frozen=True)
class ScalePlan:
    """What to do, in this order: undrain, drain, mark pods, set replicas, replace."""

    replicas: int | None = None  # the Deployment's new spec.replicas; None: leave it
    drain: tuple[int, ...] = ()  # worker ids the scaler asks to drain
    undrain: tuple[int, ...] = ()  # worker ids whose scaler drain is cancelled
    lowest_cost: tuple[str, ...] = ()  # pods to mark for removal before replicas go down
    replace: tuple[str, ...] = ()  # pods of drained workers to delete (new ones replace them)
    scale_down: ScaleDown | None = None  # the drain in progress, to keep in status
    events: tuple[Event, ...] = ()

    @property
    def acts(self) -> bool:
        """Whether carrying it out changes anything (replicas, drains, pods)."""
        return self.replicas is not None or bool(
            self.drain or self.undrain or self.lowest_cost or self.replace
        )


def _workers_by_pod(workers: list[WorkerView]) -> dict[str, WorkerView]:
    """The registry row of each pod's worker, by the pod's name.

    A name that several rows claim (the rows are the pool's, removed ones
    left out) is trusted as none of them: any holder of the pool's token or
    of a worker's credential could have taken it (before migration 0019 a
    worker could rename itself) and report drained and idle, so that the
    scale-down removes the busy pod of that name. Such a pod counts as busy
    (an active, live worker holding a job: removed last, never counted as
    drained, so only drain.timeoutSeconds lets it go), and it is logged."""
    rows: dict[str, list[WorkerView]] = {}
    for worker in sorted(workers, key=lambda w: w.id):
        rows.setdefault(worker.name, []).append(worker)
    by_pod: dict[str, WorkerView] = {}
    for name, claims in rows.items():
        newest = claims[-1]
        if len(claims) > 1:
            log.warning(
                "pod %s is claimed by %d registry rows (workers %s): none is trusted as "
                "drained, the pod counts as busy",
                name, len(claims), ", ".join(str(w.id) for w in claims),
            )  # fmt: skip
            newest = WorkerView(
                id=newest.id,
                name=name,
                state=ACTIVE,
                in_flight=max(1, max(w.in_flight for w in claims)),
                drain_by=None,
                live=True,
            )
        by_pod[name] = newest
    return by_pod


def removal_rank(pod: PodView, worker: WorkerView | None) -> tuple[int, int]:
    """Lower goes first: pods with nothing to lose, then drained, draining,
    idle and finally busy workers by how many jobs they hold."""
    if worker is None or not worker.live:
        return (0 if not pod.ready else 3, 0)
    if worker.state == DRAINED and worker.in_flight == 0:
        return (1, 0)
    if worker.state in (DRAINING, DRAINED):
        return (2, worker.in_flight)
    return (4, worker.in_flight)


def choose_to_remove(
    pods: list[PodView],
    workers: list[WorkerView],
    count: int,
    exclude: frozenset[str] = frozenset(),
) -> list[str]:
    """The `count` pods to remove first (see `removal_rank`); ties: newest pod first."""
    by_pod = _workers_by_pod(workers)
    candidates = [p for p in pods if not p.terminating and p.name not in exclude]
    # Two stable sorts: newest first, then by rank (which keeps that order among equals).
    candidates.sort(key=lambda p: (p.created, p.name), reverse=True)
    candidates.sort(key=lambda p: removal_rank(p, by_pod.get(p.name)))
    return [p.name for p in candidates[:count]]


def _drained(worker: WorkerView | None) -> bool:
    """Nothing left to lose: no live worker, or one that reports drained and idle."""
    return worker is None or not worker.live or (worker.state == DRAINED and worker.in_flight == 0)


def _leaving(live: list[PodView], replicas: int) -> set[str]:
    """The marked pods of a finished scale-down that the ReplicaSet has not
    deleted yet: while more pods run than `replicas`, up to that many marked
    ones are on their way out (not-ready ones go first, then the newest, as
    the ReplicaSet picks). The Deployment and ReplicaSet take a moment to act
    on lowered replicas; an evaluation in that moment must neither send
    their drained workers back to work nor strip their mark, or the
    ReplicaSet may remove another, busy pod instead. Once the pods are as
    many as the replicas, a marked pod still there was passed over (the cost
    is best effort) and counts as live again."""
    surplus = len(live) - replicas
    if surplus <= 0:
        return set()
    marked = sorted(
        (p for p in live if p.marked), key=lambda p: (not p.ready, p.created, p.name), reverse=True
    )
    return {p.name for p in marked[:surplus]}


def plan_scale(
    *,
    desired: int,
    reason: str,
    current: int,
    pods: list[PodView],
    workers: list[WorkerView],
    in_progress: ScaleDown | None,
    drain_timeout_s: float,
    now: datetime,
) -> ScalePlan:
    """Actions that move the Deployment from `current` to `desired` replicas
    without removing a worker that holds a job.

    `pods` are the pool's pods, `workers` its workers' registry rows, and
    `in_progress` the drain recorded in status (by this operator or the one
    before it). Scaling up is immediate; scaling down is a drain first.
    """
    by_pod = _workers_by_pod(workers)
    live = [p for p in pods if not p.terminating]
    leaving = _leaving(live, max(current, desired))
    live = [p for p in live if p.name not in leaving]
    live_names = {p.name for p in live}

    def scaler_drains(keep: set[str]) -> tuple[int, ...]:
        """The scaler's drains of live pods outside `keep`: cancelled."""
        return tuple(
            w.id
            for name, w in sorted(by_pod.items())
            if name in live_names
            and name not in keep
            and w.drain_by == BY_SCALER
            and w.state in (DRAINING, DRAINED)
        )

    if desired >= current:
        undrain = scaler_drains(set())
        notes: list[Event] = []
        if in_progress is not None and undrain:
            notes.append(
                Event(
                    "Normal",
                    "DrainCancelled",
                    f"{len(undrain)} draining worker(s) back to work: {reason}",
                )
            )
        # A worker drained by hand (`corral workers drain`) must not sit there
        # not ready: its pod goes and the Deployment starts a fresh one.
        replace = tuple(
            name
            for name, w in sorted(by_pod.items())
            if name in live_names and w.drain_by == BY_ADMIN and _drained(w) and w.live
        )
        if desired > current:
            notes.append(Event("Normal", "Scaled", f"scaled {current} -> {desired}: {reason}"))
        return ScalePlan(
            replicas=desired if desired > current else None,
            undrain=undrain,
            replace=replace,
            events=tuple(notes),
        )

    # Scaling down by k: replicas that have no pod yet go first and cost nothing.
    k = current - desired
    missing = max(0, current - len(live))
    need = k - missing
    if need <= 0:
        return ScalePlan(
            replicas=desired,
            undrain=scaler_drains(set()),
            events=(Event("Normal", "Scaled", f"scaled {current} -> {desired}: {reason}"),),
        )

    held = [name for name in (in_progress.pods if in_progress else []) if name in live_names]
    chosen = choose_to_remove(
        [p for p in live if p.name in held], workers, len(held)
    )  # the kept ones, best first
    if len(chosen) > need:
        chosen = chosen[:need]  # demand rose a little: the least drained go back to work
    elif len(chosen) < need:
        chosen += choose_to_remove(live, workers, need - len(chosen), exclude=frozenset(chosen))
    chosen_set = set(chosen)
    drain = tuple(
        by_pod[name].id
        for name in chosen
        if name in by_pod and by_pod[name].live and by_pod[name].state == ACTIVE
    )
    undrain = scaler_drains(chosen_set)
    same = in_progress is not None and set(in_progress.pods) == chosen_set
    started = in_progress.started_at if in_progress is not None and held else now
    overdue = (now - started).total_seconds() >= drain_timeout_s
    drained = all(_drained(by_pod.get(name)) for name in chosen)
    if drained or overdue:
        why = "drained" if drained else f"drain.timeoutSeconds ({drain_timeout_s:g}s) ran out"
        message = f"scaled {current} -> {desired}: {reason}; {why}: {', '.join(sorted(chosen))}"
        return ScalePlan(
            replicas=desired,
            undrain=undrain,
            lowest_cost=tuple(sorted(chosen)),
            events=(Event("Normal", "Scaled", message),),
        )
    notes = []
    if not same:
        notes.append(
            Event(
                "Normal",
                "Draining",
                f"draining {len(chosen)} worker(s) before scaling {current} -> {desired}: {reason}",
            )
        )
    return ScalePlan(
        drain=drain,
        undrain=undrain,
        scale_down=ScaleDown(target_replicas=desired, pods=sorted(chosen), started_at=started),
        events=tuple(notes),
    )

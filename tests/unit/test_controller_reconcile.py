"""One reconcile, with in-memory stand-ins for the API server and the queue:
what the Reconciler writes, and what it leaves alone, in each situation."""

from __future__ import annotations

import base64
import copy
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any, cast

import pytest

from corral.controller import reconcile
from corral.controller.config import OperatorConfig
from corral.controller.queue_access import DatabaseUnavailable, QueueAccess
from corral.controller.reconcile import PoolSnapshot, Reconciler, StillDraining
from corral.kube import Kube
from corral.queue import Backlog, Depth, Flow, TokenNotFound, Worker, WorkerState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DSN = "postgresql://corral:pw@db:5432/corral"
WORKER_DSN = "postgresql://corral_worker_1:pw@db:5432/corral"


@dataclass
class FakeKube:
    objects: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    statuses: dict[tuple[str, str | None, str], dict[str, Any]] = field(default_factory=dict)
    applied: list[str] = field(default_factory=list)
    deleted_pods: list[str] = field(default_factory=list)
    events: list[tuple[str, str]] = field(default_factory=list)

    def _get(self, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def get_region(self, name: str) -> dict[str, Any] | None:
        return self._get("Region", None, name)

    def get_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("Deployment", namespace, name)

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._get("Secret", namespace, name)

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        meta = body["metadata"]
        key = (body["kind"], meta.get("namespace"), meta["name"])
        # As the API server does: a changed spec is a new generation.
        stored = self.objects.get(key)
        generation = int(stored["metadata"].get("generation", 1)) if stored else 1
        if stored is not None and stored.get("spec") != body.get("spec"):
            generation += 1
        meta["generation"] = generation
        self.objects[key] = body
        self.applied.append(body["kind"])
        return body

    def scale_deployment(self, namespace: str, name: str, replicas: int) -> dict[str, Any]:
        deployment = self.objects[("Deployment", namespace, name)]
        if deployment["spec"]["replicas"] != replicas:
            deployment["spec"]["replicas"] = replicas
            deployment["metadata"]["generation"] += 1
        return copy.deepcopy(deployment)

    def create_region(self, body: dict[str, Any]) -> bool:
        key = ("Region", None, body["metadata"]["name"])
        if key in self.objects:
            return False
        self.objects[key] = body
        return True

    def patch_workerpool_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        # A JSON merge patch, as the API server applies it: null removes a key.
        pool = self.objects.get(("WorkerPool", namespace, name)) or {}
        merged = {**(pool.get("status") or {}), **status}
        merged = {key: value for key, value in merged.items() if value is not None}
        self.statuses[("WorkerPool", namespace, name)] = merged
        if pool:
            pool["status"] = merged

    def get_workerpool(self, namespace: str, name: str) -> dict[str, Any] | None:
        pool = self.objects.get(("WorkerPool", namespace, name))
        return copy.deepcopy(pool) if pool is not None else None

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [
            body
            for (kind, ns, _), body in self.objects.items()
            if kind == "Pod" and ns == namespace
        ]

    def annotate_pod(self, namespace: str, name: str, annotations: dict[str, str | None]) -> None:
        pod = self.objects[("Pod", namespace, name)]
        current = pod["metadata"].setdefault("annotations", {})
        for key, value in annotations.items():
            if value is None:
                current.pop(key, None)
            else:
                current[key] = value

    def delete_pod(self, namespace: str, name: str) -> None:
        self.deleted_pods.append(name)

    def post_event(
        self, obj: dict[str, Any], type: str, reason: str, message: str, component: str
    ) -> None:
        self.events.append((reason, message))

    def patch_region_status(self, name: str, status: dict[str, Any]) -> None:
        self.statuses[("Region", None, name)] = status

    def list_workerpools(self, namespaces: list[str] | None = None) -> list[dict[str, Any]]:
        return [body for (kind, _, _), body in self.objects.items() if kind == "WorkerPool"]

    def list_regions(self) -> list[dict[str, Any]]:
        return [body for (kind, _, _), body in self.objects.items() if kind == "Region"]


@dataclass
class FakeQueue:
    up: bool = True
    tokens: dict[int, dict[str, Any]] = field(default_factory=dict)
    token_uses: dict[int, int] = field(default_factory=dict)
    token_queues: dict[int, list[str]] = field(default_factory=dict)
    token_expiry: dict[int, datetime] = field(default_factory=dict)  # unset: far off
    workers: list[Any] = field(default_factory=list)
    pending: int = 0
    backlog_leads: list[float] = field(default_factory=list)
    role_rights: dict[str, list[str]] = field(default_factory=dict)  # unset: a worker's only

    def run(self, fn: Any) -> Any:
        if not self.up:
            raise DatabaseUnavailable("database unreachable: connection refused")
        return fn(self)

    def create_token(
        self, region: str, *, pool: str, ttl_s: float, uses: int, queues: list[str]
    ) -> Any:
        token_id = len(self.token_uses) + 1  # a sequence: ids of deleted tokens are not reused
        self.tokens[token_id] = {"region": region, "pool": pool, "revoked": False}
        self.token_uses[token_id] = uses
        self.token_queues[token_id] = queues
        return SimpleNamespace(secret=f"crl_et_secret{token_id}", info=SimpleNamespace(id=token_id))

    def get_token(self, token_id: int) -> Any:
        if token_id not in self.tokens:
            raise TokenNotFound("no such token")
        return SimpleNamespace(
            uses_remaining=self.token_uses[token_id],
            expires_at=self.token_expiry.get(token_id, datetime(9999, 1, 1, tzinfo=UTC)),
            revoked_at=NOW if self.tokens[token_id]["revoked"] else None,
            display_prefix=f"crl_et_secret{token_id}"[:13],  # as _params.token_params keeps it
        )

    def worker_role_rights(self, role: str) -> list[str] | None:
        return self.role_rights.get(role, [])

    def revoke_token(self, token_id: int) -> int:
        if token_id not in self.tokens:
            raise TokenNotFound("no such token")
        self.tokens[token_id]["revoked"] = True
        return token_id

    def depth(self, queues: list[str], region: str | None = None) -> Depth:
        return Depth(self.pending, 0, capped=False)

    def backlog(
        self, queues: list[str], region: str | None = None, *, cap: int = 0, lead_s: float = 0.0
    ) -> Backlog:
        self.backlog_leads.append(lead_s)
        return Backlog(self.pending, self.pending, capped=False)

    def flow(self, queues: list[str], region: str | None = None, *, window_s: float = 60) -> Flow:
        return Flow(window_s, 0, 0, None)

    def pool_workers(self, pool: str) -> list[Any]:
        return [w for w in self.workers if w.pool == pool and w.state != WorkerState.REMOVED]

    def scaler_drain(self, ids: list[int]) -> list[int]:
        moved = []
        for worker in self.workers:
            if worker.id in ids and worker.state == WorkerState.ACTIVE:
                worker.state, worker.drain_requested_by = WorkerState.DRAINING, "scaler"
                moved.append(worker.id)
        return moved

    def scaler_undrain(self, ids: list[int]) -> list[int]:
        moved = []
        for worker in self.workers:
            if worker.id in ids and worker.drain_requested_by == "scaler":
                worker.state, worker.drain_requested_by = WorkerState.ACTIVE, None
                moved.append(worker.id)
        return moved

    def list_workers(self) -> list[Any]:
        return list(self.workers)

    def remove_worker(self, worker_id: int) -> Any:
        for worker in self.workers:
            if worker.id == worker_id:
                worker.state = WorkerState.REMOVED
        return None


def _pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "email", "namespace": "jobs", "uid": "u-1", "generation": 1},
        "spec": {"queues": ["email"], "replicas": {"min": 2, "max": 4}, **spec},
    }


def _setup(
    region: bool = True, worker_database_url: str | None = WORKER_DSN
) -> tuple[Reconciler, FakeKube, FakeQueue]:
    kube, queue = FakeKube(), FakeQueue()
    if region:
        kube.objects[("Region", None, "default")] = {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "Region",
            "metadata": {"name": "default"},
            "spec": {},
        }
    reconciler = Reconciler(
        cast(Kube, kube),
        cast(QueueAccess, queue),
        OperatorConfig(database_url=DSN, worker_database_url=worker_database_url),
    )
    return reconciler, kube, queue


def _reconcile(reconciler: Reconciler, body: dict[str, Any], now: datetime) -> Any:
    """What kopf does: the pool exists in the API server, and a handler reconciles it."""
    kube = cast(FakeKube, reconciler.kube)
    meta = body["metadata"]
    stored = kube.objects.get(("WorkerPool", meta["namespace"], meta["name"]))
    if stored is not None and "status" not in body and "status" in stored:
        body = {**body, "status": stored["status"]}
    kube.objects[("WorkerPool", meta["namespace"], meta["name"])] = copy.deepcopy(body)
    return reconciler.reconcile_pool(body, now=now)


def test_a_new_pool_gets_a_token_an_owned_secret_and_an_owned_deployment() -> None:
    reconciler, kube, queue = _setup()
    outcome = _reconcile(reconciler, _pool(), now=NOW)
    assert queue.tokens == {1: {"region": "default", "pool": "jobs/email", "revoked": False}}
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert base64.b64decode(secret["data"]["token"]).decode() == "crl_et_secret1"
    # The workers' URL, never the operator's own.
    assert base64.b64decode(secret["data"]["database-url"]).decode() == WORKER_DSN
    # The token admits the pool's queues only, for a few pods' worth of starts.
    assert queue.token_queues[1] == ["email"] and queue.token_uses[1] == 16
    deployment = kube.objects[("Deployment", "jobs", "email")]
    policy = kube.objects[("NetworkPolicy", "jobs", "email")]
    for owned in (secret, deployment, policy):
        (owner,) = owned["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("WorkerPool", "u-1", True)
    assert deployment["spec"]["replicas"] == 2
    assert outcome.status is not None and outcome.status["phase"] == "Pending"
    assert [e.reason for e in outcome.events] == ["Created"]


def test_reconciling_twice_mints_no_second_token_and_writes_the_same_objects() -> None:
    reconciler, kube, queue = _setup()
    pool = _pool()
    _reconcile(reconciler, pool, now=NOW)
    first = dict(kube.objects)
    pool["status"] = kube.statuses[("WorkerPool", "jobs", "email")]
    outcome = _reconcile(reconciler, pool, now=NOW + timedelta(minutes=1))
    assert len(queue.tokens) == 1
    assert kube.objects == first
    assert outcome.events == []


def test_only_a_deployment_event_the_operator_did_not_cause_asks_for_a_reconcile() -> None:
    reconciler, kube, queue = _setup()
    pool = _pool(autoscaling={"jobsPerWorker": 1})
    _reconcile(reconciler, pool, now=NOW)
    deployment = copy.deepcopy(kube.objects[("Deployment", "jobs", "email")])
    # The echo of its own apply, then the kubelet's and ReplicaSet's status updates.
    assert not reconciler.deployment_changed(deployment)
    deployment["status"] = {"replicas": 2, "readyReplicas": 1}
    assert not reconciler.deployment_changed(deployment)
    # The echo of its own scaling.
    queue.pending = 3
    outcome = reconciler.autoscale("jobs", "email", now=NOW + timedelta(seconds=1))
    scaled = kube.objects[("Deployment", "jobs", "email")]
    assert scaled["spec"]["replicas"] == 3
    # It says it acted (the autoscaler keeps evaluating it often); the next
    # evaluation, with nothing to change, says it did not.
    assert outcome is not None and outcome.acted
    again = reconciler.autoscale("jobs", "email", now=NOW + timedelta(seconds=2))
    assert again is not None and not again.acted
    assert not reconciler.deployment_changed(copy.deepcopy(scaled))
    # Someone else's edit (a new generation), and a deletion, do.
    edited = copy.deepcopy(scaled)
    edited["metadata"]["generation"] += 1
    assert reconciler.deployment_changed(edited)
    assert reconciler.deployment_changed(copy.deepcopy(scaled), deleted=True)
    # Seen for the first time (an operator that just started): reconcile.
    assert Reconciler(
        cast(Kube, kube), cast(QueueAccess, queue), OperatorConfig(database_url=DSN)
    ).deployment_changed(copy.deepcopy(scaled))


def test_a_pool_with_its_own_database_secret_gets_no_copy_of_the_operators_url() -> None:
    reconciler, kube, _ = _setup()
    _reconcile(reconciler, _pool(database={"secretRef": {"name": "jobs-db"}}), now=NOW)
    assert "database-url" not in kube.objects[("Secret", "jobs", "email-enrollment")]["data"]


def test_a_missing_region_creates_no_deployment_and_degrades_once_with_an_event() -> None:
    reconciler, kube, _ = _setup(region=False)
    pool = _pool()
    outcome = _reconcile(reconciler, pool, now=NOW)
    assert ("Deployment", "jobs", "email") not in kube.objects
    assert outcome.status is not None and outcome.status["phase"] == "Degraded"
    assert [e.reason for e in outcome.events] == ["RegionNotFound"]
    pool["status"] = outcome.status
    again = _reconcile(reconciler, pool, now=NOW + timedelta(seconds=10))
    assert again.events == []  # no event storm on every resync


def test_an_unreachable_database_still_applies_the_deployment_and_says_why() -> None:
    reconciler, kube, queue = _setup()
    queue.up = False
    outcome = _reconcile(reconciler, _pool(), now=NOW)
    assert ("Deployment", "jobs", "email") in kube.objects
    assert outcome.status is not None and outcome.status["phase"] == "Degraded"
    degraded = {c["type"]: c for c in outcome.status["conditions"]}["Degraded"]
    assert degraded["reason"] == "DatabaseUnreachable"
    assert "pw" not in degraded["message"]


def test_a_token_near_its_end_is_rotated_without_touching_the_deployment() -> None:
    reconciler, kube, queue = _setup()
    pool = _pool(enrollment={"tokenTTLSeconds": 3600})
    _reconcile(reconciler, pool, now=NOW)
    template = kube.objects[("Deployment", "jobs", "email")]["spec"]["template"]
    outcome = _reconcile(reconciler, pool, now=NOW + timedelta(minutes=45))
    assert len(queue.tokens) == 2
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert secret["metadata"]["annotations"]["corral.dev/token-id"] == "2"
    assert kube.objects[("Deployment", "jobs", "email")]["spec"]["template"] == template
    assert "TokenRotated" in [e.reason for e in outcome.events]


def _terminating(kube: FakeKube, *names: str) -> None:
    """The ReplicaSet deleted these pods: their preStop hooks are draining."""
    for name in names:
        meta = kube.objects[("Pod", "jobs", name)]["metadata"]
        meta["deletionTimestamp"] = "2026-11-22T12:00:01Z"


def test_deleting_a_pool_first_scales_it_to_zero_and_waits_for_its_workers_to_drain() -> None:
    reconciler, kube, queue = _setup()
    _reconcile(reconciler, _pool(), now=NOW)
    deployment = kube.objects[("Deployment", "jobs", "email")]
    deployment["status"] = {"replicas": 2}
    _pods(kube, "p1", "p2")
    with pytest.raises(StillDraining, match="scaling 2 worker"):
        reconciler.finalize_pool(_pool(), waited_s=0, now=NOW)
    assert deployment["spec"]["replicas"] == 0
    # As Kubernetes counts: terminating pods leave status.replicas at once.
    deployment["status"] = {"replicas": 0, "terminatingReplicas": 2}
    _terminating(kube, "p1", "p2")
    with pytest.raises(StillDraining, match="waiting for 2 worker"):
        reconciler.finalize_pool(_pool(), waited_s=10, now=NOW)
    assert queue.tokens[1]["revoked"] is False  # nothing retired while pods drain
    del kube.objects[("Pod", "jobs", "p1")], kube.objects[("Pod", "jobs", "p2")]
    reconciler.finalize_pool(_pool(), waited_s=20, now=NOW)
    assert queue.tokens[1]["revoked"] is True


def test_a_deleted_pool_waits_for_terminating_pods_and_busy_workers_not_status_replicas() -> None:
    reconciler, kube, queue = _setup()
    _reconcile(reconciler, _pool(), now=NOW)
    kube.objects[("Deployment", "jobs", "email")]["spec"]["replicas"] = 0
    kube.objects[("Deployment", "jobs", "email")]["status"] = {"terminatingReplicas": 1}
    _pods(kube, "p1", "p0")
    _terminating(kube, "p1")
    kube.objects[("Pod", "jobs", "p0")]["status"] = {"phase": "Failed", "reason": "Evicted"}
    busy = _live_worker(7, "p1", in_flight=3)
    busy.state = WorkerState.DRAINING
    queue.workers = [busy]
    # p1 drains its three jobs in its preStop hook (the evicted p0 runs nothing).
    with pytest.raises(StillDraining, match="waiting for 1 worker"):
        reconciler.finalize_pool(_pool(), waited_s=2, now=NOW)
    # Its pod gone from the list, the worker still heartbeats with jobs.
    del kube.objects[("Pod", "jobs", "p1")]
    with pytest.raises(StillDraining, match="waiting for 1 worker"):
        reconciler.finalize_pool(_pool(), waited_s=4, now=NOW)
    assert busy.state == WorkerState.DRAINING and queue.tokens[1]["revoked"] is False
    busy.state, busy.in_flight = WorkerState.DRAINED, 0
    reconciler.finalize_pool(_pool(), waited_s=6, now=NOW)
    assert busy.state == WorkerState.REMOVED and queue.tokens[1]["revoked"] is True


def test_a_deleted_pool_stops_waiting_for_stuck_pods_after_the_drain_timeout() -> None:
    reconciler, kube, queue = _setup()
    _reconcile(reconciler, _pool(), now=NOW)
    kube.objects[("Deployment", "jobs", "email")]["status"] = {"replicas": 2}
    reconciler.finalize_pool(_pool(), waited_s=300 + 15)
    assert queue.tokens[1]["revoked"] is True


def test_deleting_a_pool_revokes_its_token_and_removes_its_workers() -> None:
    reconciler, kube, queue = _setup()
    _reconcile(reconciler, _pool(), now=NOW)
    del kube.objects[("Deployment", "jobs", "email")]  # garbage-collected already
    mine = _live_worker(7, "p1")  # its pod gone; idle
    other = SimpleNamespace(id=8, pool="jobs/sms", state=WorkerState.ACTIVE)
    queue.workers = [mine, other]
    events = reconciler.finalize_pool(_pool(), now=NOW)
    assert queue.tokens[1]["revoked"] is True
    assert (mine.state, other.state) == (WorkerState.REMOVED, WorkerState.ACTIVE)
    assert "1 worker(s) left the registry" in events[0].message


def test_a_pool_without_a_worker_database_is_degraded_saying_what_to_create() -> None:
    reconciler, kube, _ = _setup(worker_database_url=None)
    outcome = _reconcile(reconciler, _pool(), now=NOW)
    assert ("Deployment", "jobs", "email") not in kube.objects
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert "database-url" not in secret["data"]  # never the operator's own URL
    assert outcome.status["phase"] == "Degraded"
    [warning] = [e for e in outcome.events if e.type == "Warning"]
    assert warning.reason == "NoWorkerDatabase"
    assert "corral db create-worker-role" in warning.message
    assert "spec.database.secretRef" in warning.message
    # A pool that names its own database Secret runs without the operator's.
    outcome = _reconcile(reconciler, _pool(database={"secretRef": {"name": "jobs-db"}}), now=NOW)
    assert ("Deployment", "jobs", "email") in kube.objects
    assert outcome.status["phase"] != "Degraded"


def test_a_worker_url_whose_role_holds_more_than_a_worker_reaches_no_pod() -> None:
    reconciler, kube, queue = _setup()
    queue.role_rights["corral_worker_1"] = ["superuser", "owner of this database"]
    outcome = _reconcile(reconciler, _pool(), now=NOW)
    assert ("Deployment", "jobs", "email") not in kube.objects
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert "database-url" not in secret["data"]  # the privileged URL is not handed out
    assert outcome.status["phase"] == "Degraded"
    [warning] = [e for e in outcome.events if e.type == "Warning"]
    assert warning.reason == "PrivilegedWorkerDatabase"
    assert "'corral_worker_1'" in warning.message and "superuser" in warning.message
    assert "corral db create-worker-role" in warning.message
    assert "pw@" not in warning.message  # names the role, never the URL
    # A pool that names its own database Secret does not use that URL.
    outcome = _reconcile(reconciler, _pool(database={"secretRef": {"name": "jobs-db"}}), now=NOW)
    assert ("Deployment", "jobs", "email") in kube.objects


def test_a_worker_role_fixed_or_granted_more_is_seen_without_a_restart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("corral.controller.reconcile.time.monotonic", lambda: clock[0])
    reconciler, kube, queue = _setup()
    queue.role_rights["corral_worker_1"] = ["superuser"]
    assert _reconcile(reconciler, _pool(), now=NOW).status["phase"] == "Degraded"
    queue.role_rights["corral_worker_1"] = []  # ALTER ROLE ... NOSUPERUSER
    clock[0] += reconcile.WORKER_URL_RECHECK_S - 1
    _reconcile(reconciler, _pool(), now=NOW)
    assert ("Deployment", "jobs", "email") not in kube.objects  # the check still holds
    clock[0] += 2
    outcome = _reconcile(reconciler, _pool(), now=NOW)
    assert ("Deployment", "jobs", "email") in kube.objects
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert "database-url" in secret["data"] and outcome.status["phase"] != "Degraded"
    # Granted more again: the next check after the interval withholds it.
    queue.role_rights["corral_worker_1"] = ["member of corral_admin"]
    clock[0] += reconcile.WORKER_URL_RECHECK_S + 1
    outcome = _reconcile(reconciler, _pool(), now=NOW)
    assert "database-url" not in kube.objects[("Secret", "jobs", "email-enrollment")]["data"]
    assert outcome.status["phase"] == "Degraded"


def test_the_operator_refuses_to_take_over_a_deployment_or_secret_it_does_not_own() -> None:
    for kind, name in (("Deployment", "email"), ("Secret", "email-enrollment")):
        reconciler, kube, _ = _setup()
        theirs = {
            "apiVersion": "v1", "kind": kind,
            "metadata": {"name": name, "namespace": "jobs", "ownerReferences": [
                {"kind": "Release", "name": "billing", "uid": "u-9", "controller": True}]},
            "spec": {"replicas": 3}, "data": {"token": "dGhlaXJz"},
        }  # fmt: skip
        kube.objects[(kind, "jobs", name)] = copy.deepcopy(theirs)
        outcome = _reconcile(reconciler, _pool(), now=NOW)
        assert kube.objects[(kind, "jobs", name)] == theirs, kind  # untouched, not scaled
        assert outcome.status["phase"] == "Degraded"
        [warning] = [e for e in outcome.events if e.type == "Warning"]
        assert warning.reason == f"Foreign{kind}"
        assert f"{kind} jobs/{name} exists and is not owned by this WorkerPool" in warning.message
        assert "Release/billing" in warning.message
        if kind == "Deployment":
            assert reconciler.autoscale("jobs", "email", now=NOW) is None


def test_autoscale_keeps_the_reconciles_blockers_neither_flapping_nor_scaling() -> None:
    reconciler, kube, queue = _setup()
    pool = _pool(autoscaling={"jobsPerWorker": 1})
    _reconcile(reconciler, pool, now=NOW)
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    secret["metadata"]["ownerReferences"] = [
        {"kind": "Release", "name": "x", "uid": "u-9", "controller": True}
    ]  # someone else's Secret now
    queue.pending = 4  # demand for two more workers
    warnings = []
    for i in range(3):
        out = _reconcile(reconciler, copy.deepcopy(pool), now=NOW + timedelta(seconds=10 * i))
        warnings += [e.reason for e in out.events if e.type == "Warning"]
        assert kube.statuses[("WorkerPool", "jobs", "email")]["phase"] == "Degraded"
        reconciler.autoscale("jobs", "email", now=NOW + timedelta(seconds=10 * i + 5))
        status = kube.statuses[("WorkerPool", "jobs", "email")]
        degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
        assert (status["phase"], degraded["reason"]) == ("Degraded", "ForeignSecret")
    assert warnings == ["ForeignSecret"]  # once, not every round
    assert [r for r, _ in kube.events if r == "ForeignSecret"] == []
    assert _replicas(kube) == 2  # held while the reconcile writes nothing
    # Handed back (the owner fixed): the next reconcile clears it, and scaling resumes.
    secret["metadata"]["ownerReferences"] = kube.objects[("Deployment", "jobs", "email")][
        "metadata"
    ]["ownerReferences"]
    _reconcile(reconciler, copy.deepcopy(pool), now=NOW + timedelta(seconds=40))
    reconciler.autoscale("jobs", "email", now=NOW + timedelta(seconds=45))
    assert kube.statuses[("WorkerPool", "jobs", "email")]["phase"] != "Degraded"
    assert _replicas(kube) == 4


def test_a_token_minted_for_a_secret_that_cannot_be_written_is_revoked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from corral.kube import KubeError

    reconciler, kube, queue = _setup()
    original = kube.apply

    def apply(body: dict[str, Any]) -> dict[str, Any]:
        if body["kind"] == "Secret":  # a ResourceQuota on secrets, a policy webhook
            raise KubeError("applying Secret: HTTP 403: exceeded quota", 403)
        return original(body)

    kube.apply = apply  # type: ignore[method-assign]
    for i in range(3):
        outcome = _reconcile(reconciler, _pool(), now=NOW + timedelta(seconds=10 * i))
        assert outcome.status["phase"] == "Degraded"
    assert [t["revoked"] for t in queue.tokens.values()] == [True, True, True]

    def unreachable(token_id: int) -> int:
        raise DatabaseUnavailable("database unreachable: connection reset")

    queue.revoke_token = unreachable  # type: ignore[method-assign]
    outcome = _reconcile(reconciler, _pool(), now=NOW + timedelta(seconds=30))
    degraded = {c["type"]: c for c in outcome.status["conditions"]}["Degraded"]
    assert degraded["reason"] == "SecretsForbidden"  # the write's error, not the revoke's
    assert "could not revoke enrollment token 4, never written" in caplog.text


def test_a_token_running_out_of_uses_is_rotated_and_the_old_one_revoked_after_the_grace() -> None:
    reconciler, kube, queue = _setup()
    pool = _pool()
    _reconcile(reconciler, pool, now=NOW)
    queue.token_uses[1] = 3  # fewer than replicas.max (4)
    outcome = _reconcile(reconciler, pool, now=NOW + timedelta(minutes=1))
    assert [e.reason for e in outcome.events if e.reason == "TokenRotated"] == ["TokenRotated"]
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert base64.b64decode(secret["data"]["token"]).decode() == "crl_et_secret2"
    annotations = secret["metadata"]["annotations"]
    assert annotations["corral.dev/previous-token-id"] == "1"
    assert queue.tokens[1]["revoked"] is False  # pods starting during the swap may hold it
    _reconcile(reconciler, pool, now=NOW + timedelta(minutes=5))
    assert queue.tokens[1]["revoked"] is False
    _reconcile(reconciler, pool, now=NOW + timedelta(minutes=12))
    assert queue.tokens[1]["revoked"] is True and queue.tokens[2]["revoked"] is False
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert "corral.dev/previous-token-id" not in secret["metadata"]["annotations"]


@pytest.mark.parametrize("why", ["revoked", "gone", "expired"])
def test_a_token_that_can_no_longer_enroll_is_replaced_at_once_saying_why(why: str) -> None:
    reconciler, kube, queue = _setup()
    pool = _pool()
    _reconcile(reconciler, pool, now=NOW)
    if why == "revoked":
        queue.tokens[1]["revoked"] = True  # `corral tokens revoke 1`
    elif why == "gone":
        del queue.tokens[1]  # purged, or the database restored from before it
    else:
        queue.token_expiry[1] = NOW + timedelta(minutes=30)  # the database's clock says so
    outcome = _reconcile(reconciler, pool, now=NOW + timedelta(hours=1))
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert secret["metadata"]["annotations"]["corral.dev/token-id"] == "2"
    assert base64.b64decode(secret["data"]["token"]).decode() == "crl_et_secret2"
    [rotated] = [e for e in outcome.events if e.reason == "TokenRotated"]
    assert {
        "revoked": "the enrollment token 1 was revoked at 2026-11-22T12:00:00Z",
        "gone": "the database has no enrollment token 1",
        "expired": "the enrollment token 1 expired at 2026-11-22T12:30:00Z",
    }[why] == rotated.message


def test_a_token_edited_by_hand_in_the_secret_is_replaced() -> None:
    reconciler, kube, queue = _setup()
    _reconcile(reconciler, _pool(), now=NOW)
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    secret["data"]["token"] = base64.b64encode(b"crl_et_garbage").decode()
    outcome = _reconcile(reconciler, _pool(), now=NOW + timedelta(minutes=1))
    secret = kube.objects[("Secret", "jobs", "email-enrollment")]
    assert base64.b64decode(secret["data"]["token"]).decode() == "crl_et_secret2"
    rotated = [e for e in outcome.events if e.reason == "TokenRotated"]
    assert rotated and "edited by hand" in rotated[0].message
    # Left alone, the next reconcile keeps the token it wrote.
    _reconcile(reconciler, _pool(), now=NOW + timedelta(minutes=2))
    assert sorted(queue.tokens) == [1, 2]


def test_a_pool_whose_queues_change_gets_a_token_for_its_new_queues() -> None:
    reconciler, _, queue = _setup()
    _reconcile(reconciler, _pool(), now=NOW)
    moved = _pool()
    moved["spec"]["queues"] = ["email", "sms"]
    _reconcile(reconciler, moved, now=NOW + timedelta(minutes=1))
    assert queue.token_queues == {1: ["email"], 2: ["email", "sms"]}


def test_the_default_region_is_created_once() -> None:
    reconciler, kube, _ = _setup(region=False)
    assert reconciler.ensure_default_region() is True
    assert reconciler.ensure_default_region() is False
    assert kube.objects[("Region", None, "default")]["spec"]["displayName"] == "Default"


def test_a_region_counts_its_pools_and_live_workers() -> None:
    reconciler, kube, queue = _setup()
    kube.objects[("WorkerPool", "jobs", "email")] = _pool()
    kube.objects[("WorkerPool", "jobs", "far")] = {**_pool(region="elsewhere"), "metadata": {
        "name": "far", "namespace": "jobs"}}  # fmt: skip
    queue.workers = [
        SimpleNamespace(region="default", state=WorkerState.ACTIVE, in_flight=1, concurrency=4,
                        last_heartbeat=datetime.now(UTC), pool="jobs/email"),
        SimpleNamespace(region="default", state=WorkerState.ACTIVE, in_flight=0, concurrency=4,
                        last_heartbeat=datetime.now(UTC) - timedelta(minutes=5), pool="jobs/email"),
    ]  # fmt: skip
    queue.pending = 9
    outcome = reconciler.reconcile_region(kube.objects[("Region", None, "default")])
    assert outcome.status is not None
    assert (outcome.status["pools"], outcome.status["workers"]) == (1, 1)
    assert outcome.status["queueDepth"] == 9
    assert outcome.status["phase"] == "Ready"


def test_a_region_whose_pool_wants_workers_and_hears_none_reads_no_workers_until_one_beats() -> (
    None
):
    reconciler, kube, queue = _setup()
    kube.objects[("WorkerPool", "jobs", "email")] = {**_pool(), "status": {"desiredReplicas": 2}}
    queue.workers = [  # silent for five minutes: not live
        SimpleNamespace(region="default", state=WorkerState.ACTIVE, in_flight=0, concurrency=4,
                        last_heartbeat=datetime.now(UTC) - timedelta(minutes=5), pool="jobs/email"),
    ]  # fmt: skip
    region = kube.objects[("Region", None, "default")]
    status = reconciler.reconcile_region(region).status or {}
    (ready,) = status["conditions"]
    assert (status["phase"], ready["status"], ready["reason"]) == (
        "NoWorkers",
        "False",
        "NoWorkers",
    )
    assert "jobs/email (wants 2)" in ready["message"]
    queue.workers[0].last_heartbeat = datetime.now(UTC)
    assert (reconciler.reconcile_region(region).status or {})["phase"] == "Ready"


def test_a_region_reads_unknown_while_the_database_is_down_and_ready_once_it_answers() -> None:
    reconciler, kube, queue = _setup()
    kube.objects[("WorkerPool", "jobs", "email")] = _pool()
    queue.workers = [
        SimpleNamespace(region="default", state=WorkerState.ACTIVE, in_flight=1, concurrency=4,
                        last_heartbeat=datetime.now(UTC), pool="jobs/email"),
    ]  # fmt: skip
    region = kube.objects[("Region", None, "default")]
    region["status"] = reconciler.reconcile_region(region, now=NOW).status
    assert region["status"]["phase"] == "Ready"
    queue.up = False
    later = NOW + timedelta(hours=6)
    status = reconciler.reconcile_region(region, now=later).status or {}
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"]) == ("Unknown", "DatabaseUnreachable")
    assert "connection refused" in ready["message"] and "last read" in ready["message"]
    assert ready["lastTransitionTime"] == later.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (status["workers"], status["phase"]) == (1, "Ready")  # the last figures, kept
    region["status"] = status
    queue.up = True
    (ready,) = (reconciler.reconcile_region(region, now=later).status or {})["conditions"]
    assert (ready["status"], ready["reason"]) == ("True", "WorkersHeartbeating")


def test_a_region_resync_passes_over_a_pool_that_does_not_parse_and_restores_the_default() -> None:
    reconciler, kube, _ = _setup()
    kube.objects[("WorkerPool", "jobs", "email")] = _pool()
    broken = {**_pool(), "metadata": {"name": "newer", "namespace": "jobs"}}
    broken["spec"] = {**broken["spec"], "fieldOfANewerRelease": True}
    kube.objects[("WorkerPool", "jobs", "newer")] = broken
    del kube.objects[("Region", None, "default")]  # deleted by hand
    kube.objects[("Region", None, "eu")] = {
        "apiVersion": "corral.dev/v1alpha1", "kind": "Region", "metadata": {"name": "eu"},
        "spec": {},
    }  # fmt: skip
    assert reconciler.resync_regions() == 2
    assert ("Region", None, "default") in kube.objects
    assert kube.statuses[("Region", None, "default")]["pools"] == 1  # "newer" left out
    assert kube.statuses[("Region", None, "eu")]["pools"] == 0


@pytest.mark.parametrize("paused", [True, False])
def test_a_paused_pool_is_scaled_to_zero(paused: bool) -> None:
    reconciler, kube, _ = _setup()
    _reconcile(reconciler, _pool(paused=paused), now=NOW)
    expected = 0 if paused else 2
    assert kube.objects[("Deployment", "jobs", "email")]["spec"]["replicas"] == expected


def test_events_come_from_what_the_apply_changed_even_with_a_stale_status() -> None:
    reconciler, _, _ = _setup()
    first = _reconcile(reconciler, _pool(), now=NOW)
    stale = _reconcile(reconciler, _pool(), now=NOW)  # status not yet seen
    changed = _reconcile(reconciler, _pool(concurrency=3), now=NOW)
    scaled = _reconcile(
        reconciler,
        _pool(concurrency=3, autoscaling={"enabled": False}, replicas={"min": 3, "max": 4}),
        now=NOW,
    )
    assert [e.reason for e in first.events] == ["Created"]
    assert stale.events == []
    assert [e.reason for e in changed.events] == ["SpecRolledOut"]
    assert [e.reason for e in scaled.events] == ["Scaled"]
    assert scaled.events[0].message == "scaled 2 -> 3: autoscaling is off: replicas.min"


# ---------------------------------------------------------------- autoscaling


def _live_worker(
    worker_id: int, name: str, in_flight: int = 0, enrolled_at: datetime = NOW - timedelta(hours=1)
) -> Any:
    return SimpleNamespace(
        id=worker_id, name=name, pool="jobs/email", region="default", state=WorkerState.ACTIVE,
        in_flight=in_flight, last_heartbeat=NOW, drain_requested_by=None, concurrency=4,
        enrolled_at=enrolled_at,
    )  # fmt: skip


def test_a_worker_that_claimed_before_its_first_heartbeat_counts_as_live_and_busy() -> None:
    fresh = SimpleNamespace(
        id=1, name="email-a", state=WorkerState.ACTIVE, in_flight=2, last_heartbeat=None,
        enrolled_at=NOW - timedelta(seconds=2), concurrency=4,
    )  # fmt: skip
    silent = SimpleNamespace(
        id=2, name="email-b", state=WorkerState.ACTIVE, in_flight=1, last_heartbeat=None,
        enrolled_at=NOW - timedelta(minutes=5), concurrency=4,
    )  # fmt: skip
    workers = [cast(Worker, fresh), cast(Worker, silent)]  # the fields _live reads
    snapshot = PoolSnapshot(Backlog(1, 1, capped=False), workers, None)
    demand = snapshot.demand(NOW, concurrency=4)
    assert (demand.waiting, demand.running, demand.busy_workers) == (1, 2, 1)


def _pods(kube: FakeKube, *names: str) -> None:
    for name in names:
        kube.objects[("Pod", "jobs", name)] = {
            "metadata": {"name": name, "namespace": "jobs", "creationTimestamp": "2026-11-30T11:00:00Z"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        }  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _autoscaled(**spec: Any) -> tuple[Reconciler, FakeKube, FakeQueue, Clock]:
    reconciler, kube, queue = _setup()
    clock = Clock()
    reconciler._clock = clock
    body = _pool(**{"replicas": {"min": 0, "max": 10}, **spec})
    _reconcile(reconciler, body, now=NOW)
    return reconciler, kube, queue, clock


def _replicas(kube: FakeKube) -> int:
    return int(kube.objects[("Deployment", "jobs", "email")]["spec"]["replicas"])


def test_a_burst_scales_a_pool_at_zero_up_at_once_with_an_event_saying_why() -> None:
    reconciler, kube, queue, _ = _autoscaled(autoscaling={"jobsPerWorker": 10})
    assert _replicas(kube) == 0
    queue.pending = 95
    outcome = reconciler.autoscale("jobs", "email", now=NOW)
    assert outcome is not None and _replicas(kube) == 10
    assert kube.events == [("Scaled", "scaled 0 -> 10: 95 waiting + 0 running, 10 per worker")]
    status = kube.statuses[("WorkerPool", "jobs", "email")]
    assert (status["desiredReplicas"], status["queueDepth"]) == (10, 95)
    limited = {c["type"]: c for c in status["conditions"]}["ScalingLimited"]
    assert (limited["status"], limited["reason"]) == ("False", "DesiredWithinRange")


@pytest.mark.parametrize(("spec", "lead"), [({}, 5.0), ({"activationLeadSeconds": 30}, 30.0)])
def test_the_backlog_counts_jobs_due_within_the_pools_activation_lead(
    spec: dict[str, Any], lead: float
) -> None:
    reconciler, _, queue, _ = _autoscaled(autoscaling=spec)
    queue.backlog_leads.clear()
    reconciler.autoscale("jobs", "email", now=NOW)
    assert queue.backlog_leads == [lead]


def test_demand_beyond_max_shows_a_scaling_limited_condition() -> None:
    reconciler, kube, queue, _ = _autoscaled(autoscaling={"jobsPerWorker": 10})
    queue.pending = 500
    reconciler.autoscale("jobs", "email", now=NOW)
    status = kube.statuses[("WorkerPool", "jobs", "email")]
    limited = {c["type"]: c for c in status["conditions"]}["ScalingLimited"]
    assert (_replicas(kube), limited["status"], limited["reason"]) == (10, "True", "AtMaxReplicas")
    assert "demand asks for 50 worker(s)" in limited["message"]


def test_scaling_down_waits_for_the_delay_then_drains_idle_workers_before_lowering_replicas() -> (
    None
):
    reconciler, kube, queue, clock = _autoscaled(
        autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 60}
    )
    queue.pending = 3
    reconciler.autoscale("jobs", "email", now=NOW)
    assert _replicas(kube) == 3
    _pods(kube, "p1", "p2", "p3")
    queue.pending = 0
    queue.workers = [
        _live_worker(1, "p1", in_flight=1),
        _live_worker(2, "p2"),
        _live_worker(3, "p3"),
    ]
    clock.now += 30
    reconciler.autoscale("jobs", "email", now=NOW)
    assert _replicas(kube) == 3  # within the delay: nothing happens
    assert all(w.state == WorkerState.ACTIVE for w in queue.workers)

    clock.now += 31
    reconciler.autoscale("jobs", "email", now=NOW)
    # The busy worker stays; the two idle ones drain; replicas wait for them.
    assert _replicas(kube) == 3
    assert [w.state for w in queue.workers] == [
        WorkerState.ACTIVE, WorkerState.DRAINING, WorkerState.DRAINING,
    ]  # fmt: skip
    status = kube.statuses[("WorkerPool", "jobs", "email")]
    assert status["scaleDown"]["pods"] == ["p2", "p3"]
    assert (status["desiredReplicas"], status["phase"]) == (1, "Draining")

    for worker in queue.workers[1:]:
        worker.state = WorkerState.DRAINED
    reconciler.autoscale("jobs", "email", now=NOW + timedelta(seconds=2))
    assert _replicas(kube) == 1
    cost = "controller.kubernetes.io/pod-deletion-cost"
    marked = {n for n in ("p1", "p2", "p3")
              if cost in kube.objects[("Pod", "jobs", n)]["metadata"].get("annotations", {})}  # fmt: skip
    assert marked == {"p2", "p3"}
    assert "scaleDown" not in kube.statuses[("WorkerPool", "jobs", "email")]
    assert [r for r, _ in kube.events][-2:] == ["Draining", "Scaled"]


def test_an_evaluation_before_the_replicaset_acts_on_a_scale_down_keeps_its_pods_drained() -> None:
    reconciler, kube, queue, _ = _autoscaled(
        autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 0}
    )
    queue.pending = 3
    reconciler.autoscale("jobs", "email", now=NOW)
    _pods(kube, "p1", "p2", "p3")
    queue.pending = 0
    queue.workers = [_live_worker(1, "p1", 1), _live_worker(2, "p2"), _live_worker(3, "p3")]
    reconciler.autoscale("jobs", "email", now=NOW)
    for worker in queue.workers[1:]:
        worker.state = WorkerState.DRAINED
    reconciler.autoscale("jobs", "email", now=NOW + timedelta(seconds=1))
    assert _replicas(kube) == 1
    # A NOTIFY 0.2 s later, before the ReplicaSet marked p2 and p3 deleted.
    outcome = reconciler.autoscale("jobs", "email", now=NOW + timedelta(seconds=1.2))
    assert outcome is not None and not outcome.acted
    assert [w.state for w in queue.workers] == [
        WorkerState.ACTIVE, WorkerState.DRAINED, WorkerState.DRAINED,
    ]  # fmt: skip
    cost = "controller.kubernetes.io/pod-deletion-cost"
    assert all(
        kube.objects[("Pod", "jobs", n)]["metadata"]["annotations"][cost] == "-2147483648"
        for n in ("p2", "p3")
    )


def test_an_evicted_pod_is_no_live_pod_and_the_idle_worker_drains_before_replicas_drop() -> None:
    reconciler, kube, queue, _ = _autoscaled(
        autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 0}
    )
    queue.pending = 3
    reconciler.autoscale("jobs", "email", now=NOW)
    _pods(kube, "p0", "p1", "p2", "p3")
    # Evicted, and replaced by the ReplicaSet: Failed, not deleted.
    kube.objects[("Pod", "jobs", "p0")]["status"] = {"phase": "Failed", "reason": "Evicted"}
    queue.pending = 0
    queue.workers = [_live_worker(1, "p1", 1), _live_worker(2, "p2", 1), _live_worker(3, "p3")]
    reconciler.autoscale("jobs", "email", now=NOW)
    assert _replicas(kube) == 3  # 3 -> 2 waits for the idle p3 to drain
    assert [w.state for w in queue.workers] == [
        WorkerState.ACTIVE, WorkerState.ACTIVE, WorkerState.DRAINING,
    ]  # fmt: skip
    assert kube.statuses[("WorkerPool", "jobs", "email")]["scaleDown"]["pods"] == ["p3"]
    cost = "controller.kubernetes.io/pod-deletion-cost"
    assert not any(cost in body["metadata"].get("annotations", {}) for body in (
        kube.objects[("Pod", "jobs", n)] for n in ("p0", "p1", "p2", "p3")))  # fmt: skip


def test_an_unreadable_queue_holds_replicas_and_degrades_the_pool_with_an_event() -> None:
    reconciler, kube, queue, _ = _autoscaled()
    queue.pending = 40
    reconciler.autoscale("jobs", "email", now=NOW)
    scaled = _replicas(kube)
    queue.up = False
    reconciler.autoscale("jobs", "email", now=NOW)
    assert _replicas(kube) == scaled
    status = kube.statuses[("WorkerPool", "jobs", "email")]
    assert (status["phase"], status["desiredReplicas"]) == ("Degraded", scaled)
    assert kube.events[-1][0] == "DatabaseUnreachable"
    queue.up = True
    reconciler.autoscale("jobs", "email", now=NOW)
    degraded = {c["type"]: c for c in kube.statuses[("WorkerPool", "jobs", "email")]["conditions"]}
    assert degraded["Degraded"]["status"] == "False"


def test_a_new_leader_finishes_the_drain_recorded_in_status_instead_of_starting_another() -> None:
    reconciler, kube, queue, clock = _autoscaled(
        autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 0}
    )
    queue.pending = 3
    reconciler.autoscale("jobs", "email", now=NOW)
    _pods(kube, "p1", "p2", "p3")
    queue.pending = 0
    queue.workers = [_live_worker(1, "p1", 1), _live_worker(2, "p2"), _live_worker(3, "p3")]
    reconciler.autoscale("jobs", "email", now=NOW)
    drained = {w.id for w in queue.workers if w.state == WorkerState.DRAINING}
    assert drained == {2, 3}

    # The operator dies; another one starts with nothing in memory.
    successor = Reconciler(reconciler.kube, reconciler.queue, reconciler.config, clock=clock)
    successor.autoscale("jobs", "email", now=NOW + timedelta(seconds=1))
    assert _replicas(kube) == 3  # still waiting for the same two
    assert {w.id for w in queue.workers if w.state == WorkerState.DRAINING} == {2, 3}
    for worker in queue.workers[1:]:
        worker.state = WorkerState.DRAINED
    successor.autoscale("jobs", "email", now=NOW + timedelta(seconds=2))
    assert _replicas(kube) == 1
    assert queue.workers[0].state == WorkerState.ACTIVE


def test_work_arriving_during_a_drain_sends_the_draining_workers_back() -> None:
    reconciler, kube, queue, _ = _autoscaled(
        autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 0}
    )
    queue.pending = 2
    reconciler.autoscale("jobs", "email", now=NOW)
    _pods(kube, "p1", "p2")
    queue.pending = 0
    queue.workers = [_live_worker(1, "p1"), _live_worker(2, "p2")]
    reconciler.autoscale("jobs", "email", now=NOW)
    assert {w.state for w in queue.workers} == {WorkerState.DRAINING}
    queue.pending = 2
    reconciler.autoscale("jobs", "email", now=NOW)
    assert {w.state for w in queue.workers} == {WorkerState.ACTIVE}
    assert _replicas(kube) == 2
    assert kube.events[-1][0] == "DrainCancelled"


def test_an_evaluation_reads_the_pool_only_once_the_one_before_it_is_done() -> None:
    # A drain begun (or cancelled) by the evaluation holding the pool's lock
    # lives in the status it writes last; an evaluation that read the pool
    # before taking the lock would act on the status from before it.
    reconciler, kube, _queue, _ = _autoscaled(autoscaling={"jobsPerWorker": 10})
    reads: list[float] = []
    original = kube.get_workerpool

    def get_workerpool(namespace: str, name: str) -> dict[str, Any] | None:
        reads.append(time.monotonic())
        return original(namespace, name)

    kube.get_workerpool = get_workerpool  # type: ignore[method-assign]
    lock = reconciler._lock("pool/jobs/email")
    with lock:  # another evaluation of this pool in progress
        waiting = threading.Thread(target=reconciler.autoscale, args=("jobs", "email"))
        waiting.start()
        time.sleep(0.3)
        held_until = time.monotonic()
    waiting.join(5)
    assert reads and min(reads) >= held_until


def test_the_registry_rows_of_workers_whose_pods_are_gone_are_removed_and_no_younger_one() -> None:
    # The reviewer's stolen credential: after a scale-down the pod is gone,
    # but its row (drained, or kept beating by whoever copied the credential)
    # would let the copy claim the pool's jobs. The operator removes it.
    reconciler, kube, queue, _ = _autoscaled(autoscaling={"jobsPerWorker": 1})
    queue.pending = 2
    reconciler.autoscale("jobs", "email", now=NOW)
    assert _replicas(kube) == 2
    _pods(kube, "p1", "p2")
    queue.pending = 0
    drained = _live_worker(3, "p0")
    drained.state, drained.drain_requested_by = WorkerState.DRAINED, "self"
    queue.workers = [
        _live_worker(1, "p1", in_flight=1),
        _live_worker(2, "p2", in_flight=1),
        drained,  # scaled down; its pod is gone
        _live_worker(4, "p9"),  # kept beating with a copied credential; its pod is gone
        _live_worker(5, "p3", enrolled_at=NOW - timedelta(seconds=30)),  # a pod still starting
    ]
    kube.events.clear()
    reconciler.autoscale("jobs", "email", now=NOW)
    assert [(w.id, w.state) for w in queue.workers] == [
        (1, WorkerState.ACTIVE), (2, WorkerState.ACTIVE), (3, WorkerState.REMOVED),
        (4, WorkerState.REMOVED), (5, WorkerState.ACTIVE),
    ]  # fmt: skip
    gone = "removed worker(s) whose pod is gone: 3 (p0, drained), 4 (p9, active)"
    assert ("WorkersRemoved", gone) in kube.events
    assert _replicas(kube) == 2  # the two busy workers stay


def test_no_row_is_removed_while_its_pod_terminates_or_when_the_rows_match_the_pods() -> None:
    reconciler, kube, queue, _ = _autoscaled(autoscaling={"jobsPerWorker": 1})
    queue.pending = 2
    reconciler.autoscale("jobs", "email", now=NOW)
    _pods(kube, "p1", "p2")
    kube.objects[("Pod", "jobs", "p2")]["metadata"]["deletionTimestamp"] = "2026-11-22T11:59:00Z"
    queue.workers = [_live_worker(1, "p1", in_flight=1), _live_worker(2, "p2", in_flight=1)]
    reconciler.autoscale("jobs", "email", now=NOW)
    assert all(w.state == WorkerState.ACTIVE for w in queue.workers)

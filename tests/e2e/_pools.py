"""Helpers for e2e tests of WorkerPools with running workers: build and apply
pools, read their pods, workers and jobs, and watch which pods Kubernetes
deleted when (the evidence that a scale-down never removed a busy worker).

Plain functions and one small class; the fixtures that start the operator
live in the test modules.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.queue import Job, JobState, Queue, Worker
from corral_local.localcluster import Cluster
from tests.e2e._corral import apply as apply  # re-exported: pool tests call p.apply
from tests.e2e._corral import eventually, get_json

API = "corral.dev/v1alpha1"
# The names the pool tests read as; one implementation each, in _corral.
get = get_json
wait_until = eventually


def pool(name: str, queues: list[str], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"queues": queues, **spec},
    }


def status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = (get(cluster, "workerpool", name, "-n", namespace) or {}).get(
        "status"
    ) or {}
    return found


def replicas(cluster: Cluster, namespace: str, name: str) -> int | None:
    deployment = get(cluster, "deployment", name, "-n", namespace)
    return None if deployment is None else int(deployment["spec"].get("replicas") or 0)


def pods(cluster: Cluster, namespace: str, pool_name: str) -> list[dict[str, Any]]:
    found = get(cluster, "pods", "-n", namespace, "-l", f"corral.dev/pool={pool_name}") or {}
    items: list[dict[str, Any]] = found.get("items", [])
    return items


def is_ready(pod: dict[str, Any]) -> bool:
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def events(cluster: Cluster, namespace: str, name: str) -> list[tuple[str, str]]:
    """(reason, message) of the Events about a WorkerPool, oldest first."""
    found = get(
        cluster, "events", "-n", namespace,
        "--field-selector", f"involvedObject.kind=WorkerPool,involvedObject.name={name}",
    ) or {}  # fmt: skip
    items = sorted(
        found.get("items", []),
        key=lambda e: (e.get("lastTimestamp") or e.get("eventTime") or "", e["metadata"]["name"]),
    )
    return [(e.get("reason", ""), e.get("message", "")) for e in items]


def workers(database_url: str, pool_key: str, *, removed: bool = False) -> list[Worker]:
    with Queue.connect(database_url) as queue:
        return [w for w in queue.list_workers(include_removed=removed) if w.pool == pool_key]


def jobs(database_url: str, ids: Iterable[int]) -> list[Job]:
    with Queue.connect(database_url) as queue:
        return [queue.get_job(i) for i in ids]


def all_finished(database_url: str, ids: Iterable[int]) -> bool:
    return all(j.state.finished for j in jobs(database_url, ids))


@dataclass
class PodWatch:
    """Polls a pool's pods in the background and keeps, per pod, when it was
    first seen terminating (or gone). A test compares those moments with the
    jobs each pod's worker ran: a pod deleted while its worker held a job is
    a busy pod deleted, whatever then happened to the job."""

    cluster: Cluster
    namespace: str
    pool_name: str
    every_s: float = 0.5
    deleted_at: dict[str, datetime] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    failed_listings: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PodWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            # A failed listing (kubectl timing out on a loaded machine) says
            # nothing: read as "no pods", it would date every pod's deletion
            # now, and a busy pod deleted later would go unnoticed.
            try:
                listing = get(
                    self.cluster, "pods", "-n", self.namespace,
                    "-l", f"corral.dev/pool={self.pool_name}",
                )  # fmt: skip
            except Exception:
                listing = None
            if listing is None:
                self.failed_listings += 1
                self._stop.wait(self.every_s)
                continue
            current: list[dict[str, Any]] = listing.get("items", [])
            now = datetime.now(UTC)
            names = set()
            for pod in current:
                name = pod["metadata"]["name"]
                names.add(name)
                self.seen.add(name)
                stamp = pod["metadata"].get("deletionTimestamp")
                if stamp and name not in self.deleted_at:
                    # The API server's own time of the deletion request.
                    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
                    grace = pod["metadata"].get("deletionGracePeriodSeconds") or 0
                    self.deleted_at[name] = when - timedelta(seconds=float(grace))
            for name in self.seen - names:
                self.deleted_at.setdefault(name, now)
            self._stop.wait(self.every_s)

    def busy_pods_deleted(
        self, finished: list[Job], names: dict[int, str], slack_s: float = 1.0
    ) -> list[tuple[str, int]]:
        """(pod, job id) for every job whose worker's pod was deleted while the
        job ran. `names` maps worker ids to their pod names."""
        busy = []
        for job in finished:
            pod_name = names.get(job.worker_id or -1)
            deleted = self.deleted_at.get(pod_name or "")
            if pod_name is None or deleted is None or job.started_at is None:
                continue
            ended = job.finished_at or datetime.now(UTC)
            if (
                job.started_at.timestamp() + slack_s
                < deleted.timestamp()
                < (ended.timestamp() - slack_s)
            ):
                busy.append((pod_name, job.id))
        return busy


DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
LOWEST_DELETION_COST = str(-(2**31))  # what the operator marks a pod to remove with


@dataclass
class CostWatch:
    """`kubectl get pods --watch` on a pool's pods, keeping every
    pod-deletion-cost each pod carried. A watch sees each change of a pod,
    where polling could miss one marked and removed between two looks; a
    watch the server ends is opened again."""

    cluster: Cluster
    namespace: str
    pool_name: str
    costs: dict[str, set[str]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _proc: subprocess.Popen[str] | None = None
    _thread: threading.Thread | None = None

    def __enter__(self) -> CostWatch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._proc = subprocess.Popen(
                [self.cluster.kubectl_bin, "--kubeconfig", str(self.cluster.kubeconfig),
                 "get", "pods", "-n", self.namespace, "-l", f"corral.dev/pool={self.pool_name}",
                 "--watch", "-o", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            assert self._proc.stdout is not None
            # One indented JSON object per change, closed by a "}" at column 0.
            lines: list[str] = []
            for line in self._proc.stdout:
                lines.append(line)
                if line.rstrip("\n") == "}":
                    self._saw(json.loads("".join(lines)))
                    lines = []
            self._proc.wait()
            self._stop.wait(0.2)

    def _saw(self, body: dict[str, Any]) -> None:
        for pod in body.get("items", [body]):
            meta = pod.get("metadata") or {}
            cost = (meta.get("annotations") or {}).get(DELETION_COST, "")
            self.costs.setdefault(str(meta.get("name")), set()).add(cost)

    def unmarked(self, pods: Iterable[str]) -> list[str]:
        """Those of `pods` never seen carrying the lowest deletion cost."""
        return sorted(p for p in pods if LOWEST_DELETION_COST not in self.costs.get(p, set()))


def finished_states(database_url: str, ids: list[int]) -> dict[JobState, int]:
    counts: dict[JobState, int] = {}
    for job in jobs(database_url, ids):
        counts[job.state] = counts.get(job.state, 0) + 1
    return counts

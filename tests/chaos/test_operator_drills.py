"""Chaos drill against the Kubernetes API under two operator replicas (issue
15, item 8), on a control plane of the drill's own (it freezes the API
server, which no shared or existing cluster would allow).

The kube-apiserver is stopped (SIGSTOP) for 30 s while two `corral operator`
replicas share the leader Lease and a fleet of real workers runs jobs. The
audit: the leader steps down within its 10 s renew deadline and exits
(Kubernetes would restart it as a standby), no replica leads while the API is
away, the standby takes over once it is back, the pool's replicas are held
throughout, the new leader reconciles, and the workers, which need only the
database, go on running jobs through the outage and lose none (the database
drills' audit).
"""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral_local.localcluster import LocalCluster
from tests.chaos.conftest import Fleet
from tests.e2e._corral import (
    OperatorProcess,
    apply,
    eventually,
    force_delete_pools,
    get_json,
    install_crds,
    pool_manifest,
    running_cluster,
)

pytestmark = pytest.mark.slow

OUTAGE_S = 30.0
# The fleet's jobs outlast the outage: 3 workers x 8 slots at 0.2 s a job
# run about 120 a second, so 6,000 take about 50 s.
FLEET_JOBS, JOB_S = 6000, 0.2


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster"), "the drill's control plane") as local:
        install_crds(local)
        yield local


class Replicas:
    """Operator replicas restarted when they exit, as their Deployment would
    restart them (a replica that stepped down on a loaded machine comes back
    as a standby); `restarts` counts how often."""

    def __init__(self, cluster: LocalCluster, url: str, tmp_path: Path, *args: str) -> None:
        self.cluster, self.url, self.tmp_path, self.args = cluster, url, tmp_path, args
        self.by_identity: dict[str, OperatorProcess] = {}
        self.restarts = 0
        self._marked: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def start(self, identity: str) -> OperatorProcess:
        process = OperatorProcess(
            self.cluster, self.url, self.tmp_path / f"{identity}.log", *self.args,
            "--identity", identity,
        )  # fmt: skip
        self.by_identity[identity] = process
        if not self._thread.is_alive():
            self._thread.start()
        return process

    def log(self, identity: str) -> str:
        return (self.tmp_path / f"{identity}.log").read_text(errors="replace")[-6000:]

    def _led(self, identity: str) -> int:
        text = (self.tmp_path / f"{identity}.log").read_text(errors="replace")
        return text.count(f"leading as {identity}")

    def mark(self) -> None:
        """Remember how often each replica has led so far (see `new_leader`)."""
        self._marked = {identity: self._led(identity) for identity in self.by_identity}

    def new_leader(self) -> str | None:
        """A replica that took the lead since `mark()`, if any."""
        for identity in self.by_identity:
            if self._led(identity) > self._marked.get(identity, 0):
                return identity
        return None

    def _supervise(self) -> None:
        while not self._stop.wait(1.0):
            for identity, process in list(self.by_identity.items()):
                if process.proc.poll() is not None:
                    process.stop()
                    self.restarts += 1
                    self.start(identity)

    def stop(self) -> None:
        self._stop.set()
        for process in self.by_identity.values():
            process.stop()


def _replicas(cluster: LocalCluster, namespace: str) -> Any:
    found = get_json(cluster, "deployment", "held", "-n", namespace) or {}
    return found.get("spec", {}).get("replicas")


def _drill_namespace(cluster: LocalCluster, drill: str) -> tuple[str, str, tuple[str, ...]]:
    """A new namespace for one drill, the name of its operator replicas'
    leader Lease (corral-chaos-`drill`, in it), and the arguments that keep
    the replicas to it: its pools, its region and that Lease."""
    namespace = f"chaos-{drill}-{uuid.uuid4().hex[:6]}"
    lease = f"corral-chaos-{drill}"
    cluster.kubectl("create", "namespace", namespace)
    return namespace, lease, (
        "--namespace", namespace, "--default-region", "chaos", "--http-port", "-1",
        "--leader-lease", lease, "--operator-namespace", namespace,
    )  # fmt: skip


def test_the_api_server_stopped_for_30_s_under_two_operator_replicas(
    own_cluster: LocalCluster, url: str, tmp_path: Path, fleet: Fleet
) -> None:
    cluster = own_cluster
    namespace, lease, common = _drill_namespace(cluster, "api")
    first = OperatorProcess(cluster, url, tmp_path / "a.log", *common, "--identity", "replica-a")
    second: OperatorProcess | None = None
    try:
        eventually(lambda: "leading as replica-a" in first.log(), "replica-a to lead", 60)
        second = OperatorProcess(
            cluster, url, tmp_path / "b.log", *common, "--identity", "replica-b"
        )
        b = second
        eventually(lambda: "standing by" in b.log(), "replica-b to stand by", 60)
        apply(cluster, pool_manifest("held", ["held"], 2, 2), namespace)
        eventually(lambda: _replicas(cluster, namespace) == 2, "the pool's 2 replicas", 60)
        fleet.enqueue(FLEET_JOBS, sleep_s=JOB_S)
        fleet.start(3, "--concurrency", "8")
        eventually(lambda: fleet.done() >= 100, "100 of the fleet's jobs done", 60)

        held = fleet.running()
        done_before = fleet.done()
        assert held > 0 and done_before < FLEET_JOBS, f"no job held ({done_before} done)"
        cluster.send_signal("kube-apiserver", signal.SIGSTOP)
        frozen = time.monotonic()
        try:
            exited = eventually(
                lambda: first.proc.poll() is not None and time.monotonic() - frozen,
                "the leader to step down while the API is away",
                OUTAGE_S - 5,
            )
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - frozen)))
            led_during = "leading as replica-b" in b.log()
            done_during = fleet.done() - done_before
        finally:
            cluster.send_signal("kube-apiserver", signal.SIGCONT)
        back = time.monotonic()
        eventually(lambda: "leading as replica-b" in b.log(), "replica-b to take over", 90)
        takeover_s = time.monotonic() - back
        replicas_held = _replicas(cluster, namespace)
        holder = (get_json(cluster, "lease", lease, "-n", namespace) or {})["spec"][
            "holderIdentity"
        ]
        apply(cluster, pool_manifest("held", ["held"], 3, 3), namespace)
        eventually(lambda: _replicas(cluster, namespace) == 3, "the new leader to reconcile", 60)
        print(
            f"\nchaos api-outage: injected SIGSTOP of kube-apiserver for {OUTAGE_S:g} s under "
            f"2 operator replicas; audit: leader_stepped_down_after_s={exited:.1f} "
            f"leader_exit_code={first.proc.returncode} leaders_during_outage={int(led_during)} "
            f"takeover_after_s={takeover_s:.1f} replicas_held={replicas_held} "
            f"lease_holder={holder} reconciles_after=yes jobs_held_at_outage={held} "
            f"jobs_done_during_outage={done_during}",
            flush=True,
        )
        why = f"--- replica-a ---\n{first.log()}\n--- replica-b ---\n{b.log()}"
        assert "leadership lost" in first.log(), why
        assert first.proc.returncode != 0, why  # it exits, to come back as a standby
        assert not led_during, why  # nobody took the Lease while the API was away
        assert replicas_held == 2 and holder == "replica-b", why
        # The workers need only the database: at about 120 jobs a second,
        # 30 s without the API should see thousands done, not a stall.
        assert done_during >= 1000, (done_during, fleet.output()[-3000:])
        fleet.audit(
            "api-outage-jobs",
            f"SIGSTOP of kube-apiserver for {OUTAGE_S:g} s after {done_before} of "
            f"{FLEET_JOBS} jobs, {held} held",
        )
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        force_delete_pools(cluster, namespace)


def test_the_leader_killed_with_kill_9_in_the_middle_of_reconciles(
    own_cluster: LocalCluster, url: str, tmp_path: Path
) -> None:
    cluster = own_cluster
    namespace, lease, common = _drill_namespace(cluster, "kill")
    replicas = Replicas(cluster, url, tmp_path, *common)
    pools = [f"p{i:02d}" for i in range(12)]
    try:
        first = replicas.start("replica-a")
        eventually(lambda: "leading as replica-a" in first.log(), "replica-a to lead", 60)
        replicas.start("replica-b")
        eventually(lambda: "standing by" in replicas.log("replica-b"), "replica-b to stand by", 60)
        body = "\n---\n".join(
            yaml.safe_dump(pool_manifest(name, [name], 1 + i % 3, 1 + i % 3))
            for i, name in enumerate(pools)
        )
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=body)

        def deployments() -> dict[str, int]:
            found = get_json(cluster, "deployments", "-n", namespace) or {"items": []}
            return {d["metadata"]["name"]: d["spec"]["replicas"] for d in found["items"]}

        eventually(lambda: len(deployments()) >= 3, "the leader to be reconciling", 60)
        done_before = len(deployments())
        restarts_before = replicas.restarts
        replicas.mark()
        first.proc.kill()  # kill -9 mid-reconcile: no step-down, the Lease must run out
        killed = time.monotonic()
        # Either replica may lead next: replica-b once the Lease runs out, or
        # replica-a restarted in place (its Deployment's restart keeps the pod
        # name, so the Lease is still its own).
        new_leader = eventually(replicas.new_leader, "a new leader", 60)
        takeover_s = time.monotonic() - killed
        want = {name: 1 + i % 3 for i, name in enumerate(pools)}
        eventually(lambda: deployments() == want, "every pool's Deployment at its replicas", 120)
        secrets = get_json(cluster, "secrets", "-n", namespace) or {"items": []}
        owned = sorted(
            s["metadata"]["name"]
            for s in secrets["items"]
            if s["metadata"]["name"].endswith("-enrollment")
        )
        lease_body = get_json(cluster, "lease", lease, "-n", namespace) or {}
        holder = lease_body.get("spec", {}).get("holderIdentity")
        print(
            f"\nchaos leader-kill: injected kill -9 of the leader after {done_before} of "
            f"{len(pools)} Deployments; audit: takeover_after_s={takeover_s:.1f} "
            f"deployments={len(deployments())} replicas_as_specified=yes "
            f"enrollment_secrets={len(owned)} new_leader={new_leader} lease_holder={holder} "
            f"replica_restarts={replicas.restarts - restarts_before}",
            flush=True,
        )
        why = f"--- a ---\n{replicas.log('replica-a')}\n--- b ---\n{replicas.log('replica-b')}"
        assert owned == [f"{name}-enrollment" for name in pools], (owned, why)
        assert holder in {"replica-a", "replica-b"}, why
    finally:
        replicas.stop()
        force_delete_pools(cluster, namespace)

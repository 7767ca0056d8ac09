"""Chaos drill against the Kubernetes API under two operator replicas (issue
15, item 8), on a control plane of the drill's own (it freezes the API
server, which no shared or existing cluster would allow).

The kube-apiserver is stopped (SIGSTOP) for 30 s while two `corral operator`
replicas share the leader Lease. The audit: the leader steps down within its
10 s renew deadline and exits (Kubernetes would restart it as a standby), no
replica leads while the API is away, the standby takes over once it is back,
the pool's replicas are held throughout, and the new leader reconciles.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral_local.localcluster import ClusterError, LocalCluster
from tests.e2e._corral import (
    OperatorProcess,
    apply,
    eventually,
    get_json,
    install_crds,
    pool_manifest,
)

pytestmark = pytest.mark.slow

OUTAGE_S = 30.0


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    try:
        local.start()
    except ClusterError as exc:
        pytest.fail(f"the drill's control plane did not start: {exc}", pytrace=False)
    try:
        install_crds(local)
        yield local
    finally:
        local.stop()


def _replicas(cluster: LocalCluster, namespace: str) -> Any:
    found = get_json(cluster, "deployment", "held", "-n", namespace) or {}
    return found.get("spec", {}).get("replicas")


def test_the_api_server_stopped_for_30_s_under_two_operator_replicas(
    own_cluster: LocalCluster, url: str, tmp_path: Path
) -> None:
    cluster = own_cluster
    namespace = f"chaos-api-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", namespace)
    lease = "corral-chaos-leader"
    common = (
        "--namespace", namespace, "--default-region", "chaos", "--http-port", "-1",
        "--leader-lease", lease, "--operator-namespace", namespace,
    )  # fmt: skip
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
        finally:
            cluster.send_signal("kube-apiserver", signal.SIGCONT)
        back = time.monotonic()
        eventually(lambda: "leading as replica-b" in b.log(), "replica-b to take over", 90)
        takeover_s = time.monotonic() - back
        held = _replicas(cluster, namespace)
        holder = (get_json(cluster, "lease", lease, "-n", namespace) or {})["spec"][
            "holderIdentity"
        ]
        apply(cluster, pool_manifest("held", ["held"], 3, 3), namespace)
        eventually(lambda: _replicas(cluster, namespace) == 3, "the new leader to reconcile", 60)
        print(
            f"\nchaos api-outage: injected SIGSTOP of kube-apiserver for {OUTAGE_S:g} s under "
            f"2 operator replicas; audit: leader_stepped_down_after_s={exited:.1f} "
            f"leader_exit_code={first.proc.returncode} leaders_during_outage={int(led_during)} "
            f"takeover_after_s={takeover_s:.1f} replicas_held={held} lease_holder={holder} "
            "reconciles_after=yes",
            flush=True,
        )
        why = f"--- replica-a ---\n{first.log()}\n--- replica-b ---\n{b.log()}"
        assert "leadership lost" in first.log(), why
        assert first.proc.returncode != 0, why  # it exits, to come back as a standby
        assert not led_during, why  # nobody took the Lease while the API was away
        assert held == 2 and holder == "replica-b", why
    finally:
        for process in (first, second):
            if process is not None:
                process.stop()
        cluster.kubectl("delete", "workerpools", "--all", "-n", namespace, "--wait=false",
                        check=False)  # fmt: skip
        for name in cluster.kubectl("get", "workerpools", "-n", namespace, "-o", "name",
                                    check=False).stdout.split():  # fmt: skip
            cluster.kubectl("patch", name, "-n", namespace, "--type=merge",
                            "-p", '{"metadata": {"finalizers": null}}', check=False)  # fmt: skip

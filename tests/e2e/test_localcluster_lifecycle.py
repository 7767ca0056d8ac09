"""The local cluster's own promises: `up` prints a working KUBECONFIG, `down` and a
killed supervisor leave no process behind, a component that fails to start is
named together with the tail of its log, and the identities it issues are the ones
Kubernetes sees. The process tests start their own clusters in temp directories."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from corral_local.localcluster import Cluster, ClusterError, LocalCluster, default_bin_dir


@pytest.fixture(scope="module")
def local_cluster(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    """The session cluster when it is local; otherwise (kind) a LocalCluster of our own,
    because these tests need the cluster's CA."""
    if isinstance(cluster, LocalCluster):
        yield cluster
        return
    with LocalCluster(tmp_path_factory.mktemp("own-cluster")) as own:
        yield own


def _localcluster(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "corral_local.localcluster", *args],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
    )


def _alive(pid: int) -> bool:
    # `ps` rather than os.kill: the check the issue asks for, and it ignores zombies.
    out = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True)
    return out.returncode == 0 and not out.stdout.strip().startswith("Z")


def _wait_gone(pids: list[int], timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        left = [p for p in pids if _alive(p)]
        if not left:
            return []
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


def _component_pids(state: Path) -> list[int]:
    return list(json.loads((state / "pids.json").read_text()).values())


def test_cluster_up_prints_a_working_kubeconfig_and_down_leaves_no_process_behind(
    tmp_path: Path,
) -> None:
    state = tmp_path / "cluster"
    up = _localcluster("up", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip() == f"export KUBECONFIG={state / 'admin.kubeconfig'}"
    supervisor = int((state / "supervisor.pid").read_text())
    pids = [supervisor, *_component_pids(state)]
    assert len(pids) == 5 and all(_alive(p) for p in pids)
    try:
        readyz = subprocess.run(
            [str(default_bin_dir() / "kubectl"), "get", "--raw", "/readyz"],
            env=dict(os.environ, KUBECONFIG=str(state / "admin.kubeconfig")),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert readyz.stdout.strip() == "ok", readyz.stderr
        status = _localcluster("status", "--state-dir", str(state))
        assert status.returncode == 0 and "/readyz: ok" in status.stdout, status
    finally:
        down = _localcluster("down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert _wait_gone(pids) == []
    assert _localcluster("status", "--state-dir", str(state)).returncode == 1


def test_killing_the_supervisor_takes_every_component_with_it(tmp_path: Path) -> None:
    state = tmp_path / "cluster"
    up = _localcluster("up", "--state-dir", str(state))
    assert up.returncode == 0, up.stderr
    supervisor = int((state / "supervisor.pid").read_text())
    components = _component_pids(state)
    try:
        # SIGKILL gives the supervisor no chance to clean up: the kernel's
        # parent-death signal has to do it.
        os.kill(supervisor, signal.SIGKILL)
        assert _wait_gone(components) == []
    finally:
        for pid in components:
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_a_component_that_fails_to_start_is_named_with_the_tail_of_its_log(
    tmp_path: Path,
) -> None:
    bins = tmp_path / "bin"
    bins.mkdir()
    for name in ("etcd", "kube-controller-manager", "kube-scheduler", "kubectl"):
        (bins / name).symlink_to(default_bin_dir() / name)
    broken = bins / "kube-apiserver"
    broken.write_text("#!/bin/sh\necho 'flag provided but not defined: --frobnicate' >&2\nexit 3\n")
    broken.chmod(0o755)
    cluster = LocalCluster(tmp_path / "state", bin_dir=bins, log=lambda _: None)
    with pytest.raises(ClusterError) as failure:
        cluster.start()
    message = str(failure.value)
    assert "kube-apiserver exited with code 3" in message
    assert "flag provided but not defined: --frobnicate" in message
    # The etcd it had already started (its --data-dir names the state dir) is gone again.
    ps = subprocess.run(["ps", "-eo", "stat=,args="], capture_output=True, text=True).stdout
    left = [
        line for line in ps.splitlines()
        if str(tmp_path / "state") in line and not line.lstrip().startswith("Z")
    ]  # fmt: skip
    assert left == []
    assert not (tmp_path / "state" / "pids.json").exists()


def test_a_node_identity_issued_by_the_cluster_ca_may_register_only_its_own_node(
    local_cluster: LocalCluster,
) -> None:
    name = f"e2e-identity-{uuid.uuid4().hex[:6]}"
    node_kubeconfig = local_cluster.client_kubeconfig(
        f"node-{name}", f"system:node:{name}", ["system:nodes"]
    )
    whoami = json.loads(
        local_cluster.kubectl("auth", "whoami", "-o", "json", kubeconfig=node_kubeconfig).stdout
    )
    assert whoami["status"]["userInfo"]["username"] == f"system:node:{name}"
    assert "system:nodes" in whoami["status"]["userInfo"]["groups"]

    def node(node_name: str) -> str:
        # Unschedulable, so the scheduler never binds another test's pod to it.
        return yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node_name},
                "spec": {"unschedulable": True},
            }
        )

    try:
        local_cluster.kubectl("create", "-f", "-", input=node(name), kubeconfig=node_kubeconfig)
        # The Node authorizer and NodeRestriction admission keep a node to itself.
        other = local_cluster.kubectl(
            "create",
            "-f",
            "-",
            input=node(f"{name}-other"),
            kubeconfig=node_kubeconfig,
            check=False,
        )
        assert other.returncode != 0 and "Forbidden" in other.stderr, other.stderr
    finally:
        local_cluster.kubectl("delete", "node", name, "--ignore-not-found", check=False)
        local_cluster.kubectl("delete", "node", f"{name}-other", "--ignore-not-found", check=False)


def test_a_port_taken_between_picking_and_binding_is_retried_with_new_ports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral_local.localcluster import _cluster

    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        real_free_port = _cluster.free_port
        # The first port handed out (etcd's client port) is already in use.
        monkeypatch.setattr(
            _cluster,
            "free_port",
            lambda host="127.0.0.1": next(picks, None) or real_free_port(host),
        )
        messages: list[str] = []
        with LocalCluster(tmp_path / "state", log=messages.append) as retried:
            assert retried.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"
    assert any("etcd lost its port" in m for m in messages), messages

"""Node-agent fixtures of the e2e tier (imported by tests/e2e/conftest.py).

- `node_agent` (session): one `python -m corral_local.nodeagent` for the
  session's cluster, with two Ready nodes, `e2e-eu` (region eu, zone eu-a) and
  `e2e-us` (region us, zone us-a). Crash back-off is shortened to 1 s (cap 4 s) so
  restart tests stay fast, and Leases renew every 2 s. The handle has `.chaos` (a `ChaosClient`: kill_pod,
  stop_node, start_node, pod, state), `.nodes`, `.state_dir` and `.log_file`.
  A test that stops a node must start it again before it ends.
- `wait_for(predicate, timeout_s, what)`: poll until the predicate returns
  something truthy and return it; fails with `what` and the last value.
- `pod_json(cluster, namespace, name)`: the pod as a dict, or None when gone.
- `shell_container(script, **fields)`: a container the node agent runs as a
  host shell (for `pod_manifest` and `deployment_manifest` in _corral.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

from corral_local import hostimage
from corral_local.localcluster import Cluster
from corral_local.nodeagent import ChaosClient

T = TypeVar("T")

NODES = {"e2e-eu": {"region": "eu", "zone": "eu-a"}, "e2e-us": {"region": "us", "zone": "us-a"}}


def wait_for(
    predicate: Callable[[], T | Literal[False] | None],
    timeout_s: float,
    what: str,
    every_s: float = 0.25,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that
    (so `x and y` lambdas type as y, not `Literal[False] | y`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s}s waiting for {what}; last value: {last!r}")
        time.sleep(every_s)


def pod_json(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    proc = cluster.kubectl("-n", namespace, "get", "pod", name, "-o", "json", check=False)
    if proc.returncode != 0:
        if "NotFound" in proc.stderr or "not found" in proc.stderr:
            return None
        raise AssertionError(f"kubectl get pod {namespace}/{name}: {proc.stderr}")
    pod: dict[str, Any] = json.loads(proc.stdout)
    return pod


@dataclass
class NodeAgentHandle:
    chaos: ChaosClient
    nodes: list[str]
    state_dir: Path
    log_file: Path
    process: subprocess.Popen[bytes]

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _nodes_ready(cluster: Cluster) -> bool:
    nodes = cluster.kubectl_json("get", "nodes")
    ready = set()
    for node in nodes.get("items", []):
        conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
        if conditions.get("Ready") == "True" and not node["spec"].get("taints"):
            ready.add(node["metadata"]["name"])
    return set(NODES) <= ready


def _check_isolation(ready_file: Path, handle: NodeAgentHandle) -> None:
    """Fail the session, with the agent's reason, when its pods would share the
    host's network or mounts: the tests need pod IPs of their own, and volumes
    at their mountPath."""
    deadline = time.monotonic() + 5
    while True:  # the agent may be mid-write
        try:
            ready = json.loads(ready_file.read_text())
            break
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    problems = [
        f"{what}: {ready.get(key) or 'no reason given'}"
        for what, ok, key in (
            ("no pod network (bridge corral0)", ready["network"] == "bridge", "networkProblem"),
            ("no mount namespace per container", ready["privateMounts"], "privateMountsProblem"),
        )
        if not ok
    ]
    if problems:
        pytest.fail(
            "the node agent cannot isolate pods on this machine (the e2e tier runs as root): "
            + "; ".join(problems)
            + f"\n{handle.log_tail()}",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def node_agent(cluster: Cluster) -> Iterator[NodeAgentHandle]:
    if not cluster.is_local:
        # It would register Nodes in that cluster that run pods on this machine.
        pytest.fail(
            "this test needs the local platform's node agent (pods as host processes), "
            "which only runs beside the local control plane; against an existing cluster "
            "leave such tests out with -m 'not local_platform' (make kind-test-e2e does)",
            pytrace=False,
        )
    # Not under pytest's basetemp: concurrent pytest sessions of the same user
    # prune each other's old basetemps, and this one must live all session.
    state_dir = Path(tempfile.mkdtemp(prefix="corral-e2e-nodeagent-"))
    agent_builds_image = os.geteuid() == 0 and not os.environ.get("CORRAL_IMAGE_PYTHON")
    if agent_builds_image and hostimage.source_tree() is not None:
        # The agent builds the pods' host image at start-up when it has none
        # for these sources (a minute or more: two packages installed into a
        # fresh virtualenv). Build it here, outside the start-up deadline below,
        # so that only the agent's own start is timed.
        hostimage.ensure_image(say=lambda message: print(message, flush=True))
    ready_file = state_dir / "ready.json"
    log_file = state_dir / "agent.log"
    argv = [
        sys.executable,
        "-m",
        "corral_local.nodeagent",
        "--kubeconfig",
        str(cluster.kubeconfig),
        "--state-dir",
        str(state_dir),
        "--ready-file",
        str(ready_file),
        "--crash-backoff-base",
        "1",
        "--crash-backoff-max",
        "4",
        "--lease-renew",
        "2",
    ]
    for name, labels in NODES.items():
        argv += ["--node", name + ":" + ",".join(f"{k}={v}" for k, v in labels.items())]
    with open(log_file, "ab") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    handle = NodeAgentHandle(
        chaos=ChaosClient(state_dir / "control.sock"),
        nodes=list(NODES),
        state_dir=state_dir,
        log_file=log_file,
        process=process,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the node agent did not start:\n{handle.log_tail()}", pytrace=False)
            time.sleep(0.1)
        _check_isolation(ready_file, handle)
        # Ready, and the node lifecycle controller has lifted the not-ready taint
        wait_for(lambda: _nodes_ready(cluster), 90, "the agent's nodes to be Ready without taints")
        yield handle
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.returncode == 0 and not os.environ.get("CORRAL_E2E_KEEP_NODEAGENT"):
            shutil.rmtree(state_dir, ignore_errors=True)  # kept for post-mortems otherwise


def shell_container(script: str, **fields: Any) -> dict[str, Any]:
    """A container that runs `script` with sh (image corral-test/shell, a host
    shell under the node agent), named `main`; `fields` add probes, mounts
    and the like, or another name."""
    return {
        "name": "main",
        "image": "corral-test/shell:1",
        "command": ["sh", "-c", script],
        **fields,
    }

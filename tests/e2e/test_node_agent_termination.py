"""Pod deletion as the kubelet does it: preStop, SIGTERM, SIGKILL at the end of
the grace period, then the pod object goes; and scale-down honours
controller.kubernetes.io/pod-deletion-cost.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import corral_local
from corral_local.localcluster import Cluster
from tests.e2e._corral import deployment_manifest, pod_manifest
from tests.e2e._nodes import NodeAgentHandle, pod_json, shell_container, wait_for

# The container appends "<event> <epoch seconds>" lines to /events/log (a
# hostPath the test reads). On SIGTERM it keeps ticking instead of exiting, so
# only SIGKILL can stop it, and its last tick tells when that came.
_SCRIPT = r"""
stamp() { echo "$1 $(date +%s.%N)" >> /events/log; }
on_term() { stamp TERM; while true; do stamp TICK; sleep 0.1; done; }
trap on_term TERM
stamp START
while true; do sleep 0.1; done
"""
_PRE_STOP = 'echo "PRESTOP_BEGIN $(date +%s.%N)" >> /events/log; sleep 1; echo "PRESTOP_END $(date +%s.%N)" >> /events/log'


# Inside the pod, emptyDirs hide the node agent's virtualenv and its code, as
# a pod's /tmp emptyDir hides a checkout under /tmp: the preStop hook, exec'd
# into the pod's mount namespace, must need neither (it needed both once, and
# every worker pod's drain failed on a checkout under /tmp).
_HIDDEN = {
    "hide-venv": str(Path(sys.prefix)),
    "hide-agent": str(Path(corral_local.__file__).parent),
}


def _events(path: Path) -> list[tuple[str, float]]:
    out = []
    for line in path.read_text().splitlines():
        name, _, stamp = line.partition(" ")
        out.append((name, float(stamp)))
    return out


def test_deleting_a_pod_runs_pre_stop_then_sigterm_and_sigkill_only_after_the_grace_period(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle, tmp_path: Path
) -> None:
    grace_s = 4
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    events_dir.chmod(0o777)
    main = shell_container(
        _SCRIPT,
        volumeMounts=[
            {"name": "events", "mountPath": "/events"},
            *({"name": name, "mountPath": path} for name, path in _HIDDEN.items()),
        ],
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", _PRE_STOP]}}},
    )
    pod = pod_manifest(
        "stubborn",
        main,
        terminationGracePeriodSeconds=grace_s,
        volumes=[
            {"name": "events", "hostPath": {"path": str(events_dir)}},
            *({"name": name, "emptyDir": {}} for name in _HIDDEN),
        ],
    )
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    log = events_dir / "log"
    wait_for(lambda: log.exists() and "START" in log.read_text(), 30, "the container to start")

    deleted_at = time.time()
    cluster.kubectl("-n", namespace, "delete", "pod", "stubborn", "--wait=false")
    wait_for(lambda: pod_json(cluster, namespace, "stubborn") is None, 30, "the pod object to go")
    gone_at = time.time()

    events = _events(log)
    names = [n for n, _ in events]
    first = {n: t for n, t in reversed(events)}
    ticks = [t for n, t in events if n == "TICK"]
    # order: preStop ran to its end before SIGTERM, and the process lived on after it
    assert names.index("PRESTOP_BEGIN") < names.index("PRESTOP_END") < names.index("TERM"), names
    assert first["PRESTOP_BEGIN"] >= deleted_at - 0.5
    assert first["TERM"] >= first["PRESTOP_END"]
    assert ticks, "the container should have ticked after SIGTERM"
    # SIGKILL only once the grace period (counted from the deletion) ran out.
    # The last tick trails the kill by up to one tick, and by more when the
    # machine is loaded (each tick forks `date`): 1.2 s of slack still tells a
    # kill at the deadline (4 s) from one at SIGTERM (1 s) or preStop's end.
    assert ticks[-1] - first["PRESTOP_BEGIN"] >= grace_s - 1.2, (ticks[-1], first)
    assert ticks[-1] - first["PRESTOP_BEGIN"] <= grace_s + 1.5, (ticks[-1], first)
    # and the pod object was removed only after the kill
    assert gone_at >= ticks[-1]
    time.sleep(0.5)
    assert _events(log)[-1][1] == events[-1][1], "nothing may tick after SIGKILL"


def test_scaling_a_deployment_down_removes_the_pods_with_the_lowest_deletion_cost_first(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    loop = shell_container("while true; do sleep 0.2; done")
    fleet = deployment_manifest("fleet", 3, loop, terminationGracePeriodSeconds=1)
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(fleet))

    def ready_pods() -> list[str]:
        items = cluster.kubectl_json("-n", namespace, "get", "pods", "-l", "app=fleet")["items"]
        names = [
            p["metadata"]["name"]
            for p in items
            if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return sorted(names)

    pods = wait_for(lambda: (p := ready_pods()) and len(p) == 3 and p, 60, "3 ready fleet pods")
    costs = dict(zip(pods, ["100", "-50", "10"], strict=True))
    for name, cost in costs.items():
        cluster.kubectl(
            "-n",
            namespace,
            "annotate",
            "pod",
            name,
            f"controller.kubernetes.io/pod-deletion-cost={cost}",
        )
    cheapest, middle, dearest = sorted(costs, key=lambda n: int(costs[n]))

    cluster.kubectl("-n", namespace, "scale", "deployment", "fleet", "--replicas=2")
    remaining = wait_for(lambda: (p := ready_pods()) and len(p) == 2 and p, 30, "2 pods left")
    assert cheapest not in remaining and set(remaining) == {middle, dearest}

    cluster.kubectl("-n", namespace, "scale", "deployment", "fleet", "--replicas=1")
    remaining = wait_for(lambda: (p := ready_pods()) and len(p) == 1 and p, 30, "1 pod left")
    assert remaining == [dearest]

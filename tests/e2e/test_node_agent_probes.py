"""Init containers, exec probes and liveness restarts on the node agent."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from corral_local.localcluster import Cluster
from tests.e2e._corral import pod_manifest
from tests.e2e._nodes import NodeAgentHandle, pod_json, shell_container, wait_for


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    return dict((pod_json(cluster, namespace, name) or {}).get("status") or {})


def test_init_containers_run_in_order_to_completion_before_the_main_container(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    mounts = [{"name": "work", "mountPath": "/work"}]
    pod = pod_manifest(
        "staged",
        shell_container("echo main >> /work/steps; cat /work/steps", volumeMounts=mounts),
        restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}],
        initContainers=[
            shell_container(f"echo step{i} >> /work/steps", name=f"init-{i}", volumeMounts=mounts)
            for i in (1, 2)
        ],
    )
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    status = wait_for(
        lambda: (s := _status(cluster, namespace, "staged")).get("phase") == "Succeeded" and s,
        60,
        "the staged pod to succeed",
    )
    assert [c["state"]["terminated"]["exitCode"] for c in status["initContainerStatuses"]] == [0, 0]
    conditions = {c["type"]: c["status"] for c in status["conditions"]}
    assert conditions["Initialized"] == "True" and conditions["PodScheduled"] == "True"
    logs = cluster.kubectl("-n", namespace, "logs", "staged", "-c", "main").stdout.split()
    assert logs == ["step1", "step2", "main"]


def test_an_exec_readiness_probe_gates_ready_and_a_failing_liveness_probe_restarts_the_container(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    # ready once /tmp/<pod>-ready exists (created after 5 s: long enough that a
    # slow first look at the Running pod still sees it not ready); liveness fails
    # 3 s later, so it is restarted by the probe, not by an exit
    script = "sleep 5; touch /tmp/$HOSTNAME-ready; sleep 3; touch /tmp/$HOSTNAME-sick; while true; do sleep 0.2; done"
    name = f"probed-{namespace[-6:]}"
    main = shell_container(
        "rm -f /tmp/$HOSTNAME-ready /tmp/$HOSTNAME-sick; " + script,
        readinessProbe={
            "exec": {"command": ["sh", "-c", "test -f /tmp/$HOSTNAME-ready"]},
            "periodSeconds": 1,
        },
        livenessProbe={
            "exec": {"command": ["sh", "-c", "test ! -f /tmp/$HOSTNAME-sick"]},
            "periodSeconds": 1,
            "failureThreshold": 2,
        },
    )
    pod = pod_manifest(name, main, terminationGracePeriodSeconds=1)
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    wait_for(lambda: _status(cluster, namespace, name).get("phase") == "Running", 30, "running")
    assert not _status(cluster, namespace, name)["containerStatuses"][0]["ready"]
    wait_for(
        lambda: _status(cluster, namespace, name)["containerStatuses"][0]["ready"],
        30,
        "ready via the exec probe",
    )
    restarted = wait_for(
        lambda: (
            (c := _status(cluster, namespace, name)["containerStatuses"][0])["restartCount"] >= 1
            and c
        ),
        30,
        "a liveness restart",
    )
    last = restarted["lastState"]["terminated"]
    assert "liveness probe" in last["message"]
    assert last["exitCode"] in (137, 143)  # killed, not exited on its own


def test_a_liveness_kill_runs_the_pre_stop_hook_before_sigterm_as_the_kubelet_does(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle, tmp_path: Path
) -> None:
    # The container becomes sick 2 s in; on SIGTERM it logs TERM and exits.
    # The kubelet kills a container that fails liveness as it kills one being
    # deleted: preStop first (within the grace period), then SIGTERM.
    events = tmp_path / "events"
    events.mkdir()
    events.chmod(0o777)
    name = f"sick-{namespace[-6:]}"
    main = shell_container(
        "trap 'echo TERM >> /events/log; exit 0' TERM; rm -f /events/sick; "
        "sleep 2; touch /events/sick; while true; do sleep 0.1; done",
        volumeMounts=[{"name": "events", "mountPath": "/events"}],
        livenessProbe={
            "exec": {"command": ["sh", "-c", "test ! -f /events/sick"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        },
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo PRESTOP >> /events/log"]}}},
    )
    pod = pod_manifest(
        name,
        main,
        terminationGracePeriodSeconds=5,
        volumes=[{"name": "events", "hostPath": {"path": str(events)}}],
    )
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    wait_for(
        lambda: (
            _status(cluster, namespace, name)
            .get("containerStatuses", [{}])[0]
            .get("restartCount", 0)
            >= 1
        ),
        60,
        "a liveness restart",
    )
    log = (events / "log").read_text().split()
    assert log[:2] == ["PRESTOP", "TERM"], log


def test_readiness_is_still_probed_while_a_pod_terminates_as_the_kubelet_does(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle, tmp_path: Path
) -> None:
    # On SIGTERM the container keeps running until the test touches /events/stop;
    # meanwhile its readiness probe starts failing, which the pod must show.
    events = tmp_path / "events"
    events.mkdir()
    events.chmod(0o777)
    name = f"draining-{namespace[-6:]}"
    main = shell_container(
        "trap 'while [ ! -f /events/stop ]; do sleep 0.1; done; exit 0' TERM; "
        "while true; do sleep 0.1; done",
        volumeMounts=[{"name": "events", "mountPath": "/events"}],
        readinessProbe={
            "exec": {"command": ["sh", "-c", "test ! -f /events/unready"]},
            "periodSeconds": 1,
        },
    )
    pod = pod_manifest(
        name,
        main,
        terminationGracePeriodSeconds=60,
        volumes=[{"name": "events", "hostPath": {"path": str(events)}}],
    )
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))

    def ready() -> bool:
        return bool(
            _status(cluster, namespace, name).get("containerStatuses", [{}])[0].get("ready")
        )

    wait_for(ready, 30, "the container to be ready")
    cluster.kubectl("-n", namespace, "delete", "pod", name, "--wait=false")
    wait_for(
        lambda: ((pod_json(cluster, namespace, name) or {}).get("metadata") or {}).get(
            "deletionTimestamp"
        ),
        10,
        "the deletion to start",
    )
    time.sleep(1)  # the agent has sent SIGTERM
    (events / "unready").touch()
    try:
        wait_for(lambda: not ready(), 15, "the terminating pod's readiness to follow its probe")
        conditions = {
            c["type"]: c["status"] for c in _status(cluster, namespace, name)["conditions"]
        }
        assert conditions["Ready"] == "False"
        assert pod_json(cluster, namespace, name) is not None  # still terminating
    finally:
        (events / "stop").touch()
    wait_for(lambda: pod_json(cluster, namespace, name) is None, 30, "the pod to go")

"""The node agent runs pods as host processes: networking, probes, env, restarts.

Every test runs against the session's node agent (two nodes, see _nodes.py).
"""

from __future__ import annotations

import base64
import json
import urllib.request
from typing import Any

from corral_local.localcluster import Cluster
from tests.e2e._corral import deployment_manifest, pod_manifest
from tests.e2e._nodes import NodeAgentHandle, pod_json, shell_container, wait_for


def _apply(cluster: Cluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))


def _pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    listing = cluster.kubectl_json("-n", namespace, "get", "pods", "-l", selector)
    return list(listing["items"])


def _running_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    ready = {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
    return (
        status.get("phase") == "Running"
        and ready == "True"
        and not pod["metadata"].get("deletionTimestamp")
    )


def _container(pod: dict[str, Any] | None, name: str) -> dict[str, Any]:
    for status in ((pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status["name"] == name:
            return dict(status)
    return {}


def _bare_pod(name: str, command: str, **spec: Any) -> dict[str, Any]:
    spec.setdefault("terminationGracePeriodSeconds", 2)
    return pod_manifest(name, shell_container(command), **spec)


def test_a_deployment_of_three_http_servers_gets_three_ready_pods_with_distinct_ips_answering_their_probe(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    web = {
        "name": "web",
        "image": "corral-test/httpserver:1",
        "ports": [{"containerPort": 8080, "name": "http"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1},
    }
    _apply(cluster, namespace, deployment_manifest("web", 3, web))
    pods = wait_for(
        lambda: (
            (p := _pods(cluster, namespace, "app=web"))
            and len(p) == 3
            and all(map(_running_ready, p))
            and p
        ),
        60,
        "3 Running and Ready web pods",
    )
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 3, ips
    assert all(ip.startswith("10.244.") for ip in ips), ips
    assert {p["spec"]["nodeName"] for p in pods} <= set(node_agent.nodes)
    for pod in pods:
        # every pod listens on the same port 8080: only distinct IPs make that work
        with urllib.request.urlopen(
            f"http://{pod['status']['podIP']}:8080/healthz", timeout=5
        ) as resp:
            assert resp.status == 200
            assert resp.read().decode().strip() == pod["metadata"]["name"]


def test_a_container_that_exits_non_zero_is_restarted_with_its_restart_count_incremented(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    _apply(cluster, namespace, _bare_pod("crasher", "echo started; sleep 0.5; exit 3"))
    status = wait_for(
        lambda: (
            (c := _container(pod_json(cluster, namespace, "crasher"), "main")).get(
                "restartCount", 0
            )
            >= 2
            and c
        ),
        60,
        "two restarts of the crashing container",
    )
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 3
    assert last["reason"] == "Error"
    pod = pod_json(cluster, namespace, "crasher")
    assert pod is not None and pod["status"]["phase"] == "Running"  # restartPolicy Always


def test_kill_9_through_the_chaos_handle_is_seen_as_a_container_failure_and_restarted(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    _apply(cluster, namespace, _bare_pod("victim", "while true; do sleep 0.2; done"))
    wait_for(
        lambda: (
            _container(pod_json(cluster, namespace, "victim"), "main")
            .get("state", {})
            .get("running")
        ),
        30,
        "victim running",
    )
    before = node_agent.chaos.pod(namespace, "victim")
    assert before is not None
    old_pid = before["containers"][0]["pid"]

    assert node_agent.chaos.kill_pod(namespace, "victim") == ["main"]

    status = wait_for(
        lambda: (
            (c := _container(pod_json(cluster, namespace, "victim"), "main")).get("restartCount")
            == 1
            and (c.get("state") or {}).get("running")
            and c
        ),
        30,
        "the killed container to be restarted",
    )
    assert status["lastState"]["terminated"]["exitCode"] == 137  # 128 + SIGKILL
    assert status["lastState"]["terminated"]["signal"] == 9
    after = node_agent.chaos.pod(namespace, "victim")
    assert after is not None and after["containers"][0]["pid"] not in (None, old_pid)


def test_a_pod_whose_env_reads_a_secret_gets_the_secret_value(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    secret_value = "s3cr3t-" + namespace[-6:]
    _apply(
        cluster,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "data": {"password": base64.b64encode(secret_value.encode()).decode()},
        },
    )
    pod = _bare_pod(
        "reader",
        'echo "env=$PASSWORD"; echo "args=$0"; echo "name=$POD_NAME"',
        restartPolicy="Never",
    )
    container = pod["spec"]["containers"][0]
    container["command"] = ["sh", "-c", container["command"][2], "$(PASSWORD)"]
    container["env"] = [
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    _apply(cluster, namespace, pod)
    wait_for(
        lambda: (
            ((pod_json(cluster, namespace, "reader") or {}).get("status") or {}).get("phase")
            == "Succeeded"
        ),
        30,
        "the reader pod to succeed",
    )
    seen = node_agent.chaos.pod(namespace, "reader")
    assert seen is not None
    with open(seen["containers"][0]["log"]) as fh:
        output = fh.read().splitlines()
    assert f"env={secret_value}" in output
    assert f"args={secret_value}" in output  # $(PASSWORD) expanded in the command
    assert "name=reader" in output


def test_an_unknown_image_leaves_the_pod_pending_with_an_err_image_pull_reason(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    pod = _bare_pod("nowhere", "true")
    pod["spec"]["containers"][0]["image"] = "registry.example/not-mapped:9"
    _apply(cluster, namespace, pod)
    waiting = wait_for(
        lambda: (
            _container(pod_json(cluster, namespace, "nowhere"), "main").get("state") or {}
        ).get("waiting"),
        30,
        "a waiting reason for the unmapped image",
    )
    assert waiting["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert "not-mapped:9" in waiting["message"] and "images.yaml" in waiting["message"]
    found = pod_json(cluster, namespace, "nowhere")
    assert found is not None and found["status"]["phase"] == "Pending"


def test_kubectl_logs_shows_the_current_and_the_previous_run_of_a_container(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    # each run prints its own marker, then crashes: run 0, run 1, ...
    script = 'echo "run at $(date +%s%N)"; echo second line; sleep 0.3; exit 1'
    _apply(cluster, namespace, _bare_pod("chatty", script))
    wait_for(
        lambda: (
            _container(pod_json(cluster, namespace, "chatty"), "main").get("restartCount", 0) >= 1
        ),
        60,
        "a restart of the chatty container",
    )
    # The previous run first: whichever run is newest when `current` is read
    # afterwards comes after it, even if the container restarts in between.
    previous = wait_for(
        lambda: (
            (
                p := cluster.kubectl("-n", namespace, "logs", "chatty", "--previous", check=False)
            ).returncode
            == 0
            and p.stdout
        ),
        30,
        "kubectl logs --previous to show the run before",
    )
    current = wait_for(
        lambda: (
            (p := cluster.kubectl("-n", namespace, "logs", "chatty", check=False)).returncode == 0
            and "second line" in p.stdout
            and p.stdout
        ),
        30,
        "kubectl logs to show the current run",
    )
    assert current.splitlines()[1] == "second line"
    assert previous.startswith("run at ") and previous != current  # two distinct runs
    # The container restarts every moment: read until a run has printed both lines.
    wait_for(
        lambda: (
            cluster.kubectl("-n", namespace, "logs", "chatty", "--tail=1").stdout.strip()
            == "second line"
        ),
        30,
        "kubectl logs --tail=1 to show the last line of a run",
    )


def _waiting(cluster: Cluster, namespace: str, name: str, init: bool = False) -> dict[str, Any]:
    """The first (init) container's waiting state, once it has one."""
    key = "initContainerStatuses" if init else "containerStatuses"

    def look() -> dict[str, Any] | None:
        statuses = ((pod_json(cluster, namespace, name) or {}).get("status") or {}).get(key)
        return ((statuses or [{}])[0].get("state") or {}).get("waiting")

    return wait_for(look, 30, f"a waiting reason for {name}")


def test_run_as_non_root_refuses_a_container_that_would_run_as_root_as_the_kubelet_does(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    _apply(cluster, namespace, _bare_pod("as-root", "true", securityContext={"runAsNonRoot": True}))
    zero = _bare_pod("uid-zero", "true", securityContext={"runAsNonRoot": True})
    zero["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    _apply(cluster, namespace, zero)
    fine = {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532}
    _apply(
        cluster,
        namespace,
        _bare_pod("nonroot", "true", restartPolicy="Never", securityContext=fine),
    )
    waiting = _waiting(cluster, namespace, "as-root")
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "container has runAsNonRoot and image will run as root" in waiting["message"]
    waiting = _waiting(cluster, namespace, "uid-zero")
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "container's runAsUser breaks non-root policy" in waiting["message"]
    wait_for(
        lambda: (
            (pod_json(cluster, namespace, "nonroot") or {}).get("status", {}).get("phase")
            == "Succeeded"
        ),
        30,
        "the pod with a non-root runAsUser to run",
    )
    events = cluster.kubectl_json(
        "-n", namespace, "get", "events", "--field-selector", "involvedObject.name=as-root"
    )
    assert any("runAsNonRoot" in e["message"] for e in events["items"]), events["items"]
    assert (pod_json(cluster, namespace, "as-root") or {})["status"]["phase"] == "Pending"


def test_a_native_sidecar_is_refused_with_a_reason_rather_than_left_in_init(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    sidecar = shell_container("sleep 60", name="sidecar", restartPolicy="Always")
    _apply(cluster, namespace, _bare_pod("sidecar", "true", initContainers=[sidecar]))
    waiting = _waiting(cluster, namespace, "sidecar", init=True)
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "sidecar" in waiting["message"] and "not supported" in waiting["message"]

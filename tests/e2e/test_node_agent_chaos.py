"""The chaos handle: stopping a node kills its processes and silences its Lease."""

from __future__ import annotations

import json
import time

from corral_local.localcluster import Cluster
from tests._processes import alive
from tests.e2e._nodes import NodeAgentHandle, pod_json, wait_for


def _renew_time(cluster: Cluster, node: str) -> str:
    lease = cluster.kubectl_json("-n", "kube-node-lease", "get", "lease", node)
    return str(lease["spec"]["renewTime"])


def test_stopping_a_node_kills_its_pods_processes_and_stops_its_lease_until_it_starts_again(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    node, other = "e2e-us", "e2e-eu"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "pinned"},
        "spec": {
            "nodeSelector": {"topology.kubernetes.io/region": "us"},
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": "corral-test/shell:1",
                    "command": ["sh", "-c", "while true; do sleep 0.2; done"],
                }
            ],
        },
    }
    # a second pod on the node is terminating, stuck in a long preStop hook: a
    # dying node must not wait for it
    slow = json.loads(json.dumps(pod))
    slow["metadata"]["name"] = "slowpoke"
    slow["spec"]["terminationGracePeriodSeconds"] = 120
    slow["spec"]["containers"][0]["lifecycle"] = {
        "preStop": {"exec": {"command": ["sleep", "100"]}}
    }
    for manifest in (pod, slow):
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))
    wait_for(
        lambda: (
            (pod_json(cluster, namespace, "slowpoke") or {}).get("status", {}).get("phase")
            == "Running"
        ),
        30,
        "slowpoke running",
    )
    cluster.kubectl("-n", namespace, "delete", "pod", "slowpoke", "--wait=false")
    wait_for(
        lambda: (
            (pod_json(cluster, namespace, "pinned") or {}).get("status", {}).get("phase")
            == "Running"
        ),
        30,
        "pinned running",
    )
    assert (pod_json(cluster, namespace, "pinned") or {})["spec"]["nodeName"] == node
    seen = node_agent.chaos.pod(namespace, "pinned")
    assert seen is not None
    pid = seen["containers"][0]["pid"]
    assert alive(pid)

    started = time.monotonic()
    assert node_agent.chaos.stop_node(node) >= 2
    assert time.monotonic() - started < 10  # the preStop hook was cut short
    try:
        wait_for(lambda: not alive(pid), 10, "the pod's process to die with its node")
        stopped_renew, other_renew = _renew_time(cluster, node), _renew_time(cluster, other)
        time.sleep(5)  # more than two renew periods of the fixture's agent
        assert _renew_time(cluster, node) == stopped_renew
        assert _renew_time(cluster, other) != other_renew  # the live node still renews
        assert node_agent.chaos.pod(namespace, "pinned") is None
    finally:
        node_agent.chaos.start_node(node)

    wait_for(lambda: _renew_time(cluster, node) != stopped_renew, 10, "the Lease to renew again")
    restarted = wait_for(
        lambda: (
            (p := node_agent.chaos.pod(namespace, "pinned")) and p["containers"][0]["pid"] and p
        ),
        20,
        "the pod's container to run again",
    )
    assert restarted["containers"][0]["pid"] != pid and alive(restarted["containers"][0]["pid"])

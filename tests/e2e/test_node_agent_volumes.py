"""Volumes, identity and API access of pods run by the node agent."""

from __future__ import annotations

import base64
import json
from typing import Any

from corral_local.localcluster import Cluster
from tests.e2e._corral import pod_manifest
from tests.e2e._nodes import NodeAgentHandle, pod_json, shell_container, wait_for


def _run_to_completion(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle, pod: dict[str, Any]
) -> tuple[str, list[str]]:
    cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(pod))
    name = pod["metadata"]["name"]
    phase = wait_for(
        lambda: (
            (p := ((pod_json(cluster, namespace, name) or {}).get("status") or {}).get("phase"))
            in ("Succeeded", "Failed")
            and p
        ),
        60,
        f"pod {name} to finish",
    )
    seen = node_agent.chaos.pod(namespace, name)
    assert seen is not None
    with open(seen["containers"][0]["log"]) as fh:
        return str(phase), fh.read().splitlines()


def test_a_pod_sees_its_secret_and_config_map_volumes_at_their_mount_paths(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    for manifest in (
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tls"},
            "data": {"key.pem": base64.b64encode(b"KEY").decode()},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cfg"},
            "data": {"mode": "fast"},
        },
    ):
        cluster.kubectl("-n", namespace, "apply", "-f", "-", input=json.dumps(manifest))
    main = shell_container(
        "echo tls=$(cat /etc/tls/key.pem) cfg=$(cat /etc/cfg/mode) info=$(cat /etc/info/name);"
        " echo hi > /scratch/f && echo scratch=$(cat /scratch/f) host=$(hostname);"
        " echo x > /etc/tls/new 2>/dev/null && echo WROTE || echo DENIED",
        volumeMounts=[
            {"name": "tls", "mountPath": "/etc/tls", "readOnly": True},
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "info", "mountPath": "/etc/info"},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
    )
    downward = {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}
    pod = pod_manifest(
        "mounts",
        main,
        labels={"app": "mounts"},
        restartPolicy="Never",
        volumes=[
            {"name": "tls", "secret": {"secretName": "tls"}},
            {"name": "cfg", "configMap": {"name": "cfg"}},
            {"name": "info", "downwardAPI": downward},
            {"name": "scratch", "emptyDir": {}},
        ],
    )
    phase, lines = _run_to_completion(cluster, namespace, node_agent, pod)
    assert phase == "Succeeded", lines
    assert lines[0] == "tls=KEY cfg=fast info=mounts", lines
    assert lines[1] == "scratch=hi host=mounts", lines  # hostname: the pod's UTS namespace
    assert lines[-1] == "DENIED", lines  # a readOnly mount refuses writes


def test_a_pod_calls_the_api_server_with_its_service_account_token_as_a_non_root_user(
    cluster: Cluster, namespace: str, node_agent: NodeAgentHandle
) -> None:
    script = (
        "id -u; sa=/var/run/secrets/kubernetes.io/serviceaccount; cat $sa/namespace; echo;"
        " curl -s -o /dev/null -w '%{http_code}\\n' --cacert $sa/ca.crt"
        ' -H "Authorization: Bearer $(cat $sa/token)"'
        " https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api;"
        # the project's own python (and so `corral`) must start as a non-root user
        " python -c 'import corral, getpass; print(\"python ok\", getpass.getuser())'"
    )
    pod = pod_manifest(
        "caller",
        shell_container(script),
        restartPolicy="Never",
        securityContext={"runAsUser": 65532, "runAsGroup": 65532},
    )
    phase, lines = _run_to_completion(cluster, namespace, node_agent, pod)
    assert phase == "Succeeded", lines
    # 65532 is unknown to the host: the agent gives it a passwd entry as an image would
    assert lines == ["65532", namespace, "200", "python ok nonroot"], lines

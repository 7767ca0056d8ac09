"""Smoke tests that prove the control plane is real: the API stores and serves
custom resources, the controller-manager and scheduler act on workloads, RBAC
denies, and the binaries report the pinned release."""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from corral_local.localcluster import K8S_VERSION, Cluster, default_bin_dir
from tests._waiting import eventually
from tests.e2e._corral import deployment_manifest


def _eventually(check: Callable[[], Any], what: str, timeout_s: float = 90.0) -> Any:
    """`eventually`, an error raised at once."""
    return eventually(check, what, timeout_s, retry_errors=False)


def test_version_reports_the_pinned_release_and_readyz_is_ok(cluster: Cluster) -> None:
    version = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    assert re.fullmatch(r"v\d+\.\d+\.\d+.*", version["gitVersion"]), version
    assert version["gitVersion"].startswith(f"v{version['major']}.{version['minor']}."), version
    if cluster.is_local:
        assert version["gitVersion"] == f"v{K8S_VERSION}"
        assert (version["major"], version["minor"]) == ("1", K8S_VERSION.split(".")[1])
        assert version["buildDate"].startswith("20"), version
    assert cluster.kubectl("get", "--raw", "/readyz").stdout.strip() == "ok"


def test_the_built_tools_report_the_pinned_releases() -> None:
    bin_dir = default_bin_dir()
    client = json.loads(
        subprocess.run(
            [str(bin_dir / "kubectl"), "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    assert client["clientVersion"]["gitVersion"] == f"v{K8S_VERSION}"
    etcd = subprocess.run(
        [str(bin_dir / "etcd"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert re.search(r"etcd Version: 3\.6\.\d+", etcd), etcd
    helm = subprocess.run(
        [str(bin_dir / "helm"), "version", "--short"], capture_output=True, text=True, check=True
    ).stdout
    assert re.fullmatch(r"v3\.\d+\.\d+\S*\s*", helm), helm


def test_a_custom_resource_is_stored_and_read_back_through_kubectl_get(
    cluster: Cluster, namespace: str
) -> None:
    # CRDs are cluster-wide: a per-run group keeps parallel or repeated runs apart.
    group = f"e2e{uuid.uuid4().hex[:8]}.corral.dev"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "spec": {
                                    "type": "object",
                                    "properties": {"size": {"type": "integer", "minimum": 1}},
                                    "required": ["size"],
                                }
                            },
                        }
                    },
                    "additionalPrinterColumns": [
                        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"}
                    ],
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(crd))
    try:
        cluster.kubectl(
            "wait", "--for=condition=Established", f"crd/widgets.{group}", "--timeout=60s"
        )
        widget = {
            "apiVersion": f"{group}/v1",
            "kind": "Widget",
            "metadata": {"name": "blue", "namespace": namespace},
            "spec": {"size": 7},
        }
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(widget))

        table = cluster.kubectl("get", f"widgets.{group}", "-n", namespace).stdout
        assert re.search(r"^blue\s+7\s", table, re.MULTILINE), table
        stored = cluster.kubectl_json("get", f"widgets.{group}", "blue", "-n", namespace)
        assert stored["spec"] == {"size": 7}

        # The schema is enforced by the server, not just recorded.
        invalid = dict(widget, metadata={"name": "tiny", "namespace": namespace}, spec={"size": 0})
        rejected = cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(invalid), check=False)
        assert rejected.returncode != 0
        assert "spec.size" in rejected.stderr, rejected.stderr
    finally:
        cluster.kubectl("delete", "crd", f"widgets.{group}", "--wait=false", check=False)


def test_a_deployment_gets_a_replicaset_and_pods_that_stay_pending_without_a_matching_node(
    cluster: Cluster, namespace: str
) -> None:
    deployment = deployment_manifest(
        "web",
        2,
        {"name": "web", "image": "example.invalid/web:1"},
        # Other e2e tests register nodes; this selector matches none of them,
        # so the pods stay Pending whatever else runs in the cluster.
        nodeSelector={"corral.dev/e2e-no-such-node": "true"},
    )
    deployment["metadata"]["namespace"] = namespace
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(deployment))

    def replicasets() -> list[dict[str, Any]]:
        return list(cluster.kubectl_json("get", "replicasets", "-n", namespace)["items"])

    rs = _eventually(replicasets, "the ReplicaSet of deployment/web")[0]
    owner = rs["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Deployment", "web")

    def unschedulable_pods() -> list[dict[str, Any]]:
        pods: list[dict[str, Any]] = cluster.kubectl_json("get", "pods", "-n", namespace)["items"]
        done = [
            p
            for p in pods
            if any(
                c["type"] == "PodScheduled"
                and c["status"] == "False"
                and c.get("reason") == "Unschedulable"
                for c in p.get("status", {}).get("conditions", [])
            )
        ]
        return done if len(done) == 2 else []

    # PodScheduled=False/Unschedulable is written by the scheduler: both components acted.
    pods = _eventually(unschedulable_pods, "two pods the scheduler marked Unschedulable")
    for pod in pods:
        assert pod["status"]["phase"] == "Pending"
        assert pod["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"]
        assert "nodeName" not in pod["spec"]


def test_a_service_account_without_rbac_is_denied_until_a_role_binding_grants_it(
    cluster: Cluster, namespace: str, tmp_path: Path
) -> None:
    cluster.kubectl("create", "serviceaccount", "robot", "-n", namespace)
    user = f"system:serviceaccount:{namespace}:robot"

    can_i = cluster.kubectl(
        "auth", "can-i", "list", "pods", "-n", namespace, "--as", user, check=False
    )
    assert (can_i.returncode, can_i.stdout.strip()) == (1, "no")

    # A real request with the account's own token: authenticated, then forbidden.
    token = cluster.kubectl("create", "token", "robot", "-n", namespace).stdout.strip()
    admin = yaml.safe_load(
        cluster.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "yaml").stdout
    )
    robot_kubeconfig = tmp_path / "robot.kubeconfig"
    robot_kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": admin["clusters"],
                "users": [{"name": "robot", "user": {"token": token}}],
                "contexts": [
                    {
                        "name": "robot",
                        "context": {"cluster": admin["clusters"][0]["name"], "user": "robot"},
                    }
                ],
                "current-context": "robot",
            }
        )
    )
    denied = cluster.kubectl(
        "get", "pods", "-n", namespace, kubeconfig=robot_kubeconfig, check=False
    )
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr and user in denied.stderr, denied.stderr

    cluster.kubectl(
        "create", "role", "pod-reader", "--verb=list", "--resource=pods", "-n", namespace
    )
    cluster.kubectl(
        "create", "rolebinding", "robot-reads-pods", "--role=pod-reader",
        f"--serviceaccount={namespace}:robot", "-n", namespace,
    )  # fmt: skip
    allowed = _eventually(
        lambda: (
            cluster.kubectl(
                "get", "pods", "-n", namespace, kubeconfig=robot_kubeconfig, check=False
            ).returncode
            == 0
        ),
        "the RoleBinding to take effect",
        timeout_s=30,
    )
    assert allowed
    # Only what the Role names: the account still may not read secrets.
    secrets = cluster.kubectl(
        "get", "secrets", "-n", namespace, kubeconfig=robot_kubeconfig, check=False
    )
    assert secrets.returncode != 0 and "Forbidden" in secrets.stderr

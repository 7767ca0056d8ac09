"""The chart's web dashboard (`dashboard.enabled`) against a real API server:
its objects are accepted, its pod passes the restricted Pod Security Standard
like the operator's, and its ServiceAccount may list WorkerPools and Events
and nothing else."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from corral_local.localcluster import Cluster
from tests.e2e._corral import dry_run_pod
from tests.e2e.test_chart import _cluster_objects_deleted, _render, _restricted_namespace


@pytest.fixture
def dashboard(cluster: Cluster, namespace: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _restricted_namespace(cluster, namespace)
    name = f"d{uuid.uuid4().hex[:8]}"
    docs = _render(
        name, namespace, "dashboard.enabled=true", "database.url=postgresql://c:pw@db:5432/c"
    )
    mine = [d for d in docs if d["metadata"]["name"].startswith(f"{name}-corral-web")]
    with _cluster_objects_deleted(cluster, mine):
        yield name, mine


def test_the_dashboard_is_off_by_default() -> None:
    docs = _render("t", "corral")
    assert not [d for d in docs if d["metadata"]["name"].startswith("t-corral-web")]


def test_the_dashboard_pod_is_restricted_and_its_objects_accepted(
    cluster: Cluster, namespace: str, dashboard: tuple[str, list[dict[str, Any]]]
) -> None:
    name, docs = dashboard
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "Secret", "Service", "ServiceAccount",
    ]  # fmt: skip
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in docs))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    spec = deployment["spec"]["template"]["spec"]
    args = spec["containers"][0]["args"]
    assert args[0] == "dashboard" and "--password-file=/etc/corral-dashboard/password" in args
    result = dry_run_pod(cluster, namespace, f"{name}-web-probe", spec)
    assert result.returncode == 0, result.stderr


def _can_i(
    cluster: Cluster, namespace: str, dashboard: tuple[str, list[dict[str, Any]]], *what: str
) -> subprocess.CompletedProcess[str]:
    name, docs = dashboard
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")
    rbac = [d for d in docs if d["kind"] in kinds]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in rbac))
    account = f"system:serviceaccount:{namespace}:{name}-corral-web"
    return cluster.kubectl("auth", "can-i", *what, f"--as={account}", check=False)


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "workerpools.corral.dev", True),
        ("list", "events", True),
        # The Pools page only lists: no get by name, no watch.
        ("get", "workerpools.corral.dev", False),
        ("watch", "workerpools.corral.dev", False),
        ("get", "events", False),
        ("watch", "events", False),
        ("patch", "workerpools.corral.dev", False),
        ("delete", "workerpools.corral.dev", False),
        ("get", "secrets", False),
        ("list", "pods", False),
        ("create", "events", False),
    ],
)
def test_the_dashboard_may_only_read_pools_and_events(
    cluster: Cluster,
    namespace: str,
    dashboard: tuple[str, list[dict[str, Any]]],
    verb: str,
    resource: str,
    allowed: bool,
) -> None:
    result = _can_i(cluster, namespace, dashboard, verb, resource, "-A")
    assert (result.stdout.strip() == "yes") is allowed, (verb, resource, result.stdout)

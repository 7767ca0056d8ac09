"""The Helm chart against the built helm and a real API server: it lints and
renders with its defaults and with every values file under charts/corral/ci/,
the API server accepts every rendered object in a server-side dry run (the
Prometheus Operator's CRDs installed for the observability kit), it rejects
a mistyped value, the operator pod passes the restricted Pod Security
Standard, and its RBAC grants what the operator needs and no more."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral_local.localcluster import Cluster, default_bin_dir
from tests.e2e._corral import dry_run_pod, install_crds

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "corral"
# None: the chart's defaults.
CI_VALUES = [None, *sorted((CHART / "ci").glob("*.yaml"))]


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    helm = default_bin_dir() / "helm"
    assert helm.exists(), f"{helm} is missing: run `make cluster-bins`"
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _render(release: str, namespace: str, *sets: str) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    result = _helm(*args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def test_the_chart_lints_cleanly() -> None:
    result = _helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


def _values_id(values: Path | None) -> str:
    return "defaults" if values is None else values.name


def _values_args(values: Path | None) -> list[str]:
    return [] if values is None else ["-f", str(values)]


def monitoring_crds() -> list[Path]:
    """The Prometheus Operator's CRDs as `make monitoring-crds` fetched them."""
    pinned = re.search(
        r"^PROMETHEUS_OPERATOR_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE
    )
    assert pinned is not None, "the Makefile no longer pins PROMETHEUS_OPERATOR_VERSION"
    version = os.environ.get("PROMETHEUS_OPERATOR_VERSION") or pinned.group(1)
    cache = Path(os.environ.get("CORRAL_CACHE") or Path.home() / ".cache" / "corral")
    found = sorted((cache / f"prometheus-operator-v{version}" / "crds").glob("*.yaml"))
    assert len(found) == 3, "the Prometheus Operator's CRDs are missing: run `make monitoring-crds`"
    return found


def test_there_are_ci_values_files_for_the_optional_parts() -> None:
    assert len(CI_VALUES) >= 3, CI_VALUES


@pytest.mark.parametrize("values", CI_VALUES, ids=_values_id)
def test_the_chart_lints_with_every_ci_values_file(values: Path | None) -> None:
    result = _helm("lint", "--strict", str(CHART), *_values_args(values))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", CI_VALUES, ids=_values_id)
def test_every_ci_values_file_renders_objects_the_api_server_accepts(
    cluster: Cluster, namespace: str, values: Path | None
) -> None:
    install_crds(cluster)
    for crd in monitoring_crds():
        cluster.kubectl("apply", "--server-side", "-f", str(crd))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        *[f"-f={crd}" for crd in monitoring_crds()],
    )  # fmt: skip
    result = _helm(
        "template", "ci", str(CHART), "--namespace", namespace, "--include-crds",
        "--set", "database.url=postgresql://corral:pw@db:5432/corral", *_values_args(values),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    stream = "\n---\n".join(json.dumps(doc) for doc in docs)
    applied = cluster.kubectl(
        "apply", "--dry-run=server", "--server-side", "--field-manager=helm", "-f", "-",
        input=stream, check=False,
    )  # fmt: skip
    assert applied.returncode == 0, applied.stderr
    # One line per object: every rendered object went through the server.
    assert len(applied.stdout.strip().splitlines()) == len(docs), applied.stdout


def test_the_operator_disruption_budget_is_off_by_default_and_takes_one_bound() -> None:
    assert not [d for d in _render("t", "corral") if d["kind"] == "PodDisruptionBudget"]
    (pdb,) = [
        d
        for d in _render("t", "corral", "podDisruptionBudget.enabled=true")
        if d["kind"] == "PodDisruptionBudget"
    ]
    assert pdb["spec"]["maxUnavailable"] == 1
    (deployment,) = [d for d in _render("t", "corral") if d["kind"] == "Deployment"]
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    both = _helm(
        "template", "t", str(CHART), "--set", "podDisruptionBudget.enabled=true",
        "--set", "podDisruptionBudget.minAvailable=1", "--set", "podDisruptionBudget.maxUnavailable=1",
    )  # fmt: skip
    assert both.returncode != 0
    assert "set minAvailable or maxUnavailable, not both" in both.stderr
    # 0 is a bound (no voluntary eviction at all), not "unset".
    for bound in ("maxUnavailable", "minAvailable"):
        (zero,) = [
            d["spec"]
            for d in _render(
                "t", "corral", "podDisruptionBudget.enabled=true", f"podDisruptionBudget.{bound}=0"
            )
            if d["kind"] == "PodDisruptionBudget"
        ]
        assert {k: zero[k] for k in ("minAvailable", "maxUnavailable") if k in zero} == {bound: 0}


def test_a_mistyped_value_is_rejected_by_name() -> None:
    result = _helm("template", "t", str(CHART), "--set", "replicaCont=2")
    assert result.returncode != 0
    assert "additional properties 'replicaCont' not allowed" in result.stderr


def test_watching_namespaces_binds_the_pool_rules_only_in_them() -> None:
    docs = _render("t", "corral", "watch.namespaces={jobs,batch}")
    bindings = [(d["kind"], d["metadata"].get("namespace")) for d in docs if "Binding" in d["kind"]]
    assert ("RoleBinding", "jobs") in bindings
    assert ("RoleBinding", "batch") in bindings
    pools = [d for d in docs if d["metadata"]["name"] == "t-corral-pools"]
    assert {d["kind"] for d in pools} == {"ClusterRole", "RoleBinding"}


def test_the_operator_gets_the_default_region_and_worker_image_settings() -> None:
    docs = _render("t", "corral", "defaultRegion.name=eu-west", "workerImage.tag=1.2.3")
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    env = {
        e["name"]: e.get("value")
        for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["CORRAL_DEFAULT_REGION"] == "eu-west"
    assert env["CORRAL_WORKER_IMAGE"] == "ghcr.io/corral-dev/corral-worker:1.2.3"


def _restricted_namespace(cluster: Cluster, namespace: str) -> None:
    """`namespace` held to the restricted Pod Security Standard, and the CRDs
    installed (the RBAC checks ask about workerpools: the API server must know
    the type)."""
    install_crds(cluster)
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )


@contextlib.contextmanager
def _cluster_objects_deleted(cluster: Cluster, docs: list[dict[str, Any]]) -> Iterator[None]:
    """For the block; then the ClusterRoles and ClusterRoleBindings among
    `docs` are deleted (namespaced objects go with the test's namespace)."""
    try:
        yield
    finally:
        for doc in docs:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                cluster.kubectl("delete", doc["kind"], doc["metadata"]["name"], check=False)


@pytest.fixture
def release(cluster: Cluster, namespace: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    _restricted_namespace(cluster, namespace)
    name = f"c{uuid.uuid4().hex[:8]}"
    docs = _render(name, namespace, "database.url=postgresql://corral:pw@db:5432/corral")
    with _cluster_objects_deleted(cluster, docs):
        yield name, docs


def test_the_rendered_chart_is_accepted_and_the_operator_pod_is_restricted(
    cluster: Cluster, namespace: str, release: tuple[str, list[dict[str, Any]]]
) -> None:
    name, docs = release
    stream = "\n---\n".join(json.dumps(doc) for doc in docs)
    cluster.kubectl("apply", "-f", "-", input=stream)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    result = dry_run_pod(
        cluster, namespace, f"{name}-probe", deployment["spec"]["template"]["spec"]
    )
    assert result.returncode == 0, result.stderr


def _operator_can_i(
    cluster: Cluster,
    namespace: str,
    release: tuple[str, list[dict[str, Any]]],
    verb: str,
    resource: str,
    where: str,
) -> subprocess.CompletedProcess[str]:
    """`kubectl auth can-i VERB RESOURCE -n WHERE` as the release's operator
    ServiceAccount, the release's RBAC applied first."""
    name, docs = release
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    rbac = [d for d in docs if d["kind"] in kinds]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in rbac))
    service_account = f"system:serviceaccount:{namespace}:{name}-corral"
    return cluster.kubectl(
        "auth", "can-i", verb, resource, "-n", where, f"--as={service_account}", check=False
    )


# (where, verb, resource, allowed): in the pools' namespace (the release's by
# default) Secrets and pods as pools need; elsewhere (a namespace with no
# pool) what reconciling needs; nothing more anywhere.
_CAN_I = [
    ("pools", "get", "secrets", True),
    ("pools", "create", "secrets", True),
    ("pools", "patch", "secrets", True),
    ("pools", "list", "pods", True),
    ("pools", "patch", "pods", True),
    ("pools", "delete", "pods", True),
    ("pools", "list", "secrets", False),
    ("pools", "watch", "secrets", False),
    ("pools", "update", "secrets", False),
    ("pools", "get", "pods", False),
    ("pools", "watch", "pods", False),
    ("elsewhere", "watch", "workerpools.corral.dev", True),
    ("elsewhere", "patch", "workerpools.corral.dev/status", True),
    ("elsewhere", "create", "deployments.apps", True),
    ("elsewhere", "patch", "deployments.apps", True),
    # Secrets and pods only where pools live (the release namespace by
    # default), never in a namespace it has no pool in.
    ("elsewhere", "create", "secrets", False),
    ("elsewhere", "get", "secrets", False),
    ("elsewhere", "delete", "pods", False),
    ("elsewhere", "list", "pods", False),
    ("elsewhere", "patch", "pods", False),
    ("elsewhere", "update", "deployments.apps", False),
    ("elsewhere", "update", "workerpools.corral.dev/status", False),
    ("elsewhere", "create", "poddisruptionbudgets.policy", True),
    ("elsewhere", "patch", "poddisruptionbudgets.policy", True),
    ("elsewhere", "create", "networkpolicies.networking.k8s.io", True),
    ("elsewhere", "patch", "networkpolicies.networking.k8s.io", True),
    ("elsewhere", "create", "events", True),
    ("elsewhere", "delete", "deployments.apps", False),
    ("elsewhere", "list", "secrets", False),
    ("elsewhere", "watch", "secrets", False),
    ("elsewhere", "delete", "secrets", False),
    ("elsewhere", "create", "configmaps", False),
    ("elsewhere", "create", "pods", False),
    ("elsewhere", "watch", "pods", False),
    ("elsewhere", "delete", "poddisruptionbudgets.policy", False),
    ("elsewhere", "delete", "networkpolicies.networking.k8s.io", False),
    ("elsewhere", "list", "networkpolicies.networking.k8s.io", False),
]


@pytest.mark.parametrize(("where", "verb", "resource", "allowed"), _CAN_I)
def test_the_operator_may_do_what_reconciling_needs_and_touch_secrets_and_pods_only_where_pools_live(
    cluster: Cluster,
    namespace: str,
    release: tuple[str, list[dict[str, Any]]],
    where: str,
    verb: str,
    resource: str,
    allowed: bool,
) -> None:
    """`where`: the pools' namespace (the release's), or one with no pool."""
    target = namespace if where == "pools" else "some-namespace"
    result = _operator_can_i(cluster, namespace, release, verb, resource, target)
    assert result.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, result.stderr)

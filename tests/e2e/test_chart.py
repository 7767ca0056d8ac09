"""The Helm chart against the built helm and a real API server: it lints and
renders with its defaults and with every values file under charts/corral/ci/,
the API server accepts every rendered object in a server-side dry run (the
Prometheus Operator's CRDs installed for the observability kit), it rejects
a mistyped value, the operator pod passes the restricted Pod Security
Standard, and its RBAC grants what the operator needs and no more: it writes
only where pools live (asked with `kubectl auth can-i`, and seen by running
the operator on the chart's ServiceAccount)."""

from __future__ import annotations

import contextlib
import functools
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
from tests.e2e._corral import (
    OperatorProcess,
    apply,
    delete_pools_then_stop,
    dry_run_pod,
    eventually,
    force_delete_pools,
    get_json,
    install_crds,
    pool_manifest,
)

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


_POOL_WRITES = {
    "": {"secrets", "pods"},
    "apps": {"deployments"},
    "policy": {"poddisruptionbudgets"},
    "networking.k8s.io": {"networkpolicies"},
}


def _cluster_wide_writes(docs: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) of every write on a pool's objects that a
    ClusterRoleBinding grants, i.e. in every namespace."""
    roles = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterRole"}
    found = set()
    for binding in (d for d in docs if d["kind"] == "ClusterRoleBinding"):
        for rule in roles[binding["roleRef"]["name"]].get("rules", []):
            for group in rule.get("apiGroups", []):
                for resource in set(rule.get("resources", [])) & _POOL_WRITES.get(group, set()):
                    for verb in set(rule["verbs"]) - {"get", "list", "watch"}:
                        found.add((group, resource, verb))
    return found


def _bound_in(docs: list[dict[str, Any]], role: str) -> set[str]:
    return {
        d["metadata"]["namespace"]
        for d in docs
        if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == role
    }


@pytest.mark.parametrize(
    "sets",
    [(), ("watch.namespaces={jobs,batch}",), ("rbac.poolNamespaces={jobs}",)],
    ids=["defaults", "watch-namespaces", "pool-namespaces"],
)
def test_no_write_on_a_pools_objects_is_bound_cluster_wide_without_the_opt_in(
    sets: tuple[str, ...],
) -> None:
    docs = _render("t", "corral", *sets)
    assert _cluster_wide_writes(docs) == set()
    # Deployments, PDBs and NetworkPolicies are written exactly where Secrets are.
    where = _bound_in(docs, "t-corral-pool-secrets")
    assert where and _bound_in(docs, "t-corral-pool-objects") == where


def test_the_cluster_wide_opt_in_opens_the_pools_objects_with_their_secrets() -> None:
    docs = _render("t", "corral", "rbac.clusterWideSecrets=true")
    writes = _cluster_wide_writes(docs)
    assert ("apps", "deployments", "patch") in writes
    assert ("", "secrets", "create") in writes
    assert not [d for d in docs if d["kind"] == "RoleBinding" and "pool-" in d["metadata"]["name"]]


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
    scope = ["--all-namespaces"] if where == "*" else ["-n", where]
    # "TYPE:SUB" asks about a subresource ("TYPE/NAME" would be an object's name).
    resource, _, subresource = resource.partition(":")
    if subresource:
        scope.append(f"--subresource={subresource}")
    return cluster.kubectl(
        "auth", "can-i", verb, resource, *scope, f"--as={service_account}", check=False
    )


# (where, verb, resource, allowed): in the pools' namespace (the release's by
# default) the writes pools need; elsewhere (a namespace with no pool,
# kube-system, or "*": every namespace at once) only what watching pools
# needs; nothing more anywhere.
_CAN_I = [
    # A pool's own objects are written in the pools' namespaces only: a
    # Deployment it could apply in kube-system could mount any Secret there
    # and run as any ServiceAccount.
    ("pools", "create", "deployments.apps", True),
    ("pools", "patch", "deployments.apps", True),
    ("pools", "create", "poddisruptionbudgets.policy", True),
    ("pools", "patch", "poddisruptionbudgets.policy", True),
    ("pools", "create", "networkpolicies.networking.k8s.io", True),
    ("pools", "patch", "networkpolicies.networking.k8s.io", True),
    ("kube-system", "patch", "deployments.apps", False),
    ("kube-system", "create", "deployments.apps", False),
    ("kube-system", "create", "poddisruptionbudgets.policy", False),
    ("kube-system", "patch", "networkpolicies.networking.k8s.io", False),
    ("*", "patch", "deployments.apps", False),
    ("*", "create", "deployments.apps", False),
    # Deployments are read wherever pools are watched (kopf watches them).
    ("*", "list", "deployments.apps", True),
    ("*", "watch", "deployments.apps", True),
    ("*", "watch", "workerpools.corral.dev", True),
    ("elsewhere", "get", "deployments.apps", True),
    # Verbs nothing calls (kopf 1.45 and corral.kube checked): kopf lists and
    # watches CRDs, both post core Events, status is patched and never read
    # on its own, PDBs and NetworkPolicies are applied and never read back.
    ("*", "list", "customresourcedefinitions.apiextensions.k8s.io", True),
    ("*", "watch", "customresourcedefinitions.apiextensions.k8s.io", True),
    ("*", "get", "customresourcedefinitions.apiextensions.k8s.io", False),
    ("*", "create", "events", True),
    ("*", "create", "events.events.k8s.io", False),
    ("*", "patch", "regions.corral.dev:status", True),
    ("*", "get", "regions.corral.dev:status", False),
    ("*", "get", "regions.corral.dev", True),
    ("*", "get", "workerpools.corral.dev", True),
    ("*", "get", "workerpools.corral.dev:status", False),
    ("pools", "get", "poddisruptionbudgets.policy", False),
    ("pools", "get", "networkpolicies.networking.k8s.io", False),
    # Leader election: renewal is a PUT (update) of its own Lease; no patch.
    ("pools", "get", "leases.coordination.k8s.io/{lease}", True),
    ("pools", "update", "leases.coordination.k8s.io/{lease}", True),
    ("pools", "patch", "leases.coordination.k8s.io/{lease}", False),
    ("pools", "update", "leases.coordination.k8s.io/another-lease", False),
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
    ("elsewhere", "patch", "workerpools.corral.dev:status", True),
    ("elsewhere", "create", "deployments.apps", False),
    ("elsewhere", "patch", "deployments.apps", False),
    # Secrets and pods only where pools live (the release namespace by
    # default), never in a namespace it has no pool in.
    ("elsewhere", "create", "secrets", False),
    ("elsewhere", "get", "secrets", False),
    ("elsewhere", "delete", "pods", False),
    ("elsewhere", "list", "pods", False),
    ("elsewhere", "patch", "pods", False),
    ("elsewhere", "update", "deployments.apps", False),
    ("elsewhere", "update", "workerpools.corral.dev:status", False),
    ("elsewhere", "create", "poddisruptionbudgets.policy", False),
    ("elsewhere", "patch", "poddisruptionbudgets.policy", False),
    ("elsewhere", "create", "networkpolicies.networking.k8s.io", False),
    ("elsewhere", "patch", "networkpolicies.networking.k8s.io", False),
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
def test_the_operator_may_do_what_reconciling_needs_and_write_only_where_pools_live(
    cluster: Cluster,
    namespace: str,
    release: tuple[str, list[dict[str, Any]]],
    where: str,
    verb: str,
    resource: str,
    allowed: bool,
) -> None:
    """`where`: the pools' namespace (the release's), one with no pool,
    kube-system, or every namespace ("*")."""
    target = {"pools": namespace, "elsewhere": "some-namespace"}.get(where, where)
    resource = resource.format(lease=f"{release[0]}-corral-leader")
    result = _operator_can_i(cluster, namespace, release, verb, resource, target)
    assert result.stdout.strip() == ("yes" if allowed else "no"), (verb, resource, result.stderr)


def _service_account_kubeconfig(cluster: Cluster, namespace: str, account: str, path: Path) -> Path:
    """A kubeconfig for the cluster of `cluster.kubeconfig` that authenticates
    as ServiceAccount `namespace/account` (a bound token, as in a pod)."""
    token = cluster.kubectl(
        "create", "token", account, "-n", namespace, "--duration=1h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c["context"] for c in admin["contexts"] if c["name"] == admin["current-context"])
    entry = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [entry],
                "users": [{"name": account, "user": {"token": token}}],
                "contexts": [
                    {"name": account, "context": {"cluster": entry["name"], "user": account}}
                ],
                "current-context": account,
            }
        )
    )
    return path


def _status(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    pool = get_json(cluster, "workerpool", name, "-n", namespace) or {}
    status: dict[str, Any] = pool.get("status") or {}
    return status


def _condition_reasons(cluster: Cluster, namespace: str, name: str) -> set[str]:
    return {c.get("reason", "") for c in _status(cluster, namespace, name).get("conditions", [])}


@pytest.mark.timeout(300)
def test_the_operator_reconciles_on_the_charts_rbac_and_writes_nothing_where_no_pool_may_live(
    cluster: Cluster,
    namespace: str,
    release: tuple[str, list[dict[str, Any]]],
    database_url: str,
    region: str,
    tmp_path: Path,
) -> None:
    """`corral operator` authenticated as the chart's ServiceAccount with the
    default values' RBAC (pools read through a ClusterRoleBinding, written
    only in the release namespace), watching the release namespace and one
    more: the pool in the release namespace gets its Deployment, PDB,
    NetworkPolicy, Secret and status, the leader Lease is created and renewed
    (a PUT), the default Region created; the pool in the other namespace is
    Degraded (SecretsForbidden) and nothing is written there."""
    name, docs = release
    kinds = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
    rbac = [d for d in docs if d["kind"] in kinds]
    cluster.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(d) for d in rbac))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    lease = {e["name"]: e.get("value") for e in container["env"]}["CORRAL_LEADER_LEASE"]
    assert lease
    kubeconfig = _service_account_kubeconfig(
        cluster, namespace, f"{name}-corral", tmp_path / "operator.kubeconfig"
    )
    other = f"nopool-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", other)
    process = OperatorProcess(
        cluster, database_url, tmp_path / "operator.log",
        "--kubeconfig", str(kubeconfig), "--namespace", f"{namespace},{other}",
        "--operator-namespace", namespace, "--leader-lease", lease,
        "--default-region", region,
    )  # fmt: skip
    try:
        apply(cluster, pool_manifest("email", ["email"], 1, 2), namespace)
        apply(cluster, pool_manifest("email", ["email"], 1, 2), other)
        for kind, written in [
            ("deployment", "email"),
            ("secret", "email-enrollment"),
            ("poddisruptionbudget", "email"),
            ("networkpolicy", "email"),
        ]:
            eventually(
                functools.partial(get_json, cluster, kind, written, "-n", namespace),
                f"the pool's {kind}",
                timeout_s=90,
            )
        eventually(
            lambda: _status(cluster, namespace, "email").get("desiredReplicas") == 1,
            "the pool's status",
            timeout_s=60,
        )
        assert get_json(cluster, "region", region) is not None, process.log()
        eventually(
            lambda: "SecretsForbidden" in _condition_reasons(cluster, other, "email"),
            "the pool where no pool may live Degraded (SecretsForbidden)",
            timeout_s=60,
        )
        for kind in ("deployments", "secrets", "poddisruptionbudgets", "networkpolicies"):
            listed = cluster.kubectl("get", kind, "-n", other, "-o", "name").stdout
            assert "email" not in listed, (kind, listed)
        # Renewal is a PUT of the Lease: its renewTime moves while it leads.
        held = get_json(cluster, "lease", lease, "-n", namespace)
        assert held is not None, process.log()
        first = held["spec"]["renewTime"]
        eventually(
            lambda: (
                (get_json(cluster, "lease", lease, "-n", namespace) or {})
                .get("spec", {})
                .get("renewTime")
                != first
            ),
            "a renewal of the leader Lease",
            timeout_s=30,
        )
        # Nothing it did in the pools' namespace, or cluster-wide, was refused.
        log = process.log()
        refused = [
            line for line in log.splitlines()
            if ("403" in line or "forbidden" in line.lower()) and other not in line
            and "SecretsForbidden" not in line
        ]  # fmt: skip
        assert refused == [], log
        assert process.proc.poll() is None, log
    finally:
        force_delete_pools(cluster, other)
        cluster.kubectl("delete", "namespace", other, "--wait=false", check=False)
        delete_pools_then_stop(cluster, namespace, process)

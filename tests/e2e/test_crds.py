"""The generated CRDs on a real kube-apiserver: they install, the API server
fills the defaults, and it rejects invalid manifests with messages that name
the field (schema and CEL rules, no operator needed)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral_local.localcluster import Cluster

ROOT = Path(__file__).resolve().parents[2]


def _pool(name: str = "email", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"queues": ["email"], **spec},
    }


def _apply(
    cluster: Cluster, namespace: str, body: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    return cluster.kubectl(
        "apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(body), check=False
    )


def _spec(cluster: Cluster, namespace: str, name: str = "email") -> dict[str, Any]:
    body = json.loads(
        cluster.kubectl("get", "workerpool", name, "-n", namespace, "-o", "json").stdout
    )
    spec: dict[str, Any] = body["spec"]
    return spec


def _rejected(cluster: Cluster, namespace: str, body: dict[str, Any]) -> str:
    result = _apply(cluster, namespace, body)
    assert result.returncode != 0, f"accepted: {body}"
    return result.stderr


@pytest.mark.usefixtures("crds")
def test_the_api_server_fills_every_default_of_a_minimal_pool(
    cluster: Cluster, namespace: str
) -> None:
    assert _apply(cluster, namespace, _pool()).returncode == 0
    spec = _spec(cluster, namespace)
    assert spec["replicas"] == {"min": 1, "max": 10}
    assert spec["autoscaling"]["jobsPerWorker"] == 20
    assert spec["drain"] == {"timeoutSeconds": 300}
    assert spec["enrollment"] == {"tokenTTLSeconds": 86400}
    assert spec["concurrency"] == 10


@pytest.mark.usefixtures("crds")
def test_min_above_max_is_rejected_naming_both_fields(cluster: Cluster, namespace: str) -> None:
    error = _rejected(cluster, namespace, _pool(replicas={"min": 5, "max": 2}))
    assert "spec.replicas.min must not exceed spec.replicas.max" in error
    assert "raise replicas.max" in error


@pytest.mark.usefixtures("crds")
def test_empty_queues_are_rejected_naming_the_field(cluster: Cluster, namespace: str) -> None:
    assert "spec.queues" in _rejected(cluster, namespace, _pool(queues=[]))


@pytest.mark.usefixtures("crds")
def test_zero_concurrency_is_rejected_naming_the_field(cluster: Cluster, namespace: str) -> None:
    assert "spec.concurrency" in _rejected(cluster, namespace, _pool(concurrency=0))


@pytest.mark.usefixtures("crds")
def test_an_unknown_field_is_rejected_naming_it(cluster: Cluster, namespace: str) -> None:
    error = _rejected(cluster, namespace, _pool(replica={"min": 1}))
    assert 'unknown field "spec.replica"' in error


@pytest.mark.usefixtures("crds")
def test_a_malformed_region_name_is_rejected(cluster: Cluster, namespace: str) -> None:
    assert "spec.region" in _rejected(cluster, namespace, _pool(region="EU_West"))


@pytest.mark.usefixtures("crds")
def test_a_pool_name_that_is_not_a_dns_label_is_rejected(cluster: Cluster, namespace: str) -> None:
    error = _rejected(cluster, namespace, _pool(name="email.workers"))
    assert "metadata.name must be a DNS label" in error


@pytest.mark.usefixtures("crds")
def test_template_env_cannot_override_the_operators_variables(
    cluster: Cluster, namespace: str
) -> None:
    body = _pool(template={"env": [{"name": "CORRAL_QUEUES", "value": "other"}]})
    assert "spec.template.env must not set" in _rejected(cluster, namespace, body)


@pytest.mark.usefixtures("crds")
def test_scaling_a_pool_moves_its_floor_and_refuses_to_pass_max(
    cluster: Cluster, namespace: str
) -> None:
    assert _apply(cluster, namespace, _pool(replicas={"min": 1, "max": 3})).returncode == 0
    cluster.kubectl("scale", "workerpool", "email", "-n", namespace, "--replicas=2")
    spec = _spec(cluster, namespace)
    assert spec["replicas"] == {"min": 2, "max": 3}
    refused = cluster.kubectl(
        "scale", "workerpool", "email", "-n", namespace, "--replicas=5", check=False
    )
    assert refused.returncode != 0
    assert "must not exceed spec.replicas.max" in refused.stderr


@pytest.mark.usefixtures("crds")
def test_kubectl_get_shows_the_documented_columns(cluster: Cluster, namespace: str) -> None:
    assert _apply(cluster, namespace, _pool()).returncode == 0
    header = cluster.kubectl("get", "wp", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "REGION", "QUEUES", "READY", "DESIRED", "DEPTH", "PHASE", "AGE"]
    wide = cluster.kubectl("get", "wp", "-n", namespace, "-o", "wide").stdout.splitlines()[0]
    for column in ("CONCURRENCY", "WORKERS", "RUNNING", "MIN", "MAX"):
        assert column in wide.split()


@pytest.mark.usefixtures("crds")
def test_the_examples_apply_cleanly(cluster: Cluster, namespace: str) -> None:
    region = yaml.safe_load((ROOT / "examples" / "region.yaml").read_text())
    region["metadata"]["name"] = f"rg-{namespace}"[:63].rstrip("-")
    try:
        assert _apply(cluster, namespace, region).returncode == 0
        pool = yaml.safe_load((ROOT / "examples" / "workerpool.yaml").read_text())
        pool["metadata"]["namespace"] = namespace
        result = _apply(cluster, namespace, pool)
        assert result.returncode == 0, result.stderr
        shown = cluster.kubectl("get", "rg", region["metadata"]["name"], "-o", "json").stdout
        assert json.loads(shown)["spec"]["location"]["latitude"] == 50.11
    finally:
        cluster.kubectl("delete", "region", region["metadata"]["name"], check=False)

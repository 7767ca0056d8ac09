"""The manifests `make deploy` applies on kind (examples/kind/), checked against
a real API server without running them (their images need a container
runtime): the server accepts every object, their pods pass the restricted Pod
Security Standard, and the throwaway database is marked as such and wired to
what the chart reads: the operator's URL, and the workers' URL of the worker
role the migrate Job creates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral_local.localcluster import Cluster
from tests.e2e._corral import dry_run_pod

KIND = Path(__file__).resolve().parents[2] / "examples" / "kind"
IMAGE = "ghcr.io/corral-dev/corral-operator:0.1.0"


def _docs(name: str) -> list[dict[str, Any]]:
    text = (KIND / name).read_text().replace("CORRAL_OPERATOR_IMAGE", IMAGE)
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _in(namespace: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    moved = []
    for doc in docs:
        if doc["kind"] == "Namespace":
            continue
        doc = json.loads(json.dumps(doc))
        doc["metadata"]["namespace"] = namespace
        moved.append(doc)
    return moved


@pytest.fixture
def restricted(cluster: Cluster, namespace: str) -> str:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    return namespace


def test_the_throwaway_database_says_so_and_lives_in_a_restricted_namespace() -> None:
    text = (KIND / "postgres.yaml").read_text()
    assert "NOT FOR PRODUCTION" in text
    (ns,) = [d for d in _docs("postgres.yaml") if d["kind"] == "Namespace"]
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    secrets = {d["metadata"]["name"]: d for d in _docs("postgres.yaml") if d["kind"] == "Secret"}
    # What `make deploy` hands the chart: database.secretName/secretKey.
    url = secrets["postgres-throwaway"]["stringData"]["url"]
    assert url.startswith("postgresql://corral:")
    assert "@postgres-throwaway.corral-system.svc.cluster.local:5432/corral" in url
    # And workerDatabase.secretName/secretKey: a worker role, never the
    # operator's URL, whose name and password the migrate Job uses.
    worker = secrets["corral-worker-database"]["stringData"]
    assert worker["url"] != url
    assert worker["url"] == (
        f"postgresql://{worker['role']}:{worker['password']}"
        "@postgres-throwaway.corral-system.svc.cluster.local:5432/corral"
    )


def test_the_migrate_job_creates_the_worker_role_of_the_workers_secret() -> None:
    (job,) = _docs("migrate.yaml")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    script = " ".join(container["args"])
    assert "corral db migrate &&" in script
    assert 'corral db create-worker-role "$CORRAL_WORKER_ROLE" --password-stdin' in script
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]}
    assert refs["CORRAL_DATABASE_URL"] == {"name": "postgres-throwaway", "key": "url"}
    assert refs["CORRAL_WORKER_ROLE"] == {"name": "corral-worker-database", "key": "role"}
    assert refs["CORRAL_WORKER_PASSWORD"] == {"name": "corral-worker-database", "key": "password"}


@pytest.mark.parametrize("manifest", ["postgres.yaml", "migrate.yaml"])
def test_the_api_server_accepts_the_manifests_and_their_pods_are_restricted(
    cluster: Cluster, restricted: str, manifest: str
) -> None:
    docs = _in(restricted, _docs(manifest))
    stream = "\n---\n".join(json.dumps(doc) for doc in docs)
    result = cluster.kubectl(
        "apply", "--dry-run=server", "-f", "-", input=stream, check=False
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    templates = [d for d in docs if d["kind"] in ("Deployment", "Job")]
    assert templates
    for owner in templates:
        probe = f"{owner['metadata']['name']}-probe"
        result = dry_run_pod(cluster, restricted, probe, owner["spec"]["template"]["spec"])
        assert result.returncode == 0, result.stderr

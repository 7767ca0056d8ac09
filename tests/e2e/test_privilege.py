"""Least privilege against the real API server and a real Postgres
(docs/security.md): the URL a pool's workers get is a worker role's that can
touch no table; a pool with none is Degraded saying what to create; the
operator refuses to take over a Deployment or Secret it does not own."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from corral.queue import PermissionDenied, Queue
from corral_local.localcluster import Cluster
from tests.e2e._corral import (
    OperatorProcess,
    apply,
    deployment_manifest,
    eventually,
    get_json,
    lone_operator,
    pool_manifest,
)


@pytest.fixture
def operator(
    crds: None, cluster: Cluster, namespace: str, database_url: str, region: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    log = tmp_path / "operator.log"
    with lone_operator(cluster, database_url, namespace, region, log) as process:
        yield process


def _condition(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    pool = get_json(cluster, "workerpool", name, "-n", namespace) or {}
    for condition in (pool.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Degraded" and condition.get("status") == "True":
            return dict(condition)
    return None


def _events(cluster: Cluster, namespace: str, reason: str) -> list[dict[str, Any]]:
    events = get_json(cluster, "events", "-n", namespace) or {}
    return [e for e in events.get("items") or [] if e.get("reason") == reason]


def test_the_url_in_a_pools_secret_is_a_worker_role_that_can_touch_no_table(
    cluster: Cluster, namespace: str, operator: OperatorProcess, database_url: str
) -> None:
    apply(cluster, pool_manifest("email", ["email"], 0, 2), namespace)
    secret = eventually(
        lambda: get_json(cluster, "secret", "email-enrollment", "-n", namespace),
        "the enrollment Secret",
    )
    url = base64.b64decode(secret["data"]["database-url"]).decode()
    assert url != database_url
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in (
            "SELECT * FROM corral_jobs",
            "UPDATE corral_workers SET credential_hash = credential_hash",
            "DELETE FROM corral_jobs_finished",
            "SELECT * FROM corral_enrollment_tokens",
            "CREATE TABLE corral_mine (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
    with Queue.connect(url) as worker, pytest.raises(PermissionDenied):
        worker.create_token("default", uses=1000)
    # ... and the token enrolls workers for the pool's queues only.
    token = base64.b64decode(secret["data"]["token"]).decode()
    with Queue.connect(database_url) as admin:
        [info] = [t for t in admin.list_tokens() if t.pool == f"{namespace}/email"]
    assert info.uses_remaining == 10
    with Queue.connect(url) as worker, pytest.raises(Exception, match="admits queues"):
        worker.enroll(token, name="thief", queues=["billing"], concurrency=1)


def test_a_pool_without_a_worker_database_is_degraded_saying_what_to_create(
    crds: None, cluster: Cluster, namespace: str, database_url: str, region: str, tmp_path: Path
) -> None:
    log = tmp_path / "operator.log"
    with lone_operator(
        cluster, database_url, namespace, region, log, worker_database_url=""
    ) as process:
        apply(cluster, pool_manifest("email", ["email"], 1, 2), namespace)
        condition = eventually(lambda: _condition(cluster, namespace, "email"), "the pool Degraded")
        assert condition["reason"] == "NoWorkerDatabase", process.log()
        assert "corral db create-worker-role" in condition["message"]
        assert get_json(cluster, "deployment", "email", "-n", namespace) is None
        secret = get_json(cluster, "secret", "email-enrollment", "-n", namespace) or {}
        assert "database-url" not in (secret.get("data") or {})
        assert eventually(lambda: _events(cluster, namespace, "NoWorkerDatabase"), "the Event")


def test_the_operator_refuses_to_adopt_a_foreign_deployment(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    theirs = deployment_manifest(
        "email", 0, {"name": "billing", "image": "billing:1"}, app="billing"
    )
    theirs["metadata"]["labels"] = {"app": "billing"}  # another app's, by the pool's name
    apply(cluster, theirs, namespace)
    apply(cluster, pool_manifest("email", ["email"], 2, 4), namespace)
    condition = eventually(lambda: _condition(cluster, namespace, "email"), "the pool Degraded")
    assert condition["reason"] == "ForeignDeployment", operator.log()
    assert f"Deployment {namespace}/email exists and is not owned" in condition["message"]
    [event] = eventually(lambda: _events(cluster, namespace, "ForeignDeployment"), "the Event")
    assert f"Deployment {namespace}/email" in event["message"]
    deployment = get_json(cluster, "deployment", "email", "-n", namespace) or {}
    assert deployment["spec"]["replicas"] == 0  # neither scaled
    assert not deployment["metadata"].get("ownerReferences")  # nor adopted
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "billing:1"

"""`corral operator` as a real process against the local control plane and a
real Postgres: pools become Deployments and enrollment Secrets, status tells
the truth, and the operator converges after restarts, hand edits, missing
Regions and deletions. (Running worker pods need the node agent; these tests
check everything the operator itself does.)"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.queue import Queue, hash_secret
from corral_local.localcluster import Cluster
from tests.e2e._corral import (
    OperatorProcess,
    apply,
    eventually,
    lone_operator,
    pool_manifest,
    recreated,
)
from tests.e2e._corral import get_json as _get


@pytest.fixture
def default_region(region: str) -> str:
    """The operator's --default-region: a fresh name the operator creates (conftest)."""
    return region


@pytest.fixture
def operator(
    crds: None,
    cluster: Cluster,
    namespace: str,
    database_url: str,
    default_region: str,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    log = tmp_path / "operator.log"
    with lone_operator(cluster, database_url, namespace, default_region, log) as process:
        yield process


def _apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    apply(cluster, body, namespace)


def _pool(name: str = "email", **spec: Any) -> dict[str, Any]:
    return pool_manifest(name, ["email"], 2, 4, **spec)


def _status(cluster: Cluster, namespace: str, name: str = "email") -> dict[str, Any]:
    pool = _get(cluster, "workerpool", name, "-n", namespace) or {}
    status: dict[str, Any] = pool.get("status") or {}
    return status


def test_the_operator_creates_the_default_region(
    cluster: Cluster, operator: OperatorProcess, default_region: str
) -> None:
    region = eventually(
        lambda: _get(cluster, "region", default_region), "the default Region", timeout_s=60
    )
    assert region["spec"]["displayName"] == "Default", operator.log()


def test_a_pool_gets_an_owned_deployment_an_enrollment_secret_and_a_true_status(
    cluster: Cluster, namespace: str, operator: OperatorProcess, database_url: str,
    default_region: str,
) -> None:  # fmt: skip
    _apply(cluster, namespace, _pool())
    deployment = eventually(
        lambda: _get(cluster, "deployment", "email", "-n", namespace), "the Deployment"
    )
    pool = _get(cluster, "workerpool", "email", "-n", namespace)
    assert pool is not None
    (owner,) = deployment["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (
        "WorkerPool",
        pool["metadata"]["uid"],
        True,
    )
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["CORRAL_REGION"]["value"] == default_region
    secret = eventually(
        lambda: _get(cluster, "secret", "email-enrollment", "-n", namespace), "the Secret"
    )
    token = base64.b64decode(secret["data"]["token"]).decode()
    with Queue.connect(database_url) as queue:
        (stored,) = [t for t in queue.list_tokens() if t.pool == f"{namespace}/email"]
    assert stored.region == default_region
    assert str(stored.id) == secret["metadata"]["annotations"]["corral.dev/token-id"]
    assert token.startswith(stored.display_prefix)
    assert hash_secret(token) != token  # only the hash is stored; the Secret holds the plaintext
    status = eventually(
        lambda: (s := _status(cluster, namespace)).get("ready") == "0/2" and s, "the status"
    )
    assert status["phase"] == "Pending"
    assert status["region"] == default_region
    assert status["desiredReplicas"] == 2
    assert status["queueDepth"] == 0
    assert status["observedGeneration"] == pool["metadata"]["generation"]
    table = cluster.kubectl("get", "wp", "-n", namespace).stdout
    assert default_region in table and "0/2" in table and "Pending" in table
    eventually(
        lambda: (
            "Deployment email with 2 worker(s)"
            in cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        ),
        "the Created event on the pool",
        timeout_s=30,
    )


def _deleted_by_hand(
    cluster: Cluster, namespace: str, kind: str, name: str, what: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The operator's `kind` `name` once it is there, deleted by hand, and the
    new one it makes in its place (another uid)."""
    first: dict[str, Any] = eventually(lambda: _get(cluster, kind, name, "-n", namespace), what)
    cluster.kubectl("delete", kind, name, "-n", namespace, "--wait=false")
    return first, recreated(cluster, namespace, kind, first, f"{what} to be re-created")


def test_a_hand_deleted_deployment_comes_back(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    _apply(cluster, namespace, _pool())
    _, again = _deleted_by_hand(cluster, namespace, "deployment", "email", "the Deployment")
    assert again["spec"]["replicas"] == 2, operator.log()


def test_a_hand_edit_of_the_deployment_is_taken_back(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    _apply(cluster, namespace, _pool(autoscaling={"enabled": False}))
    eventually(lambda: _get(cluster, "deployment", "email", "-n", namespace), "the Deployment")
    cluster.kubectl("scale", "deployment", "email", "-n", namespace, "--replicas=7")
    cluster.kubectl("set", "env", "deployment/email", "-n", namespace, "CORRAL_CONCURRENCY=99")

    def replicas_and_concurrency() -> tuple[int, str | None]:
        deployment = _get(cluster, "deployment", "email", "-n", namespace) or {}
        spec = deployment.get("spec", {})
        env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
        return spec.get("replicas"), env.get("CORRAL_CONCURRENCY")

    # The env comes back with the next apply; the replicas go down through
    # drains (seven pods starting, five of them drained before removal), which
    # on a loaded machine takes longer than the apply.
    try:
        eventually(
            lambda: replicas_and_concurrency() == (2, "10"),
            "replicas.min (2) and the pool's concurrency to be restored",
            timeout_s=90,
        )
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n{replicas_and_concurrency()}\n{operator.log()[-4000:]}"
        ) from None


def test_a_spec_change_rolls_the_deployment(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    _apply(cluster, namespace, _pool())
    eventually(lambda: _get(cluster, "deployment", "email", "-n", namespace), "the Deployment")
    _apply(cluster, namespace, _pool(concurrency=3))

    def concurrency() -> str | None:
        deployment = _get(cluster, "deployment", "email", "-n", namespace) or {}
        containers = (
            deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [{}])
        )
        env = {e["name"]: e.get("value") for e in containers[0].get("env", [])}
        return env.get("CORRAL_CONCURRENCY")

    eventually(lambda: concurrency() == "3", "CORRAL_CONCURRENCY=3 in the pod template")


def test_a_pool_in_a_missing_region_is_degraded_until_the_region_appears(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    region = f"rg-{uuid.uuid4().hex[:8]}"
    try:
        _apply(cluster, namespace, _pool(region=region))
        status = eventually(
            lambda: (s := _status(cluster, namespace)).get("phase") == "Degraded" and s,
            "the pool to be Degraded",
        )
        degraded = {c["type"]: c for c in status["conditions"]}["Degraded"]
        assert degraded["reason"] == "RegionNotFound"
        assert region in degraded["message"]
        assert _get(cluster, "deployment", "email", "-n", namespace) is None
        events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        assert "RegionNotFound" in events
        cluster.kubectl(
            "apply", "-f", "-",
            input=yaml.safe_dump({"apiVersion": "corral.dev/v1alpha1", "kind": "Region",
                                  "metadata": {"name": region}}),
        )  # fmt: skip
        eventually(
            lambda: _status(cluster, namespace).get("phase") == "Pending",
            "the pool to heal once its Region exists",
        )
        assert _get(cluster, "deployment", "email", "-n", namespace) is not None
    finally:
        cluster.kubectl("delete", "region", region, "--ignore-not-found", check=False)


def test_restarting_the_operator_converges_without_duplicates_or_a_new_token(
    cluster: Cluster, namespace: str, operator: OperatorProcess, database_url: str,
    default_region: str, tmp_path: Path,
) -> None:  # fmt: skip
    _apply(cluster, namespace, _pool())
    first = eventually(
        lambda: _get(cluster, "secret", "email-enrollment", "-n", namespace), "the Secret"
    )
    deployment = eventually(
        lambda: _get(cluster, "deployment", "email", "-n", namespace), "the Deployment"
    )
    assert operator.stop() == 0, operator.log()
    log = tmp_path / "second.log"
    with lone_operator(cluster, database_url, namespace, default_region, log) as second:
        eventually(lambda: "Resuming is processed" in second.log(), "the second operator to resume")
        cluster.kubectl(
            "annotate", "workerpool", "email", "-n", namespace, f"poke={uuid.uuid4().hex}"
        )
        eventually(lambda: second.log().count("pool_resync' succeeded") >= 2, "two resyncs")
        secret = _get(cluster, "secret", "email-enrollment", "-n", namespace)
        assert secret is not None
        assert secret["data"] == first["data"], second.log()
        again = _get(cluster, "deployment", "email", "-n", namespace)
        assert again is not None and again["metadata"]["uid"] == deployment["metadata"]["uid"]
        assert len(cluster.kubectl_json("get", "deployments", "-n", namespace)["items"]) == 1
        with Queue.connect(database_url) as queue:
            tokens = [t for t in queue.list_tokens() if t.pool == f"{namespace}/email"]
        assert len(tokens) == 1


def test_a_deleted_enrollment_secret_is_recreated_with_a_fresh_token(
    cluster: Cluster, namespace: str, operator: OperatorProcess
) -> None:
    _apply(cluster, namespace, _pool())
    first, again = _deleted_by_hand(cluster, namespace, "secret", "email-enrollment", "the Secret")
    assert again["data"]["token"] != first["data"]["token"]


def test_deleting_a_pool_revokes_its_token_and_removes_what_it_owns(
    cluster: Cluster, namespace: str, operator: OperatorProcess, database_url: str
) -> None:
    _apply(cluster, namespace, _pool())
    eventually(lambda: _get(cluster, "secret", "email-enrollment", "-n", namespace), "the Secret")
    eventually(lambda: _get(cluster, "deployment", "email", "-n", namespace), "the Deployment")
    cluster.kubectl("delete", "workerpool", "email", "-n", namespace, "--timeout=60s")
    with Queue.connect(database_url) as queue:
        tokens = [
            t for t in queue.list_tokens(include_unusable=True) if t.pool == f"{namespace}/email"
        ]
    assert tokens and all(t.revoked_at is not None for t in tokens), operator.log()
    eventually(
        lambda: (
            _get(cluster, "deployment", "email", "-n", namespace) is None
            and _get(cluster, "secret", "email-enrollment", "-n", namespace) is None
        ),
        "the garbage collector to remove the Deployment and Secret",
    )


def _table(cluster: Cluster, *args: str) -> list[dict[str, str]]:
    """A `kubectl get` table as one {COLUMN: cell} per row."""
    lines = cluster.kubectl("get", *args).stdout.splitlines()
    header = lines[0].split()
    return [dict(zip(header, line.split(), strict=True)) for line in lines[1:]]


def test_kubectl_get_workerpools_shows_queues_comma_separated_under_its_short_name(
    cluster: Cluster, namespace: str, operator: OperatorProcess, default_region: str
) -> None:
    _apply(cluster, namespace, pool_manifest("mail", ["default", "email"], 1, 3, paused=True))
    eventually(lambda: _status(cluster, namespace, "mail").get("queuesText"), "the pool's status")
    (row,) = _table(cluster, "workerpools", "-n", namespace)
    assert list(row) == ["NAME", "REGION", "QUEUES", "READY", "DESIRED", "DEPTH", "PHASE", "AGE"]
    assert row["NAME"] == "mail"
    assert row["QUEUES"] == "default,email", operator.log()
    assert (row["REGION"], row["READY"], row["DESIRED"], row["DEPTH"], row["PHASE"]) == (
        default_region, "0/0", "0", "0", "Paused",
    )  # fmt: skip
    (wide,) = _table(cluster, "wp", "-n", namespace, "-o", "wide")
    assert {k: wide[k] for k in row if k != "AGE"} == {k: row[k] for k in row if k != "AGE"}
    assert (wide["CONCURRENCY"], wide["MIN"], wide["MAX"], wide["AUTOSCALING"]) == (
        "10", "1", "3", "true",  # the defaults: autoscaling is on unless turned off
    )  # fmt: skip
    # The `corral` category: one command lists every corral object.
    listed = cluster.kubectl("get", "corral", "-n", namespace, "-o", "name").stdout.split()
    assert "workerpool.corral.dev/mail" in listed
    assert f"region.corral.dev/{default_region}" in listed

"""`corral operator` as a process: what an installation relies on besides the
reconcile itself. Two replicas share one leader Lease and the standby takes
over when the leader dies; `/metrics` shows reconciles and each pool's depth
and replicas, `/healthz` answers; a database outage shows on the pool as
Degraded (without the password) and heals when the database is back.

No worker pods run here (no node agent needed): every figure checked is the
operator's own.
"""

from __future__ import annotations

import re
import signal
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import queue as corral_queue
from corral.queue import JobSpec, Queue, roles
from corral_local.localcluster import Cluster
from corral_local.postgres import PostgresServer, free_port
from tests.e2e._corral import (
    E2E_WORKER_PASSWORD,
    E2E_WORKER_ROLE,
    OperatorProcess,
    OperatorProcesses,
    apply,
    as_worker_url,
    eventually,
    force_delete_pools,
    pool_manifest,
    recreated,
)
from tests.e2e._corral import get_json as _get


class Running(OperatorProcesses):
    """Operator processes a test started; all stopped (pools first) at its end."""

    def start(
        self, database_url: str, *args: str, worker_database_url: str | None = None
    ) -> tuple[OperatorProcess, int]:
        """Start one operator; returns it and the port of its /metrics and /healthz."""
        port = free_port()
        process = self.launch(
            database_url, "--http-port", str(port), *args, worker_database_url=worker_database_url
        )
        return process, port

    def stop_all(self) -> None:
        # These pools' pods never reach a database, so draining them on the way
        # out would only wait for grace periods: drop the finalizer instead.
        for process in self.started:
            process.stop()
        force_delete_pools(self.cluster, self.namespace)


@pytest.fixture
def operators(
    crds: None, cluster: Cluster, namespace: str, region: str, tmp_path: Path
) -> Iterator[Running]:
    running = Running(cluster, namespace, region, tmp_path)
    yield running
    running.stop_all()


def _apply(cluster: Cluster, namespace: str, body: dict[str, Any]) -> None:
    apply(cluster, body, namespace)


def _pool(name: str, queues: list[str], replicas: int) -> dict[str, Any]:
    return pool_manifest(name, queues, replicas, replicas)


def _http(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of `name` whose labels include `labels`."""
    for line in text.splitlines():
        match = re.fullmatch(r"([a-zA-Z_:]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(match.group(3))
    return None


def _deployment(cluster: Cluster, namespace: str, name: str) -> dict[str, Any] | None:
    return _get(cluster, "deployment", name, "-n", namespace)


def test_two_replicas_elect_one_leader_and_the_standby_takes_over_when_the_leader_dies(
    cluster: Cluster, namespace: str, operators: Running, database_url: str
) -> None:
    lease = f"corral-leader-{uuid.uuid4().hex[:6]}"
    election = ["--leader-lease", lease, "--operator-namespace", namespace]
    first, first_port = operators.start(database_url, *election, "--identity", "replica-a")
    eventually(lambda: "leading as replica-a" in first.log(), "replica-a to lead", timeout_s=30)
    second, second_port = operators.start(database_url, *election, "--identity", "replica-b")
    eventually(lambda: "standing by" in second.log(), "replica-b to stand by", timeout_s=30)

    eventually(lambda: _http(second_port, "/healthz")[0] == 200, "the standby's /healthz")
    assert _metric(_http(first_port, "/metrics")[1], "corral_operator_leader") == 1.0
    assert _metric(_http(second_port, "/metrics")[1], "corral_operator_leader") == 0.0

    _apply(cluster, namespace, _pool("ha", ["ha"], 1))
    before = eventually(lambda: _deployment(cluster, namespace, "ha"), "the leader's Deployment")
    assert "WorkerPool" not in second.log(), "the standby must not reconcile"

    first.stop(signal.SIGKILL)  # a crash: the Lease is not released, it has to run out
    eventually(
        lambda: "leading as replica-b" in second.log(),
        "replica-b to take over once the Lease runs out",
        timeout_s=45,
    )
    holder = (_get(cluster, "lease", lease, "-n", namespace) or {})["spec"]["holderIdentity"]
    assert holder == "replica-b"
    assert _metric(_http(second_port, "/metrics")[1], "corral_operator_leader") == 1.0

    # The new leader reconciles: a hand-deleted Deployment comes back.
    cluster.kubectl("delete", "deployment", "ha", "-n", namespace, "--wait=false")
    again = recreated(
        cluster, namespace, "deployment", before, "the new leader to re-create the Deployment"
    )
    assert again["spec"]["replicas"] == 1, second.log()


def test_a_leader_stopped_cleanly_hands_its_lease_over_at_once(
    cluster: Cluster, namespace: str, operators: Running, database_url: str
) -> None:
    lease = f"corral-leader-{uuid.uuid4().hex[:6]}"
    election = ["--leader-lease", lease, "--operator-namespace", namespace]
    first, _ = operators.start(database_url, *election, "--identity", "replica-a")
    eventually(lambda: "leading as replica-a" in first.log(), "replica-a to lead", timeout_s=30)
    second, _ = operators.start(database_url, *election, "--identity", "replica-b")
    eventually(lambda: "standing by" in second.log(), "replica-b to stand by", timeout_s=30)

    assert first.stop(signal.SIGTERM) == 0, first.log()  # a rollout's stop
    # Read at once: a Lease left to run out would still name replica-a for
    # 15 s; released, it is free (or replica-b has taken it already).
    holder = (_get(cluster, "lease", lease, "-n", namespace) or {})["spec"]["holderIdentity"]
    assert holder in ("", "replica-b"), first.log()
    assert "released the leader Lease" in first.log()
    eventually(lambda: "leading as replica-b" in second.log(), "replica-b to lead", timeout_s=30)


def test_metrics_show_reconciles_and_each_pools_depth_and_replicas(
    cluster: Cluster, namespace: str, operators: Running, database_url: str, region: str
) -> None:
    with Queue.connect(database_url) as queue:
        queue.enqueue_many(JobSpec("noop", queue="reports") for _ in range(7))
        queue.enqueue(
            "noop", queue="reports", region=f"not-{region}", allow_empty_region=True
        )  # another region's job, where nothing runs it
        queue.enqueue("noop", queue="other")  # another queue's job
    operator, port = operators.start(database_url, "--leader-lease", "")
    _apply(cluster, namespace, _pool("reports", ["reports"], 3))

    def figures() -> dict[str, float | None] | None:
        text = _http(port, "/metrics")[1]
        found = {
            "depth": _metric(text, "corral_pool_queue_depth", namespace=namespace, pool="reports"),
            "desired": _metric(
                text, "corral_pool_replicas", namespace=namespace, pool="reports", which="desired"
            ),
            "ok": _metric(
                text, "corral_operator_reconciles_total", kind="WorkerPool", outcome="ok"
            ),
            "regions": _metric(
                text, "corral_operator_reconciles_total", kind="Region", outcome="ok"
            ),
        }
        return found if found["depth"] == 7 and found["desired"] == 3 else None

    found = eventually(figures, "depth 7 and 3 desired replicas in /metrics", timeout_s=30)
    assert found["ok"] is not None and found["ok"] >= 1, operator.log()
    assert found["regions"] is not None and found["regions"] >= 1
    status, body = _http(port, "/healthz")
    assert (status, body.strip()) == (200, "ok")
    assert _http(port, "/nothing-here")[0] == 404


def test_a_pool_is_degraded_while_its_database_is_unreachable_and_heals_when_it_returns(
    cluster: Cluster, namespace: str, operators: Running, tmp_path: Path
) -> None:
    # A server that is not running yet, at a port we keep for it.
    server = PostgresServer(port=free_port())
    database_url = server.dsn("postgres")
    # The workers' URL names a role the server will have once it is up: the
    # role cannot be created before that.
    worker_url = roles.worker_dsn(database_url, E2E_WORKER_ROLE, E2E_WORKER_PASSWORD)
    operator, _ = operators.start(
        database_url, "--leader-lease", "", worker_database_url=worker_url
    )
    _apply(cluster, namespace, _pool("late", ["late"], 1))

    def degraded() -> dict[str, Any] | None:
        status = (_get(cluster, "workerpool", "late", "-n", namespace) or {}).get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions", [])}
        condition: dict[str, Any] = conditions.get("Degraded", {})
        if status.get("phase") == "Degraded" and condition.get("reason") == "DatabaseUnreachable":
            return condition
        return None

    condition = eventually(degraded, "the pool to be Degraded (DatabaseUnreachable)")
    assert str(server.port) in condition["message"]
    assert server.password not in condition["message"]
    events = cluster.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    assert "DatabaseUnreachable" in events
    assert server.password not in events
    assert server.password not in operator.log()
    assert _get(cluster, "secret", "late-enrollment", "-n", namespace) is None

    server.start()
    try:
        corral_queue.migrate(database_url)
        assert as_worker_url(database_url) == worker_url
        eventually(
            lambda: _get(cluster, "secret", "late-enrollment", "-n", namespace),
            "the enrollment Secret once the database is back",
            timeout_s=30,
        )
        eventually(lambda: degraded() is None, "the pool to stop being Degraded", timeout_s=30)
        with Queue.connect(database_url) as queue:
            tokens = [t for t in queue.list_tokens() if t.pool == f"{namespace}/late"]
        assert len(tokens) == 1, operator.log()
    finally:
        operators.stop_all()
        server.stop()


def test_an_operator_watching_one_namespace_leaves_pools_elsewhere_alone(
    cluster: Cluster, namespace: str, operators: Running, database_url: str
) -> None:
    elsewhere = f"elsewhere-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", elsewhere)
    try:
        operators.start(database_url, "--leader-lease", "")
        _apply(cluster, elsewhere, _pool("outside", ["outside"], 1))
        _apply(cluster, namespace, _pool("inside", ["inside"], 1))
        eventually(
            lambda: _deployment(cluster, namespace, "inside"), "the watched pool's Deployment"
        )
        eventually(
            lambda: ((_get(cluster, "workerpool", "inside", "-n", namespace) or {}).get("status")
                     or {}).get("phase"),
            "the watched pool's status",
        )  # fmt: skip
        outside = _get(cluster, "workerpool", "outside", "-n", elsewhere) or {}
        assert "status" not in outside
        assert not outside["metadata"].get("finalizers")
        assert _deployment(cluster, elsewhere, "outside") is None
        assert _get(cluster, "secret", "outside-enrollment", "-n", elsewhere) is None
    finally:
        cluster.kubectl("delete", "namespace", elsewhere, "--wait=false", check=False)

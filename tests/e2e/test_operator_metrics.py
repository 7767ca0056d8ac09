"""A real `corral operator`, scraped after it reconciled a pool: every operator
metric docs/metrics.md lists is on its /metrics page with the documented type
and labels, no undocumented `corral_*` metric is, and the queue figures it
reads from PostgreSQL are the jobs in the database.

No worker pods run here (no node agent needed); the worker's side is scraped
by tests/integration/test_worker_metrics.py.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from corral.queue import JobSpec, Queue
from corral_local.localcluster import Cluster
from corral_local.postgres import free_port
from tests._metrics_doc import problems, samples
from tests.e2e._corral import OperatorProcess, eventually, install_crds


@pytest.fixture
def operator(
    cluster: Cluster, namespace: str, database_url: str, tmp_path: Path
) -> Iterator[tuple[OperatorProcess, int]]:
    install_crds(cluster)
    region = f"metrics-{uuid.uuid4().hex[:8]}"
    port = free_port()
    process = OperatorProcess(
        cluster, database_url, tmp_path / "operator.log",
        "--namespace", namespace, "--default-region", region, "--leader-lease", "",
        "--http-port", str(port),
    )  # fmt: skip
    try:
        yield process, port
    finally:
        kubectl = cluster.kubectl
        kubectl("delete", "workerpools", "--all", "-n", namespace, "--wait=false", check=False)
        process.stop()
        for name in kubectl("get", "workerpools", "-n", namespace, "-o", "name",
                            check=False).stdout.split():  # fmt: skip
            kubectl("patch", name, "-n", namespace, "--type=merge",
                    "-p", '{"metadata": {"finalizers": null}}', check=False)  # fmt: skip
        kubectl("delete", "region", region, "--ignore-not-found", "--wait=false", check=False)


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


def test_an_operator_that_reconciled_a_pool_exports_every_documented_metric(
    cluster: Cluster,
    namespace: str,
    database_url: str,
    operator: tuple[OperatorProcess, int],
) -> None:
    process, port = operator
    with Queue.connect(database_url) as queue:
        queue.enqueue_many(JobSpec("noop", queue="ledger") for _ in range(4))
    pool = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "ledger"},
        "spec": {"queues": ["ledger"], "replicas": {"min": 2, "max": 2}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(pool))
    key = (("namespace", namespace), ("pool", "ledger"))

    def reconciled() -> str | None:
        page = _scrape(port)
        desired = samples(page, "corral_pool_replicas").get((*key, ("which", "desired")))
        return page if desired == 2 and samples(page, "corral_pool_info") else None

    page = eventually(reconciled, "the pool's series in /metrics", timeout_s=30)
    assert problems(page, "operator") == [], process.log()

    assert samples(page, "corral_operator_leader") == {(): 1.0}
    assert samples(page, "corral_pool_workers")[key] == 0  # no pods run here
    assert samples(page, "corral_pool_scaling_limited")[key] == 0
    (region,) = [
        dict(labels)["region"]
        for labels in samples(page, "corral_pool_info")
        if dict(labels)["namespace"] == namespace
    ]
    assert region.startswith("metrics-")
    jobs = samples(page, "corral_queue_jobs")
    assert jobs[(("queue", "ledger"), ("state", "pending"))] == 4
    assert jobs[(("queue", "ledger"), ("state", "dead"))] == 0
    (oldest,) = [
        value
        for labels, value in samples(page, "corral_queue_oldest_pending_age_seconds").items()
        if labels == (("queue", "ledger"),)
    ]
    assert oldest > 0

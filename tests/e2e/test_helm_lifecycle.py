"""The chart's whole life on the local control plane, as a user lives it:
`helm install` (the operator pod Ready on the node agent), the example
WorkerPool applied afterwards runs enqueued jobs, `helm upgrade` with a changed
value rolls the operator without touching the running workers or their jobs,
`helm uninstall` leaves the CRDs and the WorkerPools (and their workers keep
working), and `helm install` again adopts them.

One test, in steps: each step starts from the state the previous one left, as
on a real cluster. The operator watches only the test's namespace and creates
the test's own default Region, so nothing else in the session is touched.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import corral
from corral.queue import JobSpec, JobState, WorkerState
from corral.workerenv import SECRET_DATABASE_URL_KEY
from corral_local.localcluster import Cluster, default_bin_dir
from tests.e2e import _pools
from tests.e2e._corral import as_worker_url, eventually
from tests.e2e._nodes import NodeAgentHandle

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "corral"
EXAMPLE_POOL = ROOT / "examples" / "workerpool.yaml"
CRDS = ("workerpools.corral.dev", "regions.corral.dev")
# Pods start Python on two shared cores; helm waits this long for the operator.
HELM_WAIT = "240s"
POD_READY_S = 180


class Release:
    """One Helm release of charts/corral in the test's namespace."""

    def __init__(
        self,
        cluster: Cluster,
        namespace: str,
        database_url: str,
        worker_database_url: str,
        region: str,
        log: Path,
    ) -> None:
        self.cluster, self.namespace, self.log = cluster, namespace, log
        self.name = f"corral-{uuid.uuid4().hex[:6]}"
        self.worker_database_url = worker_database_url
        self.values = [
            f"database.url={database_url}",
            # The workers' URL: a worker role, never the operator's own (a
            # pool without one is Degraded). The chart keeps it in a Secret.
            f"workerDatabase.url={worker_database_url}",
            f"watch.namespaces={{{namespace}}}",
            f"defaultRegion.name={region}",
        ]

    def helm(self, *args: str) -> str:
        helm = default_bin_dir() / "helm"
        assert helm.exists(), f"{helm} is missing: run `make cluster-bins`"
        command = [str(helm), *args, "--kubeconfig", str(self.cluster.kubeconfig)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
        with self.log.open("a") as log:
            log.write(f"$ helm {' '.join(args)}\n{result.stdout}{result.stderr}\n")
        assert result.returncode == 0, f"helm {args[0]} failed:\n{result.stderr}\n{self.explain()}"
        return result.stdout

    def install(self) -> str:
        sets = [a for v in self.values for a in ("--set", v)]
        return self.helm(
            "install", self.name, str(CHART), "-n", self.namespace, *sets,
            "--wait", "--timeout", HELM_WAIT,
        )  # fmt: skip

    def operator_pods(self) -> list[dict[str, Any]]:
        found = _pools.get(
            self.cluster, "pods", "-n", self.namespace,
            "-l", f"app.kubernetes.io/name=corral-operator,app.kubernetes.io/instance={self.name}",
        ) or {}  # fmt: skip
        items: list[dict[str, Any]] = found.get("items", [])
        return items

    def ready_operator(self) -> dict[str, Any]:
        """The one operator pod, Running and Ready (the node agent runs it)."""
        pods = eventually(
            lambda: (
                len(p := [x for x in self.operator_pods() if _pools.is_ready(x)]) == 1
                and len(self.operator_pods()) == 1
                and p
            ),
            "one Ready operator pod",
            timeout_s=POD_READY_S,
        )
        pod: dict[str, Any] = pods[0]
        return pod

    def explain(self) -> str:
        pods = [
            (p["metadata"]["name"], p.get("status", {}).get("phase"),
             [c.get("state") for c in p.get("status", {}).get("containerStatuses", [])])
            for p in self.operator_pods()
        ]  # fmt: skip
        logs = self.cluster.kubectl(
            "logs", "-n", self.namespace, "--tail=40",
            "-l", f"app.kubernetes.io/instance={self.name}", check=False,
        )  # fmt: skip
        return f"operator pods: {json.dumps(pods)[:3000]}\nlogs:\n{logs.stdout[-4000:]}"


@pytest.fixture
def release(
    cluster: Cluster,
    node_agent: NodeAgentHandle,
    namespace: str,
    pod_database_url: str,
    region: str,
    tmp_path: Path,
) -> Iterator[Release]:
    found = Release(
        cluster, namespace, pod_database_url, as_worker_url(pod_database_url), region,
        tmp_path / "helm.log",
    )  # fmt: skip
    yield found
    # Pools carry the operator's finalizer: delete them while an operator runs
    # (install it again if the test ended uninstalled), then uninstall.
    listed = subprocess.run(
        [str(default_bin_dir() / "helm"), "status", found.name, "-n", namespace,
         "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True, check=False,
    )  # fmt: skip
    try:
        if listed.returncode != 0:
            found.install()
    finally:
        cluster.kubectl(
            "delete", "workerpools", "--all", "-n", namespace, "--timeout=90s", check=False
        )
        subprocess.run(
            [str(default_bin_dir() / "helm"), "uninstall", found.name, "-n", namespace,
             "--kubeconfig", str(cluster.kubeconfig), "--wait", "--timeout", "60s"],
            capture_output=True, check=False,
        )  # fmt: skip


def _example_pool(namespace: str) -> dict[str, Any]:
    pool: dict[str, Any] = yaml.safe_load(EXAMPLE_POOL.read_text())
    pool["metadata"]["namespace"] = namespace
    return pool


def _ready_workers(cluster: Cluster, namespace: str, name: str, count: int) -> list[str]:
    """The uids of exactly `count` Ready worker pods of the pool (none terminating)."""
    uids = eventually(
        lambda: (
            len(pods := _pools.pods(cluster, namespace, name)) == count
            and all(_pools.is_ready(p) for p in pods)
            and sorted(p["metadata"]["uid"] for p in pods)
        ),
        f"{count} Ready worker pod(s) of {name}",
        timeout_s=POD_READY_S,
    )
    return list(uids)


def _run_jobs(database_url: str, specs: list[JobSpec], timeout_s: float = 90) -> list[int]:
    with corral.connect(database_url) as queue:
        ids = queue.enqueue_many(specs)
    eventually(
        lambda: all(j.state is JobState.COMPLETED for j in _pools.jobs(database_url, ids)),
        f"{len(ids)} job(s) to complete",
        timeout_s=timeout_s,
    )
    return ids


def _enqueue_with_the_cli(database_url: str, kind: str, queue: str) -> int:
    corral_bin = str(Path(sys.executable).parent / "corral")
    result = subprocess.run(
        [corral_bin, "jobs", "enqueue", kind, "{}", "--queue", queue],
        env={**os.environ, "CORRAL_DATABASE_URL": database_url},
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return int(result.stdout.strip())  # it prints the job's id


# Five steps, each waiting for pods; the first test of a session also builds
# the pods' host image (a pip install) and starts the node agent.
@pytest.mark.timeout(1800)
def test_install_upgrade_uninstall_and_install_again_keep_the_pools_working(
    cluster: Cluster, namespace: str, release: Release, pod_database_url: str, region: str
) -> None:
    # 1. helm install: the CRDs are served and the operator pod becomes Ready.
    release.install()
    for crd in CRDS:
        cluster.kubectl("get", "crd", crd)
    first_operator = release.ready_operator()
    eventually(lambda: _pools.get(cluster, "region", region), "the default Region")

    # 2. The example WorkerPool, applied after the install, runs enqueued jobs.
    pool = _example_pool(namespace)
    name = pool["metadata"]["name"]
    _pools.apply(cluster, pool)
    (worker_uid,) = _ready_workers(cluster, namespace, name, 1)
    # Its workers got the worker role's URL through the chart, not the operator's.
    enrollment = _pools.get(cluster, "secret", f"{name}-enrollment", "-n", namespace)
    assert enrollment is not None
    handed = base64.b64decode(enrollment["data"][SECRET_DATABASE_URL_KEY]).decode()
    assert handed == release.worker_database_url != pod_database_url
    cli_job = _enqueue_with_the_cli(pod_database_url, "noop", "email")
    _run_jobs(pod_database_url, [JobSpec("noop", {"n": n}, queue="default") for n in range(10)])
    assert _pools.jobs(pod_database_url, [cli_job])[0].state is JobState.COMPLETED
    (worker,) = eventually(
        lambda: _pools.workers(pod_database_url, f"{namespace}/{name}"), "the pool's worker"
    )
    worker_deployment = _pools.get(cluster, "deployment", name, "-n", namespace)
    assert worker_deployment is not None

    # 3. helm upgrade with a changed value rolls the operator; the workers and
    # the jobs they hold are not disturbed.
    with corral.connect(pod_database_url) as queue:
        held = queue.enqueue_many(
            JobSpec("sleep", {"seconds": 20}, queue="default") for _ in range(3)
        )
    eventually(
        lambda: all(j.state is JobState.RUNNING for j in _pools.jobs(pod_database_url, held)),
        "the sleep jobs to be running",
    )
    release.values.append("logLevel=DEBUG")
    release.helm(
        "upgrade", release.name, str(CHART), "-n", namespace,
        *[a for v in release.values for a in ("--set", v)], "--wait", "--timeout", HELM_WAIT,
    )  # fmt: skip
    second_operator = release.ready_operator()
    assert second_operator["metadata"]["uid"] != first_operator["metadata"]["uid"]
    env = {e["name"]: e.get("value") for e in second_operator["spec"]["containers"][0]["env"]}
    assert env["CORRAL_LOG_LEVEL"] == "DEBUG"
    eventually(
        lambda: all(j.state.finished for j in _pools.jobs(pod_database_url, held)),
        "the held jobs to finish",
    )
    for job in _pools.jobs(pod_database_url, held):
        assert (job.state, job.attempt) == (JobState.COMPLETED, 1), job
    assert _ready_workers(cluster, namespace, name, 1) == [worker_uid]
    after = _pools.get(cluster, "deployment", name, "-n", namespace)
    assert after is not None
    assert after["metadata"]["generation"] == worker_deployment["metadata"]["generation"]
    (still,) = _pools.workers(pod_database_url, f"{namespace}/{name}")
    assert (still.id, still.state) == (worker.id, WorkerState.ACTIVE)

    # 4. helm uninstall removes the operator but keeps the CRDs, the pool, its
    # Deployment and Secret; the workers keep running jobs without an operator.
    release.helm("uninstall", release.name, "-n", namespace, "--wait", "--timeout", "120s")
    eventually(lambda: not release.operator_pods(), "the operator pod to go")
    for crd in CRDS:
        cluster.kubectl("get", "crd", crd)
    assert _pools.get(cluster, "workerpool", name, "-n", namespace) is not None
    assert _pools.get(cluster, "secret", f"{name}-enrollment", "-n", namespace) is not None
    _run_jobs(pod_database_url, [JobSpec("noop", {"n": n}, queue="email") for n in range(5)])
    assert _ready_workers(cluster, namespace, name, 1) == [worker_uid]

    # 5. helm install again adopts the pool: the same worker pod, and the new
    # operator acts on it (a scale to two workers goes through).
    release.install()
    release.ready_operator()
    cluster.kubectl("scale", "workerpool", name, "-n", namespace, "--replicas=2")
    uids = _ready_workers(cluster, namespace, name, 2)
    assert worker_uid in uids
    status = eventually(
        lambda: (s := _pools.status(cluster, namespace, name)).get("ready") == "2/2" and s,
        "the pool's status to show 2/2",
    )
    adopted = _pools.get(cluster, "workerpool", name, "-n", namespace)
    assert adopted is not None
    assert status["observedGeneration"] == adopted["metadata"]["generation"]
    assert status["queuesText"] == "default,email"
    _run_jobs(pod_database_url, [JobSpec("noop", {"n": n}, queue="default") for n in range(10)])

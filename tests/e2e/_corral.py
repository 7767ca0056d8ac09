"""Helpers of corral's own e2e tests: start a local control plane, install the
CRDs, build WorkerPool, Pod and Deployment manifests and apply them, read
objects back, dry-run a Pod against Pod Security, run `corral operator` as a
real process against the test cluster and database (`lone_operator`: one,
without leader election, for a block), delete a test's pools at its end, and
wait for things. The `cluster`, `crds` and `region` fixtures built on them are in
tests/e2e/conftest.py (the chaos drills use them too)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.api import API_VERSION
from corral_local.localcluster import Cluster, ClusterError, LocalCluster
from tests._waiting import eventually as eventually  # the e2e and chaos tests' wait

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def running_cluster(directory: Path, what: str) -> Iterator[LocalCluster]:
    """A local control plane in `directory` for the block, stopped after it;
    when it cannot start, the tests fail naming `what` and the cause."""
    local = LocalCluster(directory)
    try:
        local.start()
    except ClusterError as exc:
        pytest.fail(f"{what} did not start: {exc}", pytrace=False)
    try:
        yield local
    finally:
        local.stop()


def install_crds(cluster: Cluster) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
    for name in ("workerpools.corral.dev", "regions.corral.dev"):
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{name}")
    eventually(
        lambda: cluster.kubectl("get", "workerpools", "-A", check=False).returncode == 0,
        "the WorkerPool API to be served",
        timeout_s=30,
    )


def apply(cluster: Cluster, body: dict[str, Any], namespace: str | None = None) -> None:
    where = ["-n", namespace] if namespace else []
    cluster.kubectl("apply", *where, "-f", "-", input=yaml.safe_dump(body))


def pool_manifest(
    name: str, queues: list[str], min_replicas: int, max_replicas: int, **spec: Any
) -> dict[str, Any]:
    """A WorkerPool named `name` on `queues`; `spec` adds or overrides fields."""
    replicas = {"min": min_replicas, "max": max_replicas}
    return {
        "apiVersion": API_VERSION,
        "kind": "WorkerPool",
        "metadata": {"name": name},
        "spec": {"queues": queues, "replicas": replicas, **spec},
    }


def pod_manifest(
    name: str, *containers: dict[str, Any], labels: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    """A Pod `name` (with `labels`, if any) running `containers`; `spec` adds
    the rest of its spec (restartPolicy, volumes, initContainers and the like)."""
    metadata: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {**spec, "containers": list(containers)},
    }


def deployment_manifest(
    name: str, replicas: int, *containers: dict[str, Any], app: str = "", **pod_spec: Any
) -> dict[str, Any]:
    """A Deployment `name` of `replicas` pods labelled app=`app` (default:
    `name`) and selected by it, running `containers`; `pod_spec` adds the rest
    of the pods' spec."""
    labels = {"app": app or name}
    return {  # copies of `labels`: yaml.safe_dump would write one shared dict as an alias
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {**pod_spec, "containers": list(containers)},
            },
        },
    }


def get_json(cluster: Cluster, *args: str) -> dict[str, Any] | None:
    """`kubectl get ARGS -o json`, or None when it is not there."""
    result = cluster.kubectl("get", *args, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def dry_run_pod(
    cluster: Cluster, namespace: str, name: str, spec: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """Ask the API server to admit, not create, a Pod `name` with `spec` in
    `namespace` (so that namespace's Pod Security level judges it)."""
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }
    return cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )


def recreated(
    cluster: Cluster, namespace: str, kind: str, first: dict[str, Any], what: str
) -> dict[str, Any]:
    """Wait (30 s) for the object `first` was to come back as a new one (another uid)."""
    name, uid = first["metadata"]["name"], first["metadata"]["uid"]
    found: dict[str, Any] = eventually(
        lambda: (
            (d := get_json(cluster, kind, name, "-n", namespace))
            and d["metadata"]["uid"] != uid
            and d
        ),
        what,
        timeout_s=30,
    )
    return found


E2E_WORKER_ROLE = "corral_e2e_worker"
E2E_WORKER_PASSWORD = "e2e-worker-only"  # a test server's role, no secret


def as_worker_url(database_url: str) -> str:
    """`database_url` as the workers reach it: the e2e worker role (a member
    of corral_worker only), created or refreshed on that server."""
    from corral.queue import roles

    roles.create_worker_role(database_url, E2E_WORKER_ROLE, E2E_WORKER_PASSWORD)
    return roles.worker_dsn(database_url, E2E_WORKER_ROLE, E2E_WORKER_PASSWORD)


class OperatorProcess:
    """`corral operator` in a subprocess, logging to a file the test can show.
    Pools get the worker role's URL (as `make dev` and the chart give them),
    never the operator's; `worker_database_url=""` gives them none."""

    def __init__(
        self,
        cluster: Cluster,
        database_url: str,
        log_path: Path,
        *args: str,
        worker_database_url: str | None = None,
    ) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        env.pop("CORRAL_WORKER_DATABASE_URL", None)
        if worker_database_url is None:
            worker_database_url = as_worker_url(database_url)
        command = [str(Path(sys.executable).parent / "corral"), "operator"]
        command += ["--database-url", database_url, "--http-port", "-1", "--resync", "2", *args]
        if worker_database_url:
            command += ["--worker-database-url", worker_database_url]
        self.proc = subprocess.Popen(
            command,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


class OperatorProcesses:
    """The operator processes one test starts, each watching the test's
    namespace with its region as the default, logging to operator-N.log in
    the test's tmp_path. A test file's fixture adds how it starts and stops
    them (`tests/e2e/test_autoscaling.py`, `test_operator_process.py`)."""

    def __init__(self, cluster: Cluster, namespace: str, region: str, tmp_path: Path) -> None:
        self.cluster, self.namespace, self.region, self.tmp_path = (
            cluster, namespace, region, tmp_path,
        )  # fmt: skip
        self.started: list[OperatorProcess] = []

    def launch(
        self, database_url: str, *args: str, worker_database_url: str | None = None
    ) -> OperatorProcess:
        process = OperatorProcess(
            self.cluster, database_url, self.tmp_path / f"operator-{len(self.started)}.log",
            "--namespace", self.namespace, "--default-region", self.region, *args,
            worker_database_url=worker_database_url,
        )  # fmt: skip
        self.started.append(process)
        return process


def delete_pools_then_stop(
    cluster: Cluster, namespace: str, operator: OperatorProcess, timeout_s: int = 60
) -> None:
    """Delete every WorkerPool in `namespace` while `operator` still runs, then
    stop it. Pools carry the operator's finalizer: deleted after it is gone,
    the namespace would wait for an operator that never comes back. kubectl
    gives up before its process is killed (a slow deletion never fails the
    test it follows), and the operator stops even when the delete times out
    (it did on a loaded machine, and left the process running after the
    session)."""
    try:
        cluster.kubectl(
            "delete", "workerpools", "--all", "-n", namespace, f"--timeout={timeout_s}s",
            check=False, timeout_s=timeout_s + 30,
        )  # fmt: skip
    finally:
        operator.stop()


@contextlib.contextmanager
def lone_operator(
    cluster: Cluster,
    database_url: str,
    namespace: str,
    region: str,
    log_path: Path,
    *args: str,
    worker_database_url: str | None = None,
) -> Iterator[OperatorProcess]:
    """One `corral operator` for the block, without leader election, watching
    `namespace` with `region` as its default; its pools are deleted before it
    stops (`delete_pools_then_stop`)."""
    process = OperatorProcess(
        cluster, database_url, log_path,
        "--namespace", namespace, "--default-region", region, "--leader-lease", "", *args,
        worker_database_url=worker_database_url,
    )  # fmt: skip
    try:
        yield process
    finally:
        delete_pools_then_stop(cluster, namespace, process)


def force_delete_pools(cluster: Cluster, namespace: str) -> None:
    """Delete every WorkerPool in `namespace` without waiting for an operator:
    mark them deleted, then drop the operator's finalizer so that they go at
    once (for tests whose pools' workers never drain, or whose operators are
    stopped)."""
    cluster.kubectl("delete", "workerpools", "--all", "-n", namespace, "--wait=false", check=False)
    names = cluster.kubectl("get", "workerpools", "-n", namespace, "-o", "name", check=False)
    for name in names.stdout.split():
        cluster.kubectl(
            "patch", name, "-n", namespace, "--type=merge",
            "-p", '{"metadata": {"finalizers": null}}', check=False,
        )  # fmt: skip

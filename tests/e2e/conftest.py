"""Fixtures of the e2e tier: a real kube-apiserver for every test in the session.

Fixture API (kept small; other e2e helpers build on it):

- `cluster` (session): a `corral_local.localcluster.Cluster`. Always has
  `.kubeconfig` (admin), `.server_url`, `.kubectl(*args, input=None, check=True)`,
  `.kubectl_json(*args)`, `.env()` (os.environ + KUBECONFIG) and `.is_local`.
  When `.is_local` it is a `LocalCluster` and also has `.port`, `.pod_server_url`
  (https://10.244.0.1:<port>, what pods use), `.ca_file`, `.ca_key_file`,
  `.bin_dir`, `.state_dir` and `.client_kubeconfig(name, cn, orgs)` for new
  identities (e.g. a node agent's system:node:<name>).
- `kubectl` (session): `cluster.kubectl`, for tests that only need the command.
- `namespace` (per test): a fresh namespace named after the test, deleted after it.

Which cluster: by default a `LocalCluster` started once per session from the
binaries `make cluster-bins` built, in a pytest temp directory. Set
`CORRAL_E2E_KUBECONFIG=<file>` (or `KUBECONFIG=<file>` together with
`CORRAL_E2E_EXISTING_CLUSTER=1`) to run the tier unchanged against a cluster you
run yourself, such as kind. The tier never skips: when the binaries are missing
or the cluster cannot start, every test fails with the reason.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import subprocess
import uuid
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from corral_local.localcluster import (
    Cluster,
    ClusterError,
    ExistingCluster,
)
from tests.e2e._corral import install_crds, running_cluster


def _existing_kubeconfig() -> Path | None:
    if path := os.environ.get("CORRAL_E2E_KUBECONFIG"):
        return Path(path)
    if os.environ.get("CORRAL_E2E_EXISTING_CLUSTER") == "1":
        path = os.environ.get("KUBECONFIG", "")
        if not path or os.pathsep in path:
            pytest.fail(
                "CORRAL_E2E_EXISTING_CLUSTER=1 needs KUBECONFIG set to exactly one file "
                f"(got {path!r}); or set CORRAL_E2E_KUBECONFIG instead",
                pytrace=False,
            )
        return Path(path)
    return None


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    existing = _existing_kubeconfig()
    if existing is not None:
        try:
            found = ExistingCluster(existing)
        except ClusterError as exc:
            pytest.fail(f"existing cluster unusable: {exc}", pytrace=False)
        yield found
        return
    with running_cluster(tmp_path_factory.mktemp("cluster"), "the local control plane") as local:
        yield local


# Fixtures that only the local platform provides: the node agent runs pods as
# processes on this machine, next to the local control plane. A test using one
# (directly or through another fixture) is marked `local_platform`; against an
# existing cluster such as kind, `-m "not local_platform"` leaves those out
# (`make kind-test-e2e` does) and the node agent refuses to start.
LOCAL_PLATFORM_FIXTURES = frozenset({"node_agent"})


@pytest.hookimpl(tryfirst=True)  # before `-m` selects on the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LOCAL_PLATFORM_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.local_platform)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's (or teardown's) report carries what its namespace's
    pods said: each container's state and the last lines of its log (of the
    run before, when it restarted), the namespace's events (kills, failed
    probes and hooks), on the local platform the logs of pods already
    deleted, and for a teardown the operators' logs. A crash-looping worker,
    or one killed mid-job, then shows why in CI's output."""
    report = yield
    funcargs = getattr(item, "funcargs", {})
    if call.when == "setup" or not report.failed or "namespace" not in funcargs:
        return report
    cluster, namespace = funcargs["cluster"], funcargs["namespace"]
    sections: list[tuple[str, Callable[[], str]]] = [
        ("pods of the test's namespace", lambda: _pods_report(cluster, namespace)),
        ("events of the test's namespace", lambda: _events_report(cluster, namespace)),
    ]
    if (agent := funcargs.get("node_agent")) is not None:
        sections.append(
            (
                "every pod's log kept by the node agent, deleted pods too",
                lambda: _gone_pods_report(agent.state_dir, namespace),
            )
        )
        sections.append(
            (
                "the node agent's log about the namespace",
                lambda: _agent_log_report(agent.log_file, namespace),
            )
        )
    for name in ("operators", "operator") if call.when == "teardown" else ():
        if (started := funcargs.get(name)) is not None:  # the operators the test started
            sections.append(("operator logs (tail)", functools.partial(_operator_logs, started)))
    for title, build in sections:
        with contextlib.suppress(Exception):
            report.sections.append((title, build()))
    return report


def _operator_logs(started: Any, lines: int = 60) -> str:
    """`Operators.logs()` or `OperatorProcess.log()`, the last lines."""
    text: str = started.logs() if hasattr(started, "logs") else started.log()
    return "\n".join(text.splitlines()[-lines:])


def _events_report(cluster: Cluster, namespace: str) -> str:
    listing = cluster.kubectl("get", "events", "-n", namespace, "-o", "json", check=False)
    if listing.returncode != 0:
        return f"kubectl get events failed: {listing.stderr.strip()}"
    events = json.loads(listing.stdout).get("items", [])
    events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
    return (
        "\n".join(
            f"{e.get('lastTimestamp') or e.get('eventTime')} {e.get('type')} {e.get('reason')} "
            f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')}: {e.get('message')}"
            for e in events
        )
        or "no events"
    )


def _agent_log_report(log_file: Path, namespace: str, tail: int = 60) -> str:
    """The agent's lines naming the namespace: hook failures, kills, a pod
    worker that crashed (it SIGKILLs the pod's processes)."""
    lines = [
        line for line in log_file.read_text(errors="replace").splitlines() if namespace in line
    ]
    return "\n".join(lines[-tail:]) or "no line names the namespace"


def _gone_pods_report(state_dir: Path, namespace: str, tail: int = 40) -> str:
    """The node agent keeps a deleted pod's directory (its logs) until it stops."""
    lines: list[str] = []
    for pod_dir in sorted((state_dir / "pods").glob(f"{namespace}_*")):
        for log in sorted(pod_dir.glob("logs/*/*.log")):
            text = log.read_text(errors="replace").rstrip().splitlines()[-tail:]
            lines += [f"--- {pod_dir.name} {log.parent.name} run {log.stem}", *text]
    return "\n".join(lines) or "no pod directories"


def _pods_report(cluster: Cluster, namespace: str, tail: int = 25) -> str:
    listing = cluster.kubectl("get", "pods", "-n", namespace, "-o", "json", check=False)
    if listing.returncode != 0:
        return f"kubectl get pods failed: {listing.stderr.strip()}"
    lines: list[str] = []
    for pod in json.loads(listing.stdout).get("items", []):
        name = pod["metadata"]["name"]
        for status in pod.get("status", {}).get("containerStatuses", []):
            state = next(iter(status.get("state") or {"unknown": {}}))
            restarts = status.get("restartCount", 0)
            lines.append(
                f"--- pod {name}, container {status['name']}: {state}, {restarts} restarts"
            )
            args = ["logs", "-n", namespace, name, "-c", status["name"], f"--tail={tail}"]
            log = cluster.kubectl(*args, *(["--previous"] if restarts else []), check=False)
            lines += (log.stdout or log.stderr).rstrip().splitlines()
    return "\n".join(lines) or "no pods"


@pytest.fixture(scope="session")
def kubectl(cluster: Cluster) -> Callable[..., subprocess.CompletedProcess[str]]:
    return cluster.kubectl


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    # Namespace names are DNS labels: lower case, <= 63 characters, unique per run.
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().removeprefix("test_"))
    name = f"{stem[:50].strip('-')}-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # Namespace deletion finalises in the background; tests do not wait for it.
        cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


# ---- corral's own objects ------------------------------------------------------------------
@pytest.fixture(scope="module")
def crds(cluster: Cluster) -> None:
    """corral's CRDs, installed (and served) once per test module."""
    install_crds(cluster)


@pytest.fixture
def region(cluster: Cluster) -> Iterator[str]:
    """A fresh Region name for the test (the operator under test creates it as
    its default Region); deleted afterwards."""
    name = f"r-{uuid.uuid4().hex[:8]}"
    yield name
    cluster.kubectl("delete", "region", name, "--ignore-not-found", "--wait=false", check=False)


# ---- node agent (issue 3) ------------------------------------------------------------------
# `node_agent` (session): two Ready nodes whose pods run as host processes, with a
# chaos handle; see tests/e2e/_nodes.py.
from tests.e2e._nodes import node_agent  # noqa: E402, F401

# ---- operator with running workers (issue 5, reconcile) -------------------------------------
# `pod_postgres` (session): a PostgreSQL server that worker pods can reach, listening on
# 127.0.0.1 and on the pod bridge 10.244.0.1 (pg_hba allows 10.244.0.0/16); it needs the
# node agent, which brings the bridge up. `pod_database_url` (per test): a fresh database
# with corral's schema on it, as a DSN whose host is 10.244.0.1 — valid on the host and
# inside pods, so the operator can copy it into the pools' enrollment Secrets.
from tests.e2e._pod_postgres import pod_database_url, pod_postgres  # noqa: E402, F401

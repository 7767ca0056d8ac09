"""`corral operator` with worker pods that really run: the node agent starts
`corral worker` for each pod of a pool's Deployment, the workers enroll with
the token from the pool's Secret, heartbeat and run jobs against a Postgres
they reach over the pod network. These tests check what a user sees end to
end: the `kubectl get workerpools` table, jobs completing, regions keeping
their workers on their own nodes, token rotation and pool deletion.

Each test runs its own operator process watching only the test's namespace,
with its own default Region and its own database (`pod_database_url`).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from corral.queue import Job, JobSpec, JobState, Queue, Worker, WorkerState
from corral_local.localcluster import Cluster
from tests.e2e._corral import OperatorProcess, delete_pools_then_stop, eventually, pool_manifest
from tests.e2e._corral import apply as _apply
from tests.e2e._corral import get_json as _get
from tests.e2e._nodes import NodeAgentHandle, pod_json, shell_container
from tests.e2e._pools import pods as _pods
from tests.e2e._pools import status as _pool_status
from tests.e2e._pools import workers as _workers

API = "corral.dev/v1alpha1"
TOKEN_EXPIRES_ANNOTATION = "corral.dev/token-expires-at"
TOKEN_ID_ANNOTATION = "corral.dev/token-id"
# Worker pods start Python, enroll and pass a readiness probe every 5 s.
POD_READY_S = 120


@pytest.fixture
def operator(
    crds: None,
    cluster: Cluster,
    node_agent: NodeAgentHandle,
    namespace: str,
    pod_database_url: str,
    region: str,
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    process = _start_operator(cluster, pod_database_url, namespace, region, tmp_path / "op.log")
    yield process
    # Pools go before the operator, so their finalizer runs and no pod outlives the test.
    delete_pools_then_stop(cluster, namespace, process)


def _start_operator(
    cluster: Cluster, database_url: str, namespace: str, region: str, log: Path
) -> OperatorProcess:
    return OperatorProcess(
        cluster, database_url, log,
        "--namespace", namespace, "--default-region", region, "--leader-lease", "",
    )  # fmt: skip


def _pool(name: str, queues: list[str], replicas: int, **spec: Any) -> dict[str, Any]:
    return pool_manifest(name, queues, replicas, replicas, **spec)


def _region(name: str, node_region: str) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {
            "displayName": f"Nodes of {node_region}",
            "scheduling": {"nodeSelector": {"topology.kubernetes.io/region": node_region}},
        },
    }


def _ready_pods(cluster: Cluster, namespace: str, pool: str, count: int) -> list[dict[str, Any]]:
    """Exactly `count` pods of the pool, all Running and Ready, none terminating."""

    def ready() -> list[dict[str, Any]] | None:
        pods = [p for p in _pods(cluster, namespace, pool) if not p["metadata"].get(
            "deletionTimestamp")]  # fmt: skip
        ok = [
            p
            for p in pods
            if p.get("status", {}).get("phase") == "Running"
            and any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in p["status"].get("conditions", [])
            )
        ]
        return ok if len(ok) == count == len(pods) else None

    try:
        pods: list[dict[str, Any]] = eventually(
            ready, f"{count} Ready pod(s) of pool {pool}", timeout_s=POD_READY_S
        )
    except AssertionError as exc:
        seen = [
            (p["metadata"]["name"], p.get("spec", {}).get("nodeName"), p.get("status", {}))
            for p in _pods(cluster, namespace, pool)
        ]
        raise AssertionError(f"{exc}\npods: {json.dumps(seen, indent=1)[:6000]}") from None
    return pods


def _job(database_url: str, job_id: int) -> Job:
    with Queue.connect(database_url) as queue:
        return queue.get_job(job_id)


def _heartbeating(workers: list[Worker], within_s: float = 10.0) -> list[Worker]:
    now = datetime.now(UTC)
    return [
        w
        for w in workers
        if w.state is WorkerState.ACTIVE
        and w.last_heartbeat is not None
        and now - w.last_heartbeat < timedelta(seconds=within_s)
    ]


def _one_worker_pool(
    cluster: Cluster, namespace: str, database_url: str, name: str
) -> tuple[dict[str, Any], Worker]:
    """A pool `name` of one worker on queue `name`, applied: its Ready pod, and
    its worker once that heartbeats."""
    _apply(cluster, _pool(name, [name], 1), namespace)
    (pod,) = _ready_pods(cluster, namespace, name, 1)
    (worker,) = eventually(
        lambda: _heartbeating(_workers(database_url, f"{namespace}/{name}")),
        f"the worker of pool {name} heartbeating",
    )
    return pod, worker


def _table(cluster: Cluster, namespace: str) -> dict[str, dict[str, str]]:
    """`kubectl get workerpools` as {pool name: {COLUMN: cell}}."""
    lines = cluster.kubectl("get", "workerpools", "-n", namespace).stdout.splitlines()
    header = lines[0].split()
    return {
        cells[0]: dict(zip(header, cells, strict=True))
        for cells in (line.split() for line in lines[1:])
    }


def _explain(operator: OperatorProcess, node_agent: NodeAgentHandle) -> str:
    return f"--- operator log ---\n{operator.log()}\n--- node agent ---\n{node_agent.log_tail()}"


def test_a_pool_runs_workers_that_enroll_heartbeat_and_complete_its_jobs(
    cluster: Cluster, namespace: str, operator: OperatorProcess, node_agent: NodeAgentHandle,
    pod_database_url: str, region: str,
) -> None:  # fmt: skip
    with Queue.connect(pod_database_url) as queue:
        ids = queue.enqueue_many(JobSpec("noop", {"n": n}, queue="mail") for n in range(30))
    # Paused first, so the table shows the backlog before any worker exists.
    _apply(cluster, _pool("mail", ["mail"], 2, paused=True), namespace)
    eventually(
        lambda: _table(cluster, namespace).get("mail", {}).get("DEPTH") == "30",
        "DEPTH 30 in `kubectl get workerpools`",
    )
    paused = _table(cluster, namespace)["mail"]
    assert (paused["PHASE"], paused["DESIRED"], paused["READY"]) == ("Paused", "0", "0/0")

    _apply(cluster, _pool("mail", ["mail"], 2, paused=False), namespace)
    pods = _ready_pods(cluster, namespace, "mail", 2)

    # The processes behind the pods are `corral worker`s that enrolled under
    # the pods' names with the pool's token and keep heartbeating.
    workers = eventually(
        lambda: len(w := _heartbeating(_workers(pod_database_url, f"{namespace}/mail"))) == 2 and w,
        "two heartbeating workers of the pool",
    )
    assert sorted(w.name for w in workers) == sorted(p["metadata"]["name"] for p in pods)
    assert {w.region for w in workers} == {region}
    assert all(w.queues == ["mail"] for w in workers)

    def all_completed() -> bool:
        with Queue.connect(pod_database_url) as queue:
            return all(queue.get_job(i).state is JobState.COMPLETED for i in ids)

    eventually(all_completed, "the 30 jobs to complete", timeout_s=60)
    row = eventually(
        lambda: (
            (r := _table(cluster, namespace)["mail"])["PHASE"] == "Ready"
            and r["DEPTH"] == "0"
            and r
        ),
        "the table to show the pool Ready with an empty queue",
        timeout_s=30,
    )
    assert row["REGION"] == region
    assert "mail" in row["QUEUES"]
    assert (row["READY"], row["DESIRED"]) == ("2/2", "2")
    assert row["AGE"][-1] in "smhd"
    status = _pool_status(cluster, namespace, "mail")
    assert (status["workers"], status["readyReplicas"], status["queueDepth"]) == (2, 2, 0), (
        _explain(operator, node_agent)
    )


def test_pools_in_two_regions_run_only_on_their_regions_nodes_and_each_region_counts_its_own_workers(
    cluster: Cluster, namespace: str, operator: OperatorProcess, node_agent: NodeAgentHandle,
    pod_database_url: str,
) -> None:  # fmt: skip
    suffix = uuid.uuid4().hex[:6]
    eu, us = f"eu-{suffix}", f"us-{suffix}"
    try:
        _apply(cluster, _region(eu, "eu"))
        _apply(cluster, _region(us, "us"))
        _apply(cluster, _pool("eu-pool", ["geo"], 2, region=eu), namespace)
        _apply(cluster, _pool("us-pool", ["geo"], 1, region=us), namespace)
        eu_pods = _ready_pods(cluster, namespace, "eu-pool", 2)
        us_pods = _ready_pods(cluster, namespace, "us-pool", 1)
        assert {p["spec"]["nodeName"] for p in eu_pods} == {"e2e-eu"}
        assert {p["spec"]["nodeName"] for p in us_pods} == {"e2e-us"}

        def region_status(name: str, workers: int) -> dict[str, Any] | None:
            # Counted as of one reconcile: the status converges on both.
            status = (_get(cluster, "region", name) or {}).get("status") or {}
            return status if (status.get("workers"), status.get("pools")) == (workers, 1) else None

        eu_status = eventually(lambda: region_status(eu, 2), f"Region {eu} to count 2 workers")
        us_status = eventually(lambda: region_status(us, 1), f"Region {us} to count 1 worker")
        assert (eu_status["pools"], eu_status["phase"]) == (1, "Ready")
        assert (us_status["pools"], us_status["phase"]) == (1, "Ready")

        # A job bound to a region is run by that region's workers only.
        with Queue.connect(pod_database_url) as queue:
            queue.pause("geo")
            job = queue.enqueue("noop", queue="geo", region=us)
        eventually(
            lambda: (s := region_status(us, 1)) is not None and s["queueDepth"] == 1,
            f"Region {us} to count the waiting job",
        )
        assert (region_status(eu, 2) or {}).get("queueDepth") == 0
        with Queue.connect(pod_database_url) as queue:
            queue.resume("geo")
        done = eventually(
            lambda: (j := _job(pod_database_url, job)).state is JobState.COMPLETED and j,
            "the us job to complete",
        )
        us_workers = {w.id for w in _workers(pod_database_url, f"{namespace}/us-pool")}
        assert done.worker_id in us_workers, _explain(operator, node_agent)
    finally:
        cluster.kubectl("delete", "workerpools", "--all", "-n", namespace, "--timeout=60s",
                        check=False)  # fmt: skip
        cluster.kubectl("delete", "region", eu, us, "--ignore-not-found", check=False)


def test_a_rotated_token_leaves_running_workers_alone_and_enrolls_new_pods(
    cluster: Cluster, namespace: str, operator: OperatorProcess, node_agent: NodeAgentHandle,
    pod_database_url: str,
) -> None:  # fmt: skip
    pod, worker = _one_worker_pool(cluster, namespace, pod_database_url, "rot")
    secret = _get(cluster, "secret", "rot-enrollment", "-n", namespace)
    assert secret is not None
    old_token_id = secret["metadata"]["annotations"][TOKEN_ID_ANNOTATION]
    # Make the held token look close to its end (the default TTL is an hour):
    # the operator must mint a new one at its next look.
    soon = (datetime.now(UTC) + timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%SZ")
    cluster.kubectl("annotate", "secret", "rot-enrollment", "-n", namespace, "--overwrite",
                    f"{TOKEN_EXPIRES_ANNOTATION}={soon}")  # fmt: skip
    rotated = eventually(
        lambda: (
            (s := _get(cluster, "secret", "rot-enrollment", "-n", namespace))
            and s["metadata"]["annotations"][TOKEN_ID_ANNOTATION] != old_token_id
            and s
        ),
        "a new token in the enrollment Secret",
        timeout_s=30,
    )
    assert base64.b64decode(rotated["data"]["token"]) != base64.b64decode(secret["data"]["token"])
    time.sleep(3)  # several heartbeats after the rotation
    (still,) = _ready_pods(cluster, namespace, "rot", 1)
    assert still["metadata"]["uid"] == pod["metadata"]["uid"]
    assert still["status"]["containerStatuses"][0]["restartCount"] == 0
    assert [w.id for w in _heartbeating(_workers(pod_database_url, f"{namespace}/rot"))] == [
        worker.id
    ]

    # A pod started after the rotation enrolls with the new token.
    _apply(cluster, _pool("rot", ["rot"], 2), namespace)
    _ready_pods(cluster, namespace, "rot", 2)
    eventually(
        lambda: len(_heartbeating(_workers(pod_database_url, f"{namespace}/rot"))) == 2,
        "two heartbeating workers",
    )
    with Queue.connect(pod_database_url) as queue:
        tokens = {str(t.id): t for t in queue.list_tokens(include_unusable=True)}
    new = tokens[rotated["metadata"]["annotations"][TOKEN_ID_ANNOTATION]]
    old = tokens[old_token_id]
    assert new.last_used_at is not None, _explain(operator, node_agent)
    assert old.last_used_at is not None and old.last_used_at < new.last_used_at


def test_restarting_the_operator_leaves_running_workers_alone(
    cluster: Cluster, namespace: str, operator: OperatorProcess, node_agent: NodeAgentHandle,
    pod_database_url: str, region: str, tmp_path: Path,
) -> None:  # fmt: skip
    _apply(cluster, _pool("calm", ["calm"], 2), namespace)
    pods = _ready_pods(cluster, namespace, "calm", 2)
    workers = eventually(
        lambda: len(w := _heartbeating(_workers(pod_database_url, f"{namespace}/calm"))) == 2 and w,
        "two heartbeating workers",
    )
    assert operator.stop() == 0, operator.log()
    second = _start_operator(cluster, pod_database_url, namespace, region, tmp_path / "2.log")
    try:
        # A hand edit that touches no pod: only a running operator takes it
        # back, which proves the new one has taken over before we compare.
        cluster.kubectl("patch", "deployment", "calm", "-n", namespace, "--type=merge",
                        "-p", '{"spec": {"revisionHistoryLimit": 9}}')  # fmt: skip
        eventually(
            lambda: (
                (_get(cluster, "deployment", "calm", "-n", namespace) or {})["spec"][
                    "revisionHistoryLimit"
                ]
                != 9
            ),
            "the restarted operator to take back the hand edit",
            timeout_s=30,
        )
        time.sleep(5)  # a couple of resyncs of the new operator
        again = _ready_pods(cluster, namespace, "calm", 2)
        assert {p["metadata"]["uid"] for p in again} == {p["metadata"]["uid"] for p in pods}
        assert len(cluster.kubectl_json("get", "deployments", "-n", namespace)["items"]) == 1
        assert len(cluster.kubectl_json("get", "secrets", "-n", namespace,
                                        "-l", "corral.dev/pool=calm")["items"]) == 1  # fmt: skip
        now = _heartbeating(_workers(pod_database_url, f"{namespace}/calm", removed=True))
        assert sorted(w.id for w in now) == sorted(w.id for w in workers), second.log()
    finally:
        delete_pools_then_stop(cluster, namespace, second)


def test_deleting_a_pool_removes_its_deployment_secret_token_and_workers(
    cluster: Cluster, namespace: str, operator: OperatorProcess, node_agent: NodeAgentHandle,
    pod_database_url: str,
) -> None:  # fmt: skip
    _apply(cluster, _pool("gone", ["gone"], 2), namespace)
    pods = _ready_pods(cluster, namespace, "gone", 2)
    eventually(
        lambda: len(_heartbeating(_workers(pod_database_url, f"{namespace}/gone"))) == 2,
        "two heartbeating workers",
    )
    cluster.kubectl("delete", "workerpool", "gone", "-n", namespace, "--timeout=60s")

    with Queue.connect(pod_database_url) as queue:
        tokens = [
            t for t in queue.list_tokens(include_unusable=True) if t.pool == f"{namespace}/gone"
        ]
    assert tokens and all(t.revoked_at is not None for t in tokens), operator.log()
    workers = _workers(pod_database_url, f"{namespace}/gone", removed=True)
    assert sorted(w.name for w in workers) == sorted(p["metadata"]["name"] for p in pods)
    assert all(w.state is WorkerState.REMOVED for w in workers)
    eventually(
        lambda: (
            _get(cluster, "deployment", "gone", "-n", namespace) is None
            and _get(cluster, "secret", "gone-enrollment", "-n", namespace) is None
            and not _pods(cluster, namespace, "gone")
        ),
        "the Deployment, the Secret and the pods to go",
        timeout_s=90,
    )


def test_another_pod_cannot_drain_a_worker_its_own_prestop_does_and_only_the_metrics_port_is_admitted(
    cluster: Cluster, namespace: str, operator: OperatorProcess, node_agent: NodeAgentHandle,
    pod_database_url: str,
) -> None:  # fmt: skip
    pod, worker = _one_worker_pool(cluster, namespace, pod_database_url, "guarded")
    pod_name, pod_ip = pod["metadata"]["name"], pod["status"]["podIP"]
    # The pool owns a NetworkPolicy that admits the metrics port and no other.
    policy = eventually(
        lambda: _get(cluster, "networkpolicy", "guarded", "-n", namespace),
        "the pool's NetworkPolicy",
    )
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    assert policy["spec"]["podSelector"]["matchLabels"]["corral.dev/pool"] == "guarded"
    assert policy["metadata"]["ownerReferences"][0]["kind"] == "WorkerPool"

    # Another pod on the pod network: /drain without the key, and with a
    # guessed one, is refused; /metrics and /readyz stay open.
    base = f"http://{pod_ip}:8080"
    script = (
        f"curl -s -o /dev/null -w 'nokey=%{{http_code}}\\n' -X POST {base}/drain;"
        f" curl -s -o /dev/null -w 'guessed=%{{http_code}}\\n' -X POST"
        f" -H 'Authorization: Bearer guessed' {base}/drain;"
        f" curl -s -o /dev/null -w 'metrics=%{{http_code}}\\n' {base}/metrics;"
        f" curl -s -o /dev/null -w 'readyz=%{{http_code}}\\n' {base}/readyz"
    )
    _apply(cluster, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "intruder"},
        "spec": {"restartPolicy": "Never", "containers": [shell_container(script)]},
    }, namespace)  # fmt: skip
    eventually(
        lambda: (
            (pod_json(cluster, namespace, "intruder") or {}).get("status", {}).get("phase")
            in ("Succeeded", "Failed")
        ),
        "the intruder pod to finish",
    )
    seen = node_agent.chaos.pod(namespace, "intruder")
    assert seen is not None
    lines = Path(seen["containers"][0]["log"]).read_text().split()
    assert lines == ["nokey=401", "guessed=403", "metrics=200", "readyz=200"], lines

    with Queue.connect(pod_database_url) as queue:
        # A job aimed at the worker's own endpoint is refused by the executor guard.
        own = queue.enqueue(
            "http", {"url": "http://127.0.0.1:8080/drain", "method": "POST"}, queue="guarded"
        )
        held = queue.enqueue("sleep", {"seconds": 4}, queue="guarded")
    refused = eventually(
        lambda: (j := _job(pod_database_url, own)).state is JobState.DEAD and j,
        "the job aimed at the worker's own /drain to be refused",
    )
    assert refused.last_error_reason == "payload" and "own endpoint" in (refused.last_error or "")
    (still,) = _workers(pod_database_url, f"{namespace}/guarded")
    assert still.state is WorkerState.ACTIVE, "nothing above drained the worker"

    # The pod's own preStop reads the key from its state dir and drains:
    # the job in flight completes there (not handed back), the row ends drained.
    eventually(lambda: _job(pod_database_url, held).state is JobState.RUNNING, "the sleep job")
    cluster.kubectl("delete", "pod", pod_name, "-n", namespace, "--wait=false")

    def drained() -> Worker | None:
        rows = _workers(pod_database_url, f"{namespace}/guarded", removed=True)
        row = next((r for r in rows if r.id == worker.id), None)
        return row if row is not None and row.state is WorkerState.DRAINED else None

    gone = eventually(drained, "the deleted pod's worker drained by its preStop", timeout_s=90)
    assert gone.drain_requested_by == "self"
    done = _job(pod_database_url, held)
    assert (done.state, done.attempt) == (JobState.COMPLETED, 1), done
    events = cluster.kubectl_json(
        "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={pod_name}"
    )["items"]
    assert not [e for e in events if e.get("reason") == "FailedPreStopHook"], events

"""Autoscaling and drain-first scale-down, end to end: the operator as a
process, worker pods run by the node agent as real `corral worker`s, and a
real PostgreSQL queue.

What each test proves comes from the queue's own records (job states,
attempts, which worker ran what, `corral_job_interruptions`) and from when
Kubernetes deleted each pod (`PodWatch`), never from the operator's word.
Timings are for waiting only; nothing here asserts how fast anything was
(`make bench-scale` measures that).
"""

from __future__ import annotations

import datetime as dt
import functools
import itertools
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from corral import queue as corral_queue
from corral.queue import Job, JobSpec, JobState, Queue, ScheduleSpec
from corral_local.localcluster import Cluster
from corral_local.postgres import PostgresServer
from tests.e2e import _pools as p
from tests.e2e._corral import OperatorProcess, OperatorProcesses
from tests.e2e._nodes import NodeAgentHandle
from tests.e2e._pod_postgres import POD_GATEWAY, POD_NETWORK

CORRAL = str(Path(sys.executable).with_name("corral"))

READY_S = 120  # worker pods start Python, enroll and pass a readiness probe


class Operators(OperatorProcesses):
    """Operator processes of one test, stopped at its end (its pools first)."""

    def start(self, database_url: str, *args: str) -> OperatorProcess:
        return self.launch(database_url, "--leader-lease", "", *args)

    def logs(self) -> str:
        return "\n".join(f"--- {o.log_path.name} ---\n{o.log()}" for o in self.started)

    def stop_all(self) -> None:
        # kubectl's own --timeout, not the 60 s a kubectl call gets by default.
        self.cluster.kubectl("delete", "workerpools", "--all", "-n", self.namespace,
                             "--timeout=120s", check=False, timeout_s=150)  # fmt: skip
        for process in self.started:
            process.stop()


@pytest.fixture
def operators(
    crds: None, cluster: Cluster, node_agent: NodeAgentHandle, namespace: str, region: str,
    pod_database_url: str, tmp_path: Path,
) -> Iterator[Operators]:  # fmt: skip
    # Depends on the database so that its pools are deleted (and their workers
    # retired) before the test's database is dropped.
    running = Operators(cluster, namespace, region, tmp_path)
    yield running
    running.stop_all()


def _sleep_jobs(database_url: str, queue: str, seconds: list[float]) -> list[int]:
    with Queue.connect(database_url) as q:
        return q.enqueue_many(JobSpec("sleep", {"seconds": s}, queue=queue) for s in seconds)


def _worker_pods(database_url: str, key: str) -> dict[int, str]:
    return {w.id: w.name for w in p.workers(database_url, key, removed=True)}


def _pod_of(database_url: str, namespace: str, pool: str, job: Job) -> str:
    """The pod whose worker runs `job`."""
    return _worker_pods(database_url, f"{namespace}/{pool}")[job.worker_id or 0]


def _delete_pod_of(cluster: Cluster, namespace: str, database_url: str, pool: str, job: Job) -> str:
    """Delete the pod running `job` without waiting (its preStop drains it); the pod."""
    victim = _pod_of(database_url, namespace, pool, job)
    cluster.kubectl("delete", "pod", victim, "-n", namespace, "--wait=false")
    return victim


def _wait_for_fresh_pods(
    cluster: Cluster, namespace: str, pool: str, ready: int, gone: set[str], what: str
) -> None:
    """Wait until `ready` pods of `pool` are ready and none of the pods `gone` is left."""
    p.wait_until(
        lambda: (pods := p.pods(cluster, namespace, pool))
        and len([x for x in pods if p.is_ready(x)]) == ready
        and not gone & {x["metadata"]["name"] for x in pods},
        what, READY_S,
    )  # fmt: skip


def _assert_nothing_interrupted(database_url: str, ids: list[int], why: str) -> None:
    jobs = p.jobs(database_url, ids)
    with Queue.connect(database_url) as q:
        interruptions = q.interruptions()
        workers = q.list_workers(include_removed=True)
    # The queue's own record of what happened, ahead of the operator's log.
    why = "\n".join([
        *(f"job {j.id}: {j.state} attempt {j.attempt} on worker {j.worker_id} "
          f"started {j.started_at} finished {j.finished_at} error {j.last_error_reason} "
          f"{j.last_error}" for j in jobs),
        *(f"interrupted: {i}" for i in interruptions),
        *(f"worker {w.id} {w.name}: {w.state}" for w in workers),
        why,
    ])  # fmt: skip
    assert {j.state for j in jobs} == {JobState.COMPLETED}, why
    assert [j.id for j in jobs if j.attempt != 1] == [], why
    assert interruptions == [], why


def test_a_burst_scales_a_pool_up_from_zero_runs_every_job_and_returns_to_zero(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    operator = operators.start(pod_database_url)
    p.apply(cluster, p.pool("burst", ["burst"], concurrency=2,
                            replicas={"min": 0, "max": 3},
                            autoscaling={"jobsPerWorker": 4, "scaleDownDelaySeconds": 8,
                                         "pollSeconds": 2}), namespace)  # fmt: skip
    p.wait_until(lambda: p.replicas(cluster, namespace, "burst") == 0, "a Deployment at zero")
    assert p.pods(cluster, namespace, "burst") == []

    ids = _sleep_jobs(pod_database_url, "burst", [0.5] * 24)
    p.wait_until(lambda: p.replicas(cluster, namespace, "burst") == 3, "3 replicas", 30)
    # 24 jobs at 4 per worker want 6 workers; max holds the pool at 3 and says so.
    limited = p.wait_until(
        lambda: {c["type"]: c for c in p.status(cluster, namespace, "burst").get(
            "conditions", [])}.get("ScalingLimited", {}).get("status") == "True"
        and p.status(cluster, namespace, "burst"),
        "a ScalingLimited condition",
    )  # fmt: skip
    assert limited["desiredReplicas"] == 3
    row = p.wait_until(
        lambda: (r := _table_row(cluster, namespace, "burst")) and r["DESIRED"] == "3" and r,
        "DESIRED 3 in kubectl get workerpools",
    )
    assert row["DEPTH"] != ""
    p.wait_until(lambda: p.all_finished(pod_database_url, ids), "the 24 jobs to finish", 180)
    _assert_nothing_interrupted(pod_database_url, ids, operators.logs())
    scaled = [m for r, m in p.events(cluster, namespace, "burst") if r == "Scaled"]
    assert scaled and scaled[0].startswith("scaled 0 -> 3: "), scaled
    assert "per worker" in scaled[0]

    # Idle for scaleDownDelaySeconds: back to zero, and every pod goes.
    p.wait_until(lambda: p.replicas(cluster, namespace, "burst") == 0, "zero replicas again", 90)
    p.wait_until(lambda: p.pods(cluster, namespace, "burst") == [], "the pods to go", 90)
    final = p.status(cluster, namespace, "burst")
    assert final["desiredReplicas"] == 0 and final.get("lastScaleTime"), operator.log()


def test_a_schedule_wakes_a_pool_at_zero_before_its_occurrence_and_runs_it_once(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    # Nothing runs on the pool's queue: only the operator can fire the
    # schedule, ahead by activationLeadSeconds, so that a worker is up when
    # the occurrence comes due.
    operator = operators.start(pod_database_url)
    p.apply(cluster, p.pool("tick", ["tick"], concurrency=1, replicas={"min": 0, "max": 1},
                            autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 5,
                                         "pollSeconds": 2, "activationLeadSeconds": 60}),
            namespace)  # fmt: skip
    p.wait_until(lambda: p.replicas(cluster, namespace, "tick") == 0, "a Deployment at zero")
    occurrence = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=45)).replace(microsecond=0)
    with Queue.connect(pod_database_url) as q:
        q.create_schedule(ScheduleSpec("tick-hourly", "noop", every_s=3600, queue="tick",
                                       start_at=occurrence))  # fmt: skip
    p.wait_until(lambda: p.replicas(cluster, namespace, "tick") == 1, "a worker woken", 40)
    assert dt.datetime.now(dt.UTC) < occurrence, "the pool woke only after the occurrence"

    def finished() -> Any:
        with Queue.connect(pod_database_url) as q:
            job_id = q.get_schedule("tick-hourly").last_job_id
            job = q.get_job(job_id) if job_id else None
        return job if job is not None and job.state is JobState.COMPLETED else None

    job = p.wait_until(finished, "the occurrence's job to complete", 120)
    assert job.scheduled_for == occurrence and job.started_at is not None
    late = (job.started_at - occurrence).total_seconds()
    assert 0 <= late < 15, (late, operator.log())  # not early; soon after, its worker was up
    with psycopg.connect(pod_database_url) as conn:
        fired = conn.execute(
            "SELECT count(*) FROM corral_schedule_occurrences WHERE schedule = 'tick-hourly'"
        ).fetchone()
    assert fired == (1,)
    p.wait_until(lambda: p.replicas(cluster, namespace, "tick") == 0, "zero replicas again", 90)


def _table_row(cluster: Cluster, namespace: str, name: str) -> dict[str, str] | None:
    lines = cluster.kubectl("get", "workerpools", "-n", namespace).stdout.splitlines()
    header = lines[0].split()
    for line in lines[1:]:
        cells = line.split()
        if cells and cells[0] == name:
            return dict(zip(header, cells, strict=True))
    return None


def test_scaling_down_during_long_jobs_interrupts_no_job_and_deletes_no_busy_pod(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    operators.start(pod_database_url)
    p.apply(cluster, p.pool("long", ["long"], concurrency=1,
                            replicas={"min": 0, "max": 4}, drain={"timeoutSeconds": 120},
                            autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 3,
                                         "pollSeconds": 1}), namespace)  # fmt: skip
    ids: list[int] = []
    with (
        p.PodWatch(cluster, namespace, "long") as watch,
        p.CostWatch(cluster, namespace, "long") as costs,
    ):
        for _cycle in range(2):
            # Jobs of different lengths: as each ends, demand falls by one
            # while the others still run.
            batch = _sleep_jobs(pod_database_url, "long", [3, 7, 11, 15])
            ids += batch
            p.wait_until(functools.partial(p.all_finished, pod_database_url, batch),
                         "a cycle of long jobs", 240)  # fmt: skip
        p.wait_until(lambda: p.replicas(cluster, namespace, "long") == 0, "zero replicas", 90)
        p.wait_until(lambda: p.pods(cluster, namespace, "long") == [], "every pod gone", 90)
    _assert_nothing_interrupted(pod_database_url, ids, operators.logs())
    key = f"{namespace}/long"
    busy = watch.busy_pods_deleted(
        p.jobs(pod_database_url, ids), _worker_pods(pod_database_url, key)
    )
    assert busy == [], (busy, watch.deleted_at, operators.logs())
    downs = [m for r, m in p.events(cluster, namespace, "long") if r == "Scaled" and "drained" in m]
    # Scale-downs happened while other jobs still ran (not only at the very end).
    assert len(downs) >= 2, p.events(cluster, namespace, "long")
    # Each pod a scale-down drained was marked for the ReplicaSet to remove
    # first (without the mark it removes by its own ranking, busy or not).
    drained = {pod for m in downs for pod in m.rsplit("drained: ", 1)[1].split(", ")}
    assert drained and costs.unmarked(drained) == [], (downs, costs.costs)


def test_new_work_arriving_while_workers_drain_cancels_their_drain(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    operators.start(pod_database_url)
    # A slow heartbeat keeps the drain in progress for a few seconds: the
    # worker learns of it (and reports drained) only at its next beat.
    env = [{"name": "CORRAL_HEARTBEAT_INTERVAL", "value": "10s"}]
    p.apply(cluster, p.pool("back", ["back"], concurrency=1, template={"env": env},
                            replicas={"min": 0, "max": 3},
                            autoscaling={"jobsPerWorker": 1, "scaleDownDelaySeconds": 0,
                                         "pollSeconds": 1}), namespace)  # fmt: skip
    first = _sleep_jobs(pod_database_url, "back", [1, 1, 1])
    p.wait_until(lambda: p.all_finished(pod_database_url, first), "the first jobs", 180)
    drain = p.wait_until(
        lambda: p.status(cluster, namespace, "back").get("scaleDown"), "a drain to begin", 60, 0.2
    )
    # Jobs finish one by one, so the drain may have begun with fewer than three.
    assert 1 <= len(drain["pods"]) <= 3, drain
    fleet = {w.id for w in p.workers(pod_database_url, f"{namespace}/back")}
    second = _sleep_jobs(pod_database_url, "back", [1, 1, 1])
    p.wait_until(lambda: p.all_finished(pod_database_url, second), "the second jobs", 120)
    events = p.events(cluster, namespace, "back")
    told = "\n".join(f"{r}: {m}" for r, m in events)
    assert "DrainCancelled" in [r for r, _ in events], (
        f"{drain}\n{told}\n{operators.logs()[-3000:]}"
    )
    # Workers already there ran the new jobs: the drain was undone, no pod replaced.
    second_workers = {j.worker_id for j in p.jobs(pod_database_url, second)}
    assert second_workers <= fleet, (fleet, second_workers)
    _assert_nothing_interrupted(pod_database_url, first + second, operators.logs())


def _two_busy_workers(
    cluster: Cluster, namespace: str, url: str, name: str, spec: dict[str, Any]
) -> list[Job]:
    """A pool of two workers, each running a 12 s job: those two jobs."""
    p.apply(cluster, p.pool(name, [name], **spec), namespace)
    p.wait_until(
        lambda: len([x for x in p.pods(cluster, namespace, name) if p.is_ready(x)]) == 2,
        "two ready workers", READY_S,
    )  # fmt: skip
    ids = _sleep_jobs(url, name, [12, 12])
    running = p.wait_until(
        lambda: (
            (js := p.jobs(url, ids))
            and all(j.state is JobState.RUNNING for j in js)
            and len({j.worker_id for j in js}) == 2
            and js
        ),
        "both jobs running, one per worker",
    )
    return running


def _assert_each_finished_where_it_started(database_url: str, running: list[Job], why: str) -> None:
    """The `running` jobs all finish, uninterrupted, each on the worker that had
    started it."""
    ids = [j.id for j in running]
    p.wait_until(lambda: p.all_finished(database_url, ids), "both jobs to finish", 180)
    _assert_nothing_interrupted(database_url, ids, why)
    finished = {j.id: j.worker_id for j in p.jobs(database_url, ids)}
    assert finished == {j.id: j.worker_id for j in running}


_KEEP_SPEC: dict[str, Any] = {
    "concurrency": 1,
    "replicas": {"min": 2, "max": 2},
    "drain": {"timeoutSeconds": 120},
    "autoscaling": {"jobsPerWorker": 100},
}


def test_deleting_a_busy_pod_lets_its_job_finish_on_it_before_it_goes(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    operators.start(pod_database_url)
    running = _two_busy_workers(cluster, namespace, pod_database_url, "keep", _KEEP_SPEC)
    victim = _delete_pod_of(cluster, namespace, pod_database_url, "keep", running[0])
    # Each job finished on the worker that started it, the deleted pod's too.
    _assert_each_finished_where_it_started(pod_database_url, running, operators.logs())
    _wait_for_fresh_pods(cluster, namespace, "keep", 2, {victim}, "a fresh pod in its place")


def test_rolling_out_a_new_spec_during_long_jobs_loses_and_interrupts_nothing(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    operators.start(pod_database_url)
    running = _two_busy_workers(cluster, namespace, pod_database_url, "roll", _KEEP_SPEC)
    before = {x["metadata"]["name"] for x in p.pods(cluster, namespace, "roll")}
    # A busy pod deleted by hand just as the rollout starts: both paths drain.
    _delete_pod_of(cluster, namespace, pod_database_url, "roll", running[0])
    p.apply(cluster, p.pool("roll", ["roll"], **{**_KEEP_SPEC, "concurrency": 2}), namespace)
    _assert_each_finished_where_it_started(pod_database_url, running, operators.logs())
    _wait_for_fresh_pods(cluster, namespace, "roll", 2, before, "two ready workers of the new spec")


def test_a_worker_drained_by_hand_finishes_its_job_and_its_pod_is_replaced(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    operators.start(pod_database_url)
    p.apply(cluster, p.pool("hand", ["hand"], concurrency=1, replicas={"min": 1, "max": 1},
                            autoscaling={"jobsPerWorker": 100}), namespace)  # fmt: skip
    p.wait_until(
        lambda: [x for x in p.pods(cluster, namespace, "hand") if p.is_ready(x)], "a ready worker",
        READY_S,
    )  # fmt: skip
    ids = _sleep_jobs(pod_database_url, "hand", [8])
    (job,) = p.wait_until(
        lambda: (js := p.jobs(pod_database_url, ids))[0].state is JobState.RUNNING and js,
        "the job to run",
    )  # fmt: skip
    victim = _pod_of(pod_database_url, namespace, "hand", job)
    drained = subprocess.run(
        [CORRAL, "workers", "drain", str(job.worker_id), "--database-url", pod_database_url],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert f"worker {job.worker_id} (" in drained.stdout, drained.stdout
    p.wait_until(lambda: p.all_finished(pod_database_url, ids), "the job to finish", 60)
    _assert_nothing_interrupted(pod_database_url, ids, operators.logs())
    assert p.jobs(pod_database_url, ids)[0].worker_id == job.worker_id
    # The drained worker does not linger not ready: a fresh pod takes its place.
    _wait_for_fresh_pods(
        cluster, namespace, "hand", 1, {victim}, "a fresh worker in the drained one's place"
    )


def test_an_unreachable_queue_holds_replicas_degrades_the_pool_and_scaling_resumes_after(
    cluster: Cluster, namespace: str, operators: Operators,
) -> None:  # fmt: skip
    # A server of its own, kept on disk across a stop and a start (not under
    # tmp_path: the postgres user cannot enter pytest's private directories).
    data_dir = Path(tempfile.mkdtemp(prefix="corral-e2e-outage-"))
    server = PostgresServer(listen=("127.0.0.1", POD_GATEWAY), data_dir=data_dir,
                            hba_networks=("127.0.0.1/32", POD_NETWORK))  # fmt: skip
    server.start()
    try:
        with psycopg.connect(server.dsn("postgres", host="127.0.0.1"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("outage")))
        url = server.dsn("outage", host=POD_GATEWAY)
        corral_queue.migrate(url)
        operators.start(url)
        # Short drains: the workers' long jobs are handed back when the test ends.
        p.apply(cluster, p.pool("hold", ["hold"], concurrency=5, drain={"timeoutSeconds": 5},
                                replicas={"min": 1, "max": 5},
                                autoscaling={"jobsPerWorker": 10, "scaleDownDelaySeconds": 0,
                                             "pollSeconds": 1}), namespace)  # fmt: skip
        _sleep_jobs(url, "hold", [120] * 30)  # 30 at 10 per worker: 3, for a while
        p.wait_until(lambda: p.replicas(cluster, namespace, "hold") == 3, "3 replicas", 30)
        server.stop()
        degraded = p.wait_until(
            lambda: (s := p.status(cluster, namespace, "hold")).get("phase") == "Degraded" and s,
            "the pool to be Degraded", 60,
        )  # fmt: skip
        condition = {c["type"]: c for c in degraded["conditions"]}["Degraded"]
        assert condition["reason"] == "DatabaseUnreachable"
        assert server.password not in condition["message"]
        for _ in range(10):  # replicas hold while the queue cannot be read
            assert p.replicas(cluster, namespace, "hold") == 3
            time.sleep(1)
        assert "DatabaseUnreachable" in [r for r, _ in p.events(cluster, namespace, "hold")]

        server.start()
        p.wait_until(
            lambda: {c["type"]: c["status"] for c in p.status(cluster, namespace, "hold")[
                "conditions"]}["Degraded"] == "False",
            "the pool to heal", 90,
        )  # fmt: skip
        _sleep_jobs(url, "hold", [120] * 20)  # 50 at 10 per worker: 5
        p.wait_until(lambda: p.replicas(cluster, namespace, "hold") == 5, "scaling to resume", 30)
    finally:
        operators.stop_all()
        operators.started.clear()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def test_an_operator_killed_during_a_drain_is_followed_by_one_that_finishes_it(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    first = operators.start(pod_database_url)
    spec: dict[str, Any] = {
        "concurrency": 1,
        "replicas": {"min": 1, "max": 3},
        "drain": {"timeoutSeconds": 180},
        "autoscaling": {"jobsPerWorker": 1, "scaleDownDelaySeconds": 0, "pollSeconds": 1},
    }
    p.apply(cluster, p.pool("heir", ["heir"], **spec), namespace)
    ids = _sleep_jobs(pod_database_url, "heir", [25, 25, 25])
    p.wait_until(
        lambda: (js := p.jobs(pod_database_url, ids))
        and all(j.state is JobState.RUNNING for j in js)
        and len({j.worker_id for j in js}) == 3,
        "three workers running a long job each", READY_S + 20,
    )  # fmt: skip
    with p.PodWatch(cluster, namespace, "heir", every_s=0.25) as watch:
        # max down to 1 while all three are busy: two must drain, finishing their jobs.
        p.apply(cluster, p.pool("heir", ["heir"], **{**spec, "replicas": {"min": 1, "max": 1}}),
                namespace)  # fmt: skip
        drain = p.wait_until(
            lambda: p.status(cluster, namespace, "heir").get("scaleDown"), "a drain", 30, 0.2
        )
        first.stop(signal.SIGKILL)
        operators.start(pod_database_url)
        p.wait_until(lambda: p.replicas(cluster, namespace, "heir") == 1, "one replica", 120)
        p.wait_until(lambda: p.all_finished(pod_database_url, ids), "the jobs", 120)
        p.wait_until(
            lambda: set(drain["pods"]) <= set(watch.deleted_at), "the drained pods to go", 60
        )
    _assert_nothing_interrupted(pod_database_url, ids, operators.logs())
    assert set(watch.deleted_at) == set(drain["pods"]), (watch.deleted_at, drain)
    names = _worker_pods(pod_database_url, f"{namespace}/heir")
    busy = watch.busy_pods_deleted(p.jobs(pod_database_url, ids), names)
    assert busy == [], (busy, operators.logs())
    assert p.status(cluster, namespace, "heir").get("scaleDown") is None


def test_target_wait_mode_settles_on_a_steady_count_and_starts_jobs_within_the_target(
    cluster: Cluster, namespace: str, operators: Operators, pod_database_url: str,
) -> None:  # fmt: skip
    operators.start(pod_database_url)
    p.apply(cluster, p.pool("steady", ["steady"], concurrency=2,
                            replicas={"min": 1, "max": 8},
                            autoscaling={"targetWaitSeconds": 5, "scaleDownDelaySeconds": 60,
                                         "pollSeconds": 2}), namespace)  # fmt: skip
    stop = threading.Event()
    ids: list[tuple[float, int]] = []

    def produce() -> None:
        # 2 one-second jobs a second: 2 busy slots, 2.5 at 80%, two workers of
        # 2. Clear of the edge between two workers and three: a third takes
        # jobs measured at 1.6 s or 8 waiting at once. (3 jobs a second sat
        # at 1.875 workers: a mean over 1.067 s, the sleep plus the wait for
        # its completion's flush, or 2 waiting at once asked for a third, and
        # on a loaded machine the count went up and down in the window.)
        with Queue.connect(pod_database_url) as q:
            while not stop.is_set():
                ids.append((time.monotonic(), q.enqueue("sleep", {"seconds": 1}, queue="steady")))
                stop.wait(1 / 2)

    counts: list[tuple[float, int]] = []
    producer = threading.Thread(target=produce, daemon=True)
    started = time.monotonic()
    producer.start()
    try:
        while time.monotonic() - started < 210:
            counts.append(
                (time.monotonic() - started, p.replicas(cluster, namespace, "steady") or 0)
            )
            time.sleep(2)
    finally:
        stop.set()
        producer.join(5)
    settled = [c for t, c in counts if t >= 90]
    changes = sum(1 for a, b in itertools.pairwise(settled) if a != b)
    assert changes <= 2, counts  # 120 s observed: at most one change a minute
    late = [i for t, i in ids if t - started >= 90]
    p.wait_until(lambda: p.all_finished(pod_database_url, late), "the jobs to finish", 60)
    waits = sorted(
        (j.started_at - j.enqueued_at).total_seconds()
        for j in p.jobs(pod_database_url, late)
        if j.started_at is not None
    )
    assert waits and waits[int(len(waits) * 0.95)] <= 5.0, (waits[-10:], counts)
    events = json.dumps(p.events(cluster, namespace, "steady"))
    assert "jobs/s" in events, events

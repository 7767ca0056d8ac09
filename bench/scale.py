"""`make bench-scale`: how fast corral's autoscaler reacts, and that it never
removes a busy worker, on the local control plane with real workers.

It starts its own platform in a temporary directory (the local control plane,
the node agent with two nodes, PostgreSQL on the pod bridge, corral's CRDs and
`corral operator` as a process with its /metrics), then measures, printing
each figure as it goes:

- reaction: 20 bursts onto a pool at zero; from the commit of each burst to
  the Deployment's new replicas (seen through a watch), p50 and max;
- first job: from the commit to the first job started by a worker of a pod
  created for that burst (the queue's own clock), p50;
- ready to first job: from a new worker's enrollment in the registry (it
  claims from then on; the pod's Ready condition, with its 1 s resolution,
  comes after the first claims) to its first job started, p50;
- idle drain: from the scaler's drain request to a worker that finished no
  job after it reporting drained (the registry's timestamps), p50;
- evaluations per 10,000 single enqueues (the operator's counter);
- operator RSS with 200 WorkerPools, and the time a freshly started operator
  takes to reconcile all of them;
- over the whole run: jobs interrupted (`corral_job_interruptions`) and busy
  pods deleted (a pod deleted while its worker held a job).

The last line is the summary:
`bench-scale: reaction_p50_s=<X> reaction_max_s=<X> first_job_p50_s=<X> ready_to_first_job_p50_s=<X> evaluations_per_10k=<N> operator_rss_mb_200_pools=<X> interrupted_jobs=<N> busy_pods_deleted=<N>`

Usage: python -m bench.scale [--quick] [--bursts N] [--pools N]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from bench.queue import resident_mib
from corral import queue as corral_queue
from corral.queue import JobSpec, Queue, roles
from corral_local.localcluster import LocalCluster
from corral_local.postgres import PostgresServer, free_port

ROOT = Path(__file__).resolve().parent.parent
CORRAL = str(Path(sys.executable).with_name("corral"))
POD_GATEWAY = "10.244.0.1"
NAMESPACE = "bench"
API = "corral.dev/v1alpha1"


def say(text: str) -> None:
    print(f"[bench-scale {time.strftime('%H:%M:%S')}] {text}", flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def wait_until(
    check: Callable[[], Any], what: str, timeout_s: float = 120.0, every_s: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            last = check()
            if last:
                return last
        time.sleep(every_s)
    raise RuntimeError(f"timed out after {timeout_s:.0f}s waiting for {what} (last: {last!r})")


class Platform:
    """The local control plane, the node agent, a pod-reachable PostgreSQL and
    the operator; all stopped on exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.cluster = LocalCluster(workdir / "cluster")
        self.server = PostgresServer(
            listen=("127.0.0.1", POD_GATEWAY),
            hba_networks=("127.0.0.1/32", "10.244.0.0/16"),
            settings={"max_connections": "400"},
        )
        self.agent: subprocess.Popen[bytes] | None = None
        self.operator: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.database_url = ""
        self.worker_database_url = ""

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout_s: float = 60.0
    ) -> str:
        return str(
            self.cluster.kubectl(*args, input=input, check=check, timeout_s=timeout_s).stdout
        )

    def kubectl_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.kubectl(*args, "-o", "json")))

    def __enter__(self) -> Platform:
        say("starting the local control plane")
        self.cluster.start()
        state = self.workdir / "agent"
        state.mkdir()
        ready = state / "ready.json"
        say("starting the node agent (2 nodes)")
        argv = [sys.executable, "-m", "corral_local.nodeagent",
                "--kubeconfig", str(self.cluster.kubeconfig), "--state-dir", str(state),
                "--ready-file", str(ready), "--lease-renew", "2",
                "--node", "bench-a:region=eu,zone=eu-a", "--node", "bench-b:region=eu,zone=eu-b"]  # fmt: skip
        with open(state / "agent.log", "ab") as log:
            self.agent = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        wait_until(ready.exists, "the node agent", 90)
        wait_until(self._nodes_ready, "two Ready nodes", 120, 1.0)
        say("starting PostgreSQL on the pod bridge")
        self.server.start()
        with psycopg.connect(self.server.dsn("postgres", host="127.0.0.1"), autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("bench")))
        self.database_url = self.server.dsn("bench", host=POD_GATEWAY)
        corral_queue.migrate(self.database_url)
        # Pools get a worker role's URL, as `make dev` and the chart give them.
        self.worker_database_url = roles.create_worker_role(self.database_url, "bench_worker").dsn
        self.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        for crd in ("workerpools.corral.dev", "regions.corral.dev"):
            self.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd}")
        self.kubectl("create", "namespace", NAMESPACE)
        self.start_operator()
        return self

    def _nodes_ready(self) -> bool:
        nodes = self.kubectl_json("get", "nodes")["items"]
        return len([n for n in nodes if not n["spec"].get("taints")]) >= 2

    def start_operator(self) -> None:
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig)}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        log = open(self.workdir / "operator.log", "ab")  # noqa: SIM115 - lives with the process
        self.operator = subprocess.Popen(
            [CORRAL, "operator", "--database-url", self.database_url,
             "--worker-database-url", self.worker_database_url, "--namespace", NAMESPACE,
             "--leader-lease", "", "--http-port", str(self.metrics_port), "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        wait_until(lambda: self.metric("corral_operator_leader") == 1.0, "the operator", 60)

    def stop_operator(self, sig: int = signal.SIGTERM) -> None:
        if self.operator is not None and self.operator.poll() is None:
            self.operator.send_signal(sig)
            try:
                self.operator.wait(30)
            except subprocess.TimeoutExpired:
                self.operator.kill()
                self.operator.wait()
        self.operator = None

    def operator_rss_mb(self) -> float:
        assert self.operator is not None
        return resident_mib(self.operator.pid)

    def metric(self, name: str) -> float:
        """The sum of a metric's samples on the operator's /metrics (0 when absent)."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        total, found = 0.0, False
        for line in text.splitlines():
            if line.startswith(name) and (line[len(name)] in " {"):
                total += float(line.rsplit(" ", 1)[1])
                found = True
        return total if found else 0.0

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.kubectl("delete", "workerpools", "--all", "-n", NAMESPACE, "--timeout=120s",
                         check=False)  # fmt: skip
        self.stop_operator()
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(60)
            except subprocess.TimeoutExpired:
                self.agent.kill()
        self.server.stop()
        self.cluster.stop()


def pool_body(name: str, queue: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": API, "kind": "WorkerPool",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"queues": [queue], **spec}}  # fmt: skip


class DeploymentWatch:
    """Records when each value of a Deployment's spec.replicas was first seen,
    from a `kubectl get -w` stream (one event per change, no polling gap)."""

    def __init__(self, platform: Platform, name: str) -> None:
        self.changes: list[tuple[float, int]] = []
        self._proc = subprocess.Popen(
            [str(platform.cluster.bin_dir / "kubectl"), "--kubeconfig",
             str(platform.cluster.kubeconfig), "get", "deployment", name, "-n", NAMESPACE,
             "-w", "-o", "jsonpath={.spec.replicas}{\"\\n\"}"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            with contextlib.suppress(ValueError):
                value = int(line.strip())
                if not self.changes or self.changes[-1][1] != value:
                    self.changes.append((time.time(), value))

    def first_after(self, since: float, above: int) -> float | None:
        return next((t for t, v in self.changes if t >= since and v > above), None)

    def close(self) -> None:
        self._proc.terminate()


class PodDeletions:
    """When each pod of a pool was created and deleted (deletionTimestamp -
    grace), and which pods exist now, from one `kubectl get pods -w` stream:
    the bench must not load the two cores it measures by starting a kubectl
    every half second."""

    _FIELDS = ("{.type}|{.object.metadata.name}|{.object.metadata.creationTimestamp}|"
               "{.object.metadata.deletionTimestamp}|"
               "{.object.metadata.deletionGracePeriodSeconds}{\"\\n\"}")  # fmt: skip

    def __init__(self, platform: Platform, pool: str) -> None:
        self.platform, self.pool = platform, pool
        self.deleted: dict[str, float] = {}
        self.gone: dict[str, float] = {}  # when the DELETED event came
        self.created_at: dict[str, float] = {}
        self.alive: set[str] = set()
        self._stop = threading.Event()
        self._proc: subprocess.Popen[str] | None = None
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        cluster = self.platform.cluster
        while not self._stop.is_set():
            # A watch ends when the server closes it: start another, which
            # lists the pods there are now (their ADDED events) first.
            self._proc = subprocess.Popen(
                [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig),
                 "get", "pods", "-n", NAMESPACE, "-l", f"corral.dev/pool={self.pool}",
                 "-w", "--output-watch-events", "-o", f"jsonpath={self._FIELDS}"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )  # fmt: skip
            seen: set[str] = set()
            listed = False
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                kind, name, created, deleting, grace = (line.rstrip("\n").split("|") + [""] * 5)[:5]
                if not name:
                    continue
                if kind != "ADDED" and not listed:
                    # The listing is over: what it did not name is gone.
                    listed = True
                    for gone in self.alive - seen:
                        self.gone.setdefault(gone, time.time())
                    self.alive &= seen
                if kind == "DELETED":
                    self.alive.discard(name)
                    self.gone.setdefault(name, time.time())
                else:
                    self.alive.add(name)
                    seen.add(name)
                if created:
                    self.created_at.setdefault(name, _ts(created))
                if deleting and name not in self.deleted:
                    # deletionTimestamp has whole seconds: a deletion seen as
                    # it happens is timed by the watch, to the millisecond.
                    self.deleted[name] = (
                        time.time() if listed else _ts(deleting) - float(grace or 0)
                    )
            self._stop.wait(1.0)

    def wait_empty(self, timeout_s: float) -> None:
        """Until the pool has no pod (the watch says so; no listing needed)."""
        wait_until(lambda: not self.alive, "the pool back at zero pods", timeout_s, 0.1)

    def close(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


# -- the measurements ---------------------------------------------------------------


def bursts(platform: Platform, count: int, deletions: PodDeletions) -> dict[str, float]:
    """`count` bursts onto a pool at zero: reaction and first-job times."""
    url = platform.database_url
    body = pool_body("burst", "burst", concurrency=4, replicas={"min": 0, "max": 4},
                     drain={"timeoutSeconds": 60},
                     autoscaling={"jobsPerWorker": 8, "scaleDownDelaySeconds": 2,
                                  "pollSeconds": 1})  # fmt: skip
    platform.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    wait_until(lambda: platform.kubectl("get", "deployment", "burst", "-n", NAMESPACE,
                                        check=False), "the Deployment", 60)  # fmt: skip
    watch = DeploymentWatch(platform, "burst")
    reactions: list[float] = []
    first_jobs: list[float] = []
    ready_to_first: list[float] = []
    try:
        for i in range(count):
            deletions.wait_empty(180)
            time.sleep(0.5)
            with Queue.connect(url) as q:
                # Taken before the statement: the figure includes the commit itself.
                committed = time.time()
                ids = q.enqueue_many(JobSpec("sleep", {"seconds": 0.3}, queue="burst")
                                     for _ in range(32))  # fmt: skip
            changed = wait_until(
                functools.partial(watch.first_after, committed, 0), "replicas to rise", 30
            )
            reactions.append(changed - committed)
            wait_until(functools.partial(all_finished, url, ids), "the burst's jobs", 240, 0.5)
            jobs = jobs_by_id(url, ids)
            starts = [j.started_at.timestamp() for j in jobs if j.started_at is not None]
            first_jobs.append(min(starts) - committed)
            # "Ready" is the worker's enrollment in the registry: from then on
            # it claims. (The pod's Ready condition has 1 s resolution and the
            # kubelet reports it after the first claims, so it cannot serve.)
            with Queue.connect(url) as q:
                enrolled = {w.id: w.enrolled_at.timestamp()
                            for w in q.list_workers(include_removed=True)}  # fmt: skip
            first_by_worker: dict[int, float] = {}
            for job in jobs:
                if job.worker_id in enrolled and job.started_at is not None:
                    t = job.started_at.timestamp()
                    first_by_worker[job.worker_id] = min(first_by_worker.get(job.worker_id, t), t)
            for worker_id, first in first_by_worker.items():
                ready_to_first.append(first - enrolled[worker_id])
            say(f"burst {i + 1}/{count}: reaction {reactions[-1]:.3f}s, "
                f"first job {first_jobs[-1]:.2f}s")  # fmt: skip
    finally:
        watch.close()
    # Gone before the next measurements: its pollSeconds of 1 would add an
    # evaluation a second to the count of evaluations_per_10k.
    platform.kubectl("delete", "workerpool", "burst", "-n", NAMESPACE, "--timeout=180s")
    return {
        "reaction_p50_s": statistics.median(reactions),
        "reaction_max_s": max(reactions),
        "first_job_p50_s": statistics.median(first_jobs),
        "ready_to_first_job_p50_s": statistics.median(ready_to_first)
        if ready_to_first
        else float("nan"),
    }


def all_finished(url: str, ids: list[int]) -> bool:
    return all(j.state.finished for j in jobs_by_id(url, ids))


def jobs_by_id(url: str, ids: list[int]) -> list[Any]:
    """The queue's record of each job in `ids`, in that order."""
    with Queue.connect(url) as q:
        return [q.get_job(i) for i in ids]


def idle_drains(platform: Platform) -> float:
    """p50 of drain request -> drained for idle workers (registry timestamps)."""
    with psycopg.connect(platform.database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM w.drained_at - w.drain_requested_at) FROM corral_workers w "
            "WHERE w.drain_requested_by IN ('scaler', 'self') AND w.drained_at IS NOT NULL "
            "AND w.drain_requested_at IS NOT NULL AND NOT EXISTS ("  # idle: finished nothing after
            " SELECT 1 FROM corral_jobs_finished f"
            " WHERE f.worker_id = w.id AND f.finished_at > w.drain_requested_at)"
        ).fetchall()
    values = [float(r[0]) for r in rows if r[0] is not None]
    return statistics.median(values) if values else float("nan")


def evaluations_per_10k(platform: Platform) -> float:
    """10,000 single enqueues onto a queue served by a pool whose queue is
    paused (no pods start): how many evaluations did they cost?"""
    body = pool_body("evals", "evals", replicas={"min": 0, "max": 2},
                     autoscaling={"pollSeconds": 3600})  # fmt: skip
    platform.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
    with Queue.connect(platform.database_url) as q:
        q.pause("evals", reason="bench: count evaluations only")
    time.sleep(3)
    before = platform.metric("corral_operator_scale_evaluations_total")
    with Queue.connect(platform.database_url) as q:
        started = time.monotonic()
        for _ in range(10_000):
            q.enqueue("noop", queue="evals")
        took = time.monotonic() - started
    time.sleep(2)
    after = platform.metric("corral_operator_scale_evaluations_total")
    platform.kubectl("delete", "workerpool", "evals", "-n", NAMESPACE, "--wait=false")
    say(f"10,000 single enqueues in {took:.1f}s cost {after - before:.0f} evaluation(s)")
    return after - before


def many_pools(platform: Platform, count: int) -> tuple[float, float]:
    """`count` pools: the operator's RSS once they are reconciled, and how long
    a freshly started operator takes to reconcile them all."""
    docs = [pool_body(f"p{i:03d}", f"many-{i}", replicas={"min": 0, "max": 2})
            for i in range(count)]  # fmt: skip
    for first in range(0, len(docs), 25):  # in parts: one apply of 200 can outlast a timeout
        part = docs[first : first + 25]
        platform.kubectl("apply", "-f", "-", input="\n---\n".join(yaml.safe_dump(d) for d in part),
                         timeout_s=300)  # fmt: skip

    def reconciled() -> bool:
        items = platform.kubectl_json("get", "workerpools", "-n", NAMESPACE)["items"]
        done = [i for i in items if i["metadata"]["name"].startswith("p")
                and (i.get("status") or {}).get("phase")]  # fmt: skip
        return len(done) >= count

    wait_until(reconciled, f"{count} pools reconciled", 600, 2.0)
    time.sleep(15)  # a resync round or so at steady state
    rss = platform.operator_rss_mb()
    platform.stop_operator()
    started = time.monotonic()
    platform.start_operator()
    wait_until(lambda: platform.metric("corral_operator_reconciles_total") >= count,
               "the restarted operator to reconcile every pool", 600, 0.5)  # fmt: skip
    took = time.monotonic() - started
    say(
        f"{count} pools: operator RSS {rss:.0f} MB; a restarted operator reconciled all in {took:.1f}s"
    )
    for first in range(0, len(docs), 25):  # in parts, as they were applied
        names = [d["metadata"]["name"] for d in docs[first : first + 25]]
        try:  # clean-up only (the cluster goes at the end): never lose the figures to it
            platform.kubectl("delete", "workerpool", "-n", NAMESPACE, "--wait=false", *names,
                             check=False, timeout_s=300)  # fmt: skip
        except subprocess.TimeoutExpired:
            say(f"deleting pools {names[0]}..{names[-1]} timed out; left to the teardown")
    return rss, took


def interrupted(platform: Platform) -> int:
    with Queue.connect(platform.database_url) as q:
        return len(q.interruptions())


def busy_pods_deleted(platform: Platform, deletions: PodDeletions) -> int:
    with psycopg.connect(platform.database_url) as conn:
        rows = conn.execute(
            "SELECT w.name, extract(epoch FROM f.started_at), extract(epoch FROM f.finished_at) "
            "FROM corral_jobs_finished f JOIN corral_workers w ON w.id = f.worker_id "
            "WHERE f.started_at IS NOT NULL"
        ).fetchall()
    busy = set()
    for pod, started, finished in rows:
        deleted = deletions.deleted.get(pod)
        if deleted is not None and float(started) + 0.5 < deleted < float(finished) - 0.5:
            busy.add(pod)
    return len(busy)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 bursts and 50 pools")
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--pools", type=int, default=200)
    args = parser.parse_args(argv)
    if args.quick:
        args.bursts, args.pools = min(args.bursts, 5), min(args.pools, 50)
    with (
        tempfile.TemporaryDirectory(prefix="corral-bench-scale-") as tmp,
        Platform(Path(tmp)) as platform,
    ):
        deletions = PodDeletions(platform, "burst")
        try:
            figures = bursts(platform, args.bursts, deletions)
            figures["idle_drain_p50_s"] = idle_drains(platform)
            figures["evaluations_per_10k"] = evaluations_per_10k(platform)
            rss, reconcile_s = many_pools(platform, args.pools)
            figures["interrupted_jobs"] = interrupted(platform)
            figures["busy_pods_deleted"] = busy_pods_deleted(platform, deletions)
        finally:
            deletions.close()
        say(f"idle worker drain p50 {figures['idle_drain_p50_s']:.2f}s; "
            f"reconcile {args.pools} pools after a restart {reconcile_s:.1f}s")  # fmt: skip
        print(
            f"bench-scale: reaction_p50_s={figures['reaction_p50_s']:.3f} "
            f"reaction_max_s={figures['reaction_max_s']:.3f} "
            f"first_job_p50_s={figures['first_job_p50_s']:.2f} "
            f"ready_to_first_job_p50_s={figures['ready_to_first_job_p50_s']:.2f} "
            f"evaluations_per_10k={figures['evaluations_per_10k']:.0f} "
            f"operator_rss_mb_{args.pools}_pools={rss:.0f} "
            f"interrupted_jobs={figures['interrupted_jobs']:.0f} "
            f"busy_pods_deleted={figures['busy_pods_deleted']:.0f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

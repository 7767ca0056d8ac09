"""`make bench-scale-peers`: corral's autoscaler and KEDA side by side, the same
bursts on the same cluster, database, queue and worker pods, in one run
(issue #13; how KEDA runs here: bench/keda/README.md).

It starts bench/scale.py's platform in a temporary directory (the local
control plane, the node agent with two nodes, PostgreSQL on the pod bridge,
corral's operator), then KEDA v2.21.0 from `make keda-bins`' cache (its
operator and metrics adapter as host processes, the adapter registered as
`v1beta1.external.metrics.k8s.io`; bench/_keda.py). Three systems then run the
same workload one after another on queue `peers`:

- corral: a WorkerPool with corral's defaults except `jobsPerWorker: 4` (the
  workers' concurrency) and `scaleDownDelaySeconds: 5` (keda-tuned's cooldown);
- keda-default: a plain Deployment of the same worker pods (built by the
  operator's own `desired_deployment`: image, preStop drain, grace period,
  security context) and a ScaledObject with KEDA's `postgresql` trigger
  counting the same backlog (`targetQueryValue` 4 = jobsPerWorker,
  `activationTargetQueryValue` 0 = activationDepth 1 - 1) at KEDA's defaults:
  pollingInterval 30 s, cooldownPeriod 300 s, no HPA behaviour;
- keda-tuned: the same at the fastest KEDA's documentation allows:
  pollingInterval 1 s, cooldownPeriod 5 s, an HPA behaviour with no
  stabilisation either way and 1 s policies.

The HPA controller syncs every 15 s (kube-controller-manager's default, a
cluster-wide setting, left alone). Every system has 4 replicas at most, 4 jobs
per worker at once.

The workload, per system:

- bursts from idle (0 -> N): 32 one-second jobs committed at once onto the
  system at zero replicas. Between bursts the system must be back at zero:
  corral and keda-tuned get there on their own (20 s allowed); keda-default
  (300 s cooldown, then the HPA's 300 s down-stabilisation) is scaled to 0
  with `kubectl scale`, which leaves KEDA and the HPA idle (an HPA does
  nothing at 0 replicas; KEDA scales from 0 at its next poll), the state its
  cooldown would reach. Then a random wait (seeded) up to the system's
  polling interval (1 s; keda-default 30 s), so that bursts land at every
  phase of the poll rather than in step with it;
- ramps (1 -> N): two 40-second jobs bring the system to one busy pod, then,
  after a random wait up to the period 1 -> N is looked at (KEDA: the HPA's
  15 s sync; corral 1 s), 32 one-second jobs arrive;
- scale-down: 16 jobs of 5 to 60 s (mixed, a fixed seed) from idle; demand
  falls as they finish, and the autoscaler removes pods while others work.

Figures per system: reaction p50 and max (burst commit -> the Deployment's
spec.replicas rises, from a watch), the same for ramps, burst commit -> first
job started on a new pod, commit -> the burst's last job finished, busy pods
chosen for deletion (a pod whose deletion was requested while its worker
held a job), worker-seconds spent Terminating (deletion request -> pod gone)
and jobs interrupted or run twice. Deletions count only inside measured
windows (never the bench's own resets, made with the queue empty).

Lines printed at the end:
`bench-scale-peers[<system>]: reaction_p50_s=… …` one per system, then
`bench-scale-peers: corral reaction_p50_s=… | keda-default reaction_p50_s=… | keda-tuned reaction_p50_s=…`
`bench-scale-vs-keda: reaction_ratio_tuned=<keda-tuned p50 / corral p50> busy_pods_deleted corral=<N> keda-tuned=<N>`

Usage: python -m bench.scale_peers [--quick] [--bursts N] [--ramps N] [--systems a,b]
Not part of `make test`, CI or `.ci/run`.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import yaml

from bench import _keda
from bench.scale import (
    NAMESPACE,
    DeploymentWatch,
    Platform,
    PodDeletions,
    jobs_by_id,
    pool_body,
    wait_until,
)
from corral.api import Region, WorkerPool
from corral.controller.config import DEFAULT_WORKER_IMAGE
from corral.controller.deployment import desired_deployment
from corral.controller.enrollment import desired_secret
from corral.queue import JobSpec, Queue

QUEUE = "peers"
CONCURRENCY = 4
JOBS_PER_WORKER = 4
MAX_REPLICAS = 4
BURST_JOBS, BURST_JOB_S = 32, 1.0
KEEPER_JOBS, KEEPER_JOB_S = 2, 40.0
SCALE_DOWN_JOBS, SCALE_DOWN_SEED = 16, 13
SHORT_COOLDOWN_S = 5
# What KEDA's query counts: corral's own backlog for the pool (queries.sql
# `backlog`: pending, due scheduled, running), scheduled jobs within the
# default activationLeadSeconds (5) counted as due, as corral counts them.
BACKLOG_SQL = (
    f"SELECT count(*) FROM corral_jobs WHERE queue = '{QUEUE}' AND "
    "(state IN ('pending', 'running') OR "
    "(state = 'scheduled' AND run_at <= now() + interval '5 seconds'))"
)
SYSTEMS = ("corral", "keda-tuned", "keda-default")


def say(text: str) -> None:
    print(f"[bench-scale-peers {time.strftime('%H:%M:%S')}] {text}", flush=True)


def pool_spec() -> dict[str, Any]:
    """The WorkerPool spec every system's pods are built from."""
    return {
        "concurrency": CONCURRENCY,
        "replicas": {"min": 0, "max": MAX_REPLICAS},
        "autoscaling": {"jobsPerWorker": JOBS_PER_WORKER,
                        "scaleDownDelaySeconds": SHORT_COOLDOWN_S},
    }  # fmt: skip


# -- the systems ---------------------------------------------------------------------


class System:
    """One autoscaler driving one Deployment of worker pods named `name`."""

    name: str
    # How often it looks at the queue without being told (seconds): bursts
    # start after a random wait up to this, so they land at every phase of
    # the poll, not in step with it.
    poll_s = 1.0
    # How long to let it come back to zero on its own between bursts (s).
    settles_s = 20.0
    # How often 1 -> N is looked at (KEDA: the HPA's 15 s sync): a ramp's
    # burst comes a random wait up to this after the system settles at one pod.
    resync_s = 1.0

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    @property
    def deployment(self) -> str:
        return self.name

    def create(self) -> None:
        raise NotImplementedError

    def delete(self) -> None:
        raise NotImplementedError

    def force_zero(self) -> None:
        """Put the Deployment at 0 replicas when the system does not on its own."""
        raise NotImplementedError


class Corral(System):
    name = "corral"

    def create(self) -> None:
        body = pool_body(self.name, QUEUE, **pool_spec())
        self.platform.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        wait_until(lambda: self.platform.kubectl("get", "deployment", self.name, "-n", NAMESPACE,
                                                 check=False), "corral's Deployment", 60)  # fmt: skip

    def delete(self) -> None:
        self.platform.kubectl("delete", "workerpool", self.name, "-n", NAMESPACE,
                              "--timeout=300s", timeout_s=330)  # fmt: skip

    def force_zero(self) -> None:
        raise RuntimeError(
            "corral's pool did not scale to zero within 20 s of its queue going idle "
            f"(scaleDownDelaySeconds {SHORT_COOLDOWN_S}); see operator.log"
        )


class Keda(System):
    """A plain Deployment of the same worker pods, scaled by a ScaledObject."""

    def __init__(self, platform: Platform, *, tuned: bool) -> None:
        super().__init__(platform)
        self.tuned = tuned
        self.name = "keda-tuned" if tuned else "keda-default"
        self.resync_s = 15.0  # kube-controller-manager's HPA sync period
        if not tuned:  # pollingInterval 30 s; cooldown 300 s + the HPA's 300 s
            self.poll_s, self.settles_s = 30.0, 0.0

    def _pool(self) -> WorkerPool:
        return WorkerPool.model_validate(pool_body(self.name, QUEUE, **pool_spec()))

    def _connection(self) -> str:
        """KEDA's libpq keyword string for the bench database (a host process:
        127.0.0.1), built from the platform's URL."""
        url = urlsplit(self.platform.database_url)
        return (f"host=127.0.0.1 port={url.port} user={unquote(url.username or '')} "
                f"password={unquote(url.password or '')} dbname={url.path.lstrip('/')} "
                "sslmode=disable")  # fmt: skip

    def objects(self) -> list[dict[str, Any]]:
        pool = self._pool()
        region = Region.model_validate(self.platform.kubectl_json("get", "region", "default"))
        now = datetime.now(UTC)
        # The operator mints a pool token with uses for a few rotations and
        # rotates it; nothing rotates this one, so it gets room for the run.
        with Queue.connect(self.platform.database_url) as q:
            minted = q.create_token("default", pool=f"{NAMESPACE}/{self.name}", ttl_s=6 * 3600,
                                    uses=10_000, queues=[QUEUE])  # fmt: skip
        secret = desired_secret(
            pool, region="default", token=minted.secret, token_id=str(minted.info.id),
            created_at=now, expires_at=now + timedelta(hours=6),
            database_url=self.platform.worker_database_url,
        )  # fmt: skip
        deployment = desired_deployment(pool, region=region, replicas=0,
                                        worker_image=DEFAULT_WORKER_IMAGE)  # fmt: skip
        for obj in (secret, deployment):  # not corral's: no operator owns these
            obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] = "bench-scale-peers"
        scaled: dict[str, Any] = {
            "scaleTargetRef": {"name": self.name},
            "minReplicaCount": 0,
            "maxReplicaCount": MAX_REPLICAS,
            "triggers": [{
                "type": "postgresql",
                "authenticationRef": {"name": f"{self.name}-pg"},
                "metadata": {"query": BACKLOG_SQL, "targetQueryValue": str(JOBS_PER_WORKER),
                             "activationTargetQueryValue": "0"},
            }],
        }  # fmt: skip
        if self.tuned:
            scaled["pollingInterval"] = 1  # the CRD's minimum
            scaled["cooldownPeriod"] = SHORT_COOLDOWN_S
            fast = {"stabilizationWindowSeconds": 0, "selectPolicy": "Max"}
            scaled["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": {
                "scaleUp": {**fast, "policies": [
                    {"type": "Percent", "value": 1000, "periodSeconds": 1},
                    {"type": "Pods", "value": 100, "periodSeconds": 1}]},
                "scaleDown": {**fast, "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 1}]},
            }}}  # fmt: skip
        # else: KEDA's defaults (pollingInterval 30, cooldownPeriod 300), no behaviour
        meta = {"namespace": NAMESPACE}
        return [
            secret,
            deployment,
            {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": f"{self.name}-pg", **meta},
             "stringData": {"connection": self._connection()}},
            {"apiVersion": "keda.sh/v1alpha1", "kind": "TriggerAuthentication",
             "metadata": {"name": f"{self.name}-pg", **meta},
             "spec": {"secretTargetRef": [{"parameter": "connection", "name": f"{self.name}-pg",
                                           "key": "connection"}]}},
            {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
             "metadata": {"name": self.name, **meta}, "spec": scaled},
        ]  # fmt: skip

    def create(self) -> None:
        docs = self.objects()
        self.platform.kubectl("apply", "-f", "-",
                              input="\n---\n".join(yaml.safe_dump(d) for d in docs))  # fmt: skip

        def ready() -> bool:
            so = self.platform.kubectl_json("get", "scaledobject", self.name, "-n", NAMESPACE)
            conditions = {
                c["type"]: c["status"] for c in so.get("status", {}).get("conditions", [])
            }
            return conditions.get("Ready") == "True"

        wait_until(ready, f"ScaledObject {self.name} Ready", 60, 0.5)

    def delete(self) -> None:
        for kind in ("scaledobject", "triggerauthentication", "secret"):
            self.platform.kubectl("delete", kind, f"{self.name}-pg" if kind != "scaledobject"
                                  else self.name, "-n", NAMESPACE, "--ignore-not-found")  # fmt: skip
        self.platform.kubectl("delete", "secret,deployment", "-n", NAMESPACE, "-l",
                              f"corral.dev/pool={self.name}", "--timeout=300s", timeout_s=330)  # fmt: skip

    def force_zero(self) -> None:
        self.platform.kubectl("scale", "deployment", self.name, "-n", NAMESPACE, "--replicas=0")


# -- measuring ------------------------------------------------------------------------


@dataclass
class Figures:
    reactions: list[float] = field(default_factory=list)
    ramp_reactions: list[float] = field(default_factory=list)
    first_jobs: list[float] = field(default_factory=list)
    ramp_first_jobs: list[float] = field(default_factory=list)
    drains: list[float] = field(default_factory=list)
    forced_resets: int = 0
    ramps_unmeasured: int = 0
    windows: list[tuple[float, float]] = field(default_factory=list)
    job_ids: list[int] = field(default_factory=list)


class Run:
    """The workload on one system, with a watch on its Deployment and pods."""

    def __init__(self, platform: Platform, system: System) -> None:
        self.platform, self.system = platform, system
        self.url = platform.database_url
        self.figures = Figures()
        self.watch = DeploymentWatch(platform, system.deployment)
        self.pods = PodDeletions(platform, system.name)
        self.last_seen = ""
        self.reset_pods: set[str] = set()  # deleted by the bench's resets
        self.jitter = random.Random(f"bench-scale-peers {system.name}")

    def close(self) -> None:
        self.watch.close()
        self.pods.close()

    def replicas(self) -> int:
        return self.watch.changes[-1][1] if self.watch.changes else 0

    def to_idle(self) -> None:
        """Until the system has no pod: on its own within `settles_s`, else
        forced; then a random wait up to its `poll_s`."""
        deadline = time.monotonic() + self.system.settles_s
        while time.monotonic() < deadline and (self.replicas() > 0 or self.pods.alive):
            time.sleep(0.2)
        if self.replicas() > 0:
            self.reset_pods |= self.pods.alive
            self.system.force_zero()
            self.figures.forced_resets += 1
        self.pods.wait_empty(360)
        time.sleep(1.0 + self.jitter.uniform(0, self.system.poll_s))

    def enqueue(self, seconds: list[float]) -> tuple[float, list[int]]:
        with Queue.connect(self.url) as q:
            committed = time.time()  # before the statement: the figure includes the commit
            ids = q.enqueue_many(JobSpec("sleep", {"seconds": s}, queue=QUEUE) for s in seconds)
        self.figures.job_ids += ids
        return committed, ids

    def jobs(self, ids: list[int]) -> list[Any]:
        return jobs_by_id(self.url, ids)

    def finished(self, ids: list[int], timeout_s: float) -> list[Any]:
        wait_until(lambda: all(j.state.finished for j in self.jobs(ids)),
                   f"{len(ids)} jobs to finish on {self.system.name}", timeout_s, 0.5)  # fmt: skip
        return self.jobs(ids)

    def worker_names(self) -> dict[int, str]:
        with Queue.connect(self.url) as q:
            return {w.id: w.name for w in q.list_workers(include_removed=True)}

    def burst(self, i: int, count: int) -> None:
        self.to_idle()
        committed, ids = self.enqueue([BURST_JOB_S] * BURST_JOBS)
        changed = wait_until(lambda: self.watch.first_after(committed, 0),
                             "replicas to rise from 0", 120, 0.05)  # fmt: skip
        jobs = self.finished(ids, 600)
        starts = [j.started_at.timestamp() for j in jobs]
        ends = [j.finished_at.timestamp() for j in jobs]
        f = self.figures
        f.reactions.append(changed - committed)
        f.first_jobs.append(min(starts) - committed)
        f.drains.append(max(ends) - committed)
        f.windows.append((committed, max(ends)))
        say(f"{self.system.name} burst {i + 1}/{count}: reaction {f.reactions[-1]:.2f}s, "
            f"first job {f.first_jobs[-1]:.2f}s, all done {f.drains[-1]:.1f}s")  # fmt: skip

    def ramp(self, i: int, count: int) -> None:
        self.to_idle()
        start, keepers = self.enqueue([KEEPER_JOB_S] * KEEPER_JOBS)

        def one_busy_pod() -> bool:
            states = [j.state.value for j in self.jobs(keepers)]
            self.last_seen = f"keepers {states}, replicas {self.watch.changes[-6:]}"
            return states == ["running"] * KEEPER_JOBS and self.replicas() == 1

        try:
            wait_until(one_busy_pod, "one busy pod", 180, 0.2)
        except RuntimeError:
            # Not a ramp from one pod: say what was seen, measure the rest.
            self.figures.ramps_unmeasured += 1
            say(f"{self.system.name} ramp {i + 1}/{count}: not measured, the system did not "
                f"settle at one busy pod in 180 s ({self.last_seen})")  # fmt: skip
            self.finished(keepers, 300)
            return
        time.sleep(self.jitter.uniform(0, self.system.resync_s))
        if self.replicas() != 1:
            # keda-default: back from 0, its HPA goes straight to the largest
            # count of its 300 s down-stabilisation window (the last burst's).
            self.figures.ramps_unmeasured += 1
            say(f"{self.system.name} ramp {i + 1}/{count}: not measured, {self.replicas()} "
                "replicas before the burst came (with 2 jobs waiting or running)")  # fmt: skip
            self.finished(keepers, 300)
            return
        before = set(self.pods.alive)
        committed, ids = self.enqueue([BURST_JOB_S] * BURST_JOBS)
        changed = wait_until(lambda: self.watch.first_after(committed, 1),
                             "replicas to rise from 1", 120, 0.05)  # fmt: skip
        jobs = self.finished(ids, 600)
        names = self.worker_names()
        new = [j.started_at.timestamp() for j in jobs if names.get(j.worker_id) not in before]
        ends = [j.finished_at.timestamp() for j in self.finished(keepers, 300)] + [
            j.finished_at.timestamp() for j in jobs
        ]
        f = self.figures
        f.ramp_reactions.append(changed - committed)
        if new:
            f.ramp_first_jobs.append(min(new) - committed)
        f.windows.append((start, max(ends)))
        first = f"{min(new) - committed:.2f}s" if new else "none (the burst ran on the first pod)"
        say(f"{self.system.name} ramp {i + 1}/{count}: reaction {f.ramp_reactions[-1]:.2f}s, "
            f"first job on a new pod {first}")  # fmt: skip

    def scale_down(self) -> None:
        self.to_idle()
        rng = random.Random(SCALE_DOWN_SEED)
        lengths = [round(rng.uniform(5, 60), 1) for _ in range(SCALE_DOWN_JOBS)]
        committed, ids = self.enqueue(lengths)
        jobs = self.finished(ids, 900)
        end = max(j.finished_at.timestamp() for j in jobs)
        self.figures.windows.append((committed, end))
        say(f"{self.system.name} scale-down: {len(ids)} jobs of 5-60 s done in "
            f"{end - committed:.0f}s; pods deleted while jobs ran: "
            f"{len(self.deleted_in_windows())}")  # fmt: skip

    # -- the figures over the whole run --

    def deleted_in_windows(self) -> dict[str, float]:
        """Pods the autoscaler deleted while jobs were measured (never those
        the bench's own resets deleted)."""
        return {pod: at for pod, at in self.pods.deleted.items()
                if pod not in self.reset_pods
                and any(a <= at <= b for a, b in self.figures.windows)}  # fmt: skip

    def summary(self) -> dict[str, float]:
        f = self.figures
        deleted = self.deleted_in_windows()
        with psycopg.connect(self.url) as conn:
            held = conn.execute(
                "SELECT w.name, extract(epoch FROM f.started_at), extract(epoch FROM f.finished_at) "
                "FROM corral_jobs_finished f JOIN corral_workers w ON w.id = f.worker_id "
                "WHERE f.id = ANY(%s) AND f.started_at IS NOT NULL",
                (f.job_ids,),
            ).fetchall()
        busy = {pod for pod, started, finished in held
                if pod in deleted and float(started) < deleted[pod] < float(finished)}  # fmt: skip
        spent = {p: max(0.0, self.pods.gone.get(p, time.time()) - at) for p, at in deleted.items()}
        terminating = sum(spent.values())
        longest = sorted(spent.items(), key=lambda kv: -kv[1])[:3]
        say(f"{self.system.name}: {len(deleted)} pod(s) deleted while measured; longest "
            "Terminating: " + (", ".join(f"{p} {s:.1f}s" for p, s in longest) or "none"))  # fmt: skip
        with Queue.connect(self.url) as q:
            ids = set(f.job_ids)
            interrupted = {i.job_id for i in q.interruptions() if i.job_id in ids}
        rerun = {j.id for j in self.jobs(f.job_ids) if j.attempt > 1} | interrupted

        def p50(values: list[float]) -> float:
            return statistics.median(values) if values else float("nan")

        return {
            "reaction_p50_s": p50(f.reactions),
            "reaction_max_s": max(f.reactions, default=float("nan")),
            "ramp_reaction_p50_s": p50(f.ramp_reactions),
            "ramp_reaction_max_s": max(f.ramp_reactions, default=float("nan")),
            "first_job_p50_s": p50(f.first_jobs),
            "ramp_first_job_p50_s": p50(f.ramp_first_jobs),
            "burst_done_p50_s": p50(f.drains),
            "pods_deleted": len(deleted),
            "busy_pods_deleted": len(busy),
            "terminating_worker_s": terminating,
            "interrupted_jobs": len(interrupted),
            "run_twice": len(rerun),
            "forced_resets": f.forced_resets,
            "ramps_unmeasured": f.ramps_unmeasured,
        }


def run_system(platform: Platform, system: System, bursts: int, ramps: int) -> dict[str, float]:
    say(f"--- {system.name} ---")
    system.create()
    run = Run(platform, system)
    try:
        for i in range(bursts):
            run.burst(i, bursts)
        for i in range(ramps):
            run.ramp(i, ramps)
        run.scale_down()
        time.sleep(3)  # the last deletions' DELETED events
        return run.summary()
    finally:
        run.close()
        system.delete()


def line(figures: dict[str, float]) -> str:
    """`key=value` pairs: seconds to the millisecond, worker-seconds to a
    tenth, counts whole."""
    digits = {"terminating_worker_s": 1}
    return " ".join(
        f"{k}={v:.{digits.get(k, 3 if k.endswith('_s') else 0)}f}" for k, v in figures.items()
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 bursts and 1 ramp per system")
    parser.add_argument("--bursts", type=int, default=20)
    parser.add_argument("--ramps", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS),
                        help=f"which systems, comma-separated (default {','.join(SYSTEMS)})")  # fmt: skip
    parser.add_argument("--workdir", help="keep the platform's files and logs here "
                        "(an empty directory; default: a temporary one, removed at the end)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.bursts, args.ramps = min(args.bursts, 3), min(args.ramps, 1)
    chosen = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SYSTEMS))
    if unknown:
        parser.error(f"--systems: unknown {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    try:
        _keda.built()  # before the platform: a missing build fails at once
    except _keda.KedaError as exc:
        say(f"cannot run KEDA: {exc}")
        return 2
    started = time.monotonic()
    results: dict[str, dict[str, float]] = {}
    with (
        contextlib.nullcontext(args.workdir)
        if args.workdir
        else tempfile.TemporaryDirectory(prefix="corral-bench-scale-peers-") as tmp,
        Platform(Path(tmp)) as platform,
    ):
        keda = _keda.Keda(platform, Path(tmp), say)
        try:
            keda.start()
            say(
                f"KEDA v{_keda.KEDA_VERSION} is up: operator, metrics adapter, APIService Available"
            )
            for name in chosen:
                system: System = Corral(platform) if name == "corral" else Keda(
                    platform, tuned=name == "keda-tuned")  # fmt: skip
                try:
                    results[name] = run_system(platform, system, args.bursts, args.ramps)
                except Exception as exc:  # the other systems' figures still count
                    say(f"{name} failed, left out of the comparison: {exc!r}")
                    continue
                print(f"bench-scale-peers[{name}]: {line(results[name])}", flush=True)
        finally:
            keda.stop()
    say(f"done in {(time.monotonic() - started) / 60:.1f} min: {args.bursts} bursts, "
        f"{args.ramps} ramps and a scale-down per system")  # fmt: skip
    print("bench-scale-peers: " + " | ".join(
        f"{name} reaction_p50_s={r['reaction_p50_s']:.3f}" for name, r in results.items()),
        flush=True)  # fmt: skip
    if "corral" in results and "keda-tuned" in results:
        c, t = results["corral"], results["keda-tuned"]
        out = (f"bench-scale-vs-keda: reaction_ratio_tuned={t['reaction_p50_s'] / c['reaction_p50_s']:.1f} "
               f"busy_pods_deleted corral={c['busy_pods_deleted']:.0f} "
               f"keda-tuned={t['busy_pods_deleted']:.0f}")  # fmt: skip
        if "keda-default" in results:
            d = results["keda-default"]
            out += (f" keda-default={d['busy_pods_deleted']:.0f}"
                    f" reaction_ratio_default={d['reaction_p50_s'] / c['reaction_p50_s']:.1f}"
                    f" terminating_worker_s corral={c['terminating_worker_s']:.1f}"
                    f" keda-tuned={t['terminating_worker_s']:.1f}"
                    f" keda-default={d['terminating_worker_s']:.1f}")  # fmt: skip
        print(out, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make bench-queue`: corral's queue against PgQueuer, procrastinate and
River, on one throwaway PostgreSQL server (fsync and synchronous_commit on,
shared_buffers 1 GB), no-op jobs, in one run.

Figures, each printed as it is measured:
- bulk enqueue rate (corral `enqueue_many`, one statement per 10,000 jobs);
- end-to-end drain rate: N jobs bulk-enqueued, `ANALYZE`, `CHECKPOINT`, then
  worker processes started and timed until no unfinished job is left
  (startup included), median of 3 — for corral (2 processes x concurrency
  2,000, claims up to 1,000), PgQueuer (batch 1,000, 2 processes),
  procrastinate (concurrency 10, 2 processes) and River (Go; one process,
  MaxWorkers 10,000, FetchCooldown 100 ms), each at its best setting
  (docs/benchmarks.md), each in its own fresh database; beside each end-to-end
  figure, the steady rate: jobs finished after the first second of the drain
  divided by the time they took (startup and warm-up left out); when a
  drain of that size leaves less than half a second after its first second
  (a fast machine drains 50,000 jobs in under one), the steady rate comes
  from as many extra drains of that queue sized to last about 3 s, and the
  run says so (the end-to-end figure stays the 50,000-job drain's);
- enqueue-to-start latency p50/p95/p99 under a steady 1,000 jobs/s (from the
  server's own clock: `started_at - enqueued_at`), split into the
  producer's enqueue call (a job is claimable only once it has committed,
  fsync on) and the time from that call's return to the job's start;
- completions/s with a 1,000-job backlog (bursts of 1,000 jobs onto an empty
  queue, each timed from commit to drained) and with a 1,000,000-job backlog
  (a window of a few seconds, so the backlog stays deep); no enqueue runs
  while either is measured;
- a raw-SQL ceiling: 2 sessions `DELETE ... WHERE id IN (SELECT ... FOR UPDATE
  SKIP LOCKED LIMIT 100)` on the same table, no Python work per job (issue
  #16's reference); and the same at `LIMIT 1000`, the batch corral and
  PgQueuer run at, printed beside it (`sql_ceiling_1000=`).

Corral's modules are compiled to bytecode first, as the worker image has
them (bench/_bytecode.py). The Python peers run from their own virtualenv
(~/.cache/corral/bench-venv, made on first use with pinned versions, pip's
bytecode with them); River runs from a small Go harness
(bench/river/, built once from the Go module proxy into
~/.cache/corral/river-v<version>/ by bench/_river.py; Go >= 1.26 needed, the
run fails at once without it). The last line is the summary:
`bench-queue: corral=<N> pgqueuer=<N> procrastinate=<N> river=<N> jobs/s
ratio_vs_best_peer=<R> ratio_vs_river=<R> steady_jobs_s=<N>
river_steady_jobs_s=<N> sql_ceiling=<N> p50_ms=<X> sql_ceiling_1000=<N>` (one
line), where
ratio_vs_best_peer is corral against the better of PgQueuer and procrastinate,
ratio_vs_river corral against River, and steady_jobs_s corral's steady rate.

Usage: python bench/queue.py [--quick] [--jobs N] [--runs N] [--procs N]
       [--concurrency N] [--batch N] [--pgqueuer-batch N] [--skip-peers]
       [--river-max-workers N]
       [--river-fetch-cooldown D] [--river-fetch-poll-interval D]
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__" and not __package__:
    # Run as a file, this folder would come first on sys.path and this module
    # would shadow the standard library's `queue`: put the repo root there.
    sys.path[0] = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import argparse
import contextlib
import math
import secrets
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import psycopg
from psycopg import sql

from bench import _river
from bench._bytecode import compile_corral
from corral import queue
from corral_local.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
CORRAL = str(Path(sys.executable).with_name("corral"))
PEER_VENV = Path(os.environ.get("CORRAL_CACHE", Path.home() / ".cache" / "corral")) / "bench-venv"
PEER_PACKAGES = [
    "pgqueuer==1.6.0",
    "typer<0.29",  # pgqueuer 1.6.0's `pgq run` breaks with typer 0.29 (PEERS.md)
    "asyncpg==0.32.0",
    "procrastinate==3.10.0",
    "psycopg[binary]==3.3.9",
]


def say(text: str) -> None:
    print(text, flush=True)


# -- the server and its databases ----------------------------------------------


class Bench:
    def __init__(self, server: PostgresServer) -> None:
        self.server = server

    def fresh_db(self, prefix: str) -> str:
        name = f"{prefix}_{secrets.token_hex(4)}"
        with psycopg.connect(self.server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.server.dsn(name)

    def drop_db(self, dsn: str) -> None:
        name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
        with psycopg.connect(self.server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(name)))
            )


def run_sql(dsn: str, *statements: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def scalar(conn: psycopg.Connection[Any], statement: str) -> Any:
    row = conn.execute(statement).fetchone()
    return None if row is None else row[0]


class Latency(NamedTuple):
    """One latency run's samples, in ms (`Corral.latency`)."""

    to_start: list[float]  # enqueue-to-start, the server's clock
    enqueue_calls: list[float]  # the producer's enqueue_many, durable commit included
    after_return: list[float]  # the enqueue call's return to the job's start


# A drain's steady rate needs at least this much of it after its first
# second; a shorter drain has none (NaN), and `median_drain` measures it in
# drains of about STEADY_DRAIN_S instead.
STEADY_MIN_WINDOW_S = 0.5
STEADY_DRAIN_S = 3.0


class Drain(NamedTuple):
    """One drain's rates: end to end (startup included) and steady (after
    1 s; NaN when less than STEADY_MIN_WINDOW_S of the drain came after it)."""

    rate: float
    steady: float


def wait_empty(
    dsn: str,
    probe: str,
    procs: list[subprocess.Popen[bytes]] | None = None,
    timeout_s: float = 1800,
) -> float:
    """Seconds until `probe` (a boolean query) is true, polled every 20 ms.
    Fails early, with their output, when every process in `procs` has exited."""
    return time_drain(dsn, probe, None, procs, timeout_s)[0]


def time_drain(
    dsn: str,
    probe: str,
    unfinished: str | None,
    procs: list[subprocess.Popen[bytes]] | None = None,
    timeout_s: float = 1800,
    started: float | None = None,
) -> tuple[float, float, int]:
    """(seconds until `probe` is true, second at which `unfinished` (a count
    query) was sampled once, its count then): the sample is taken 1 s after
    `started` (default: now), or never (0, 0) if `probe` is true by then."""
    started = time.perf_counter() if started is None else started
    sampled_at, left = 0.0, 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not scalar(conn, probe):
            elapsed = time.perf_counter() - started
            if unfinished and not sampled_at and elapsed >= 1.0:
                sampled_at, left = elapsed, int(scalar(conn, unfinished))
            if elapsed > timeout_s:
                raise RuntimeError(f"not drained after {timeout_s}s: {probe}")
            if procs and all(p.poll() is not None for p in procs):
                logs = "\n".join(_tail(p) for p in procs)
                raise RuntimeError(f"every worker process exited before the queue drained:\n{logs}")
            time.sleep(0.02)
    return time.perf_counter() - started, sampled_at, left


def drain_rates(
    dsn: str, n: int, probe: str, unfinished: str, procs: list[subprocess.Popen[bytes]]
) -> Drain:
    """Time a drain of `n` jobs that `procs` (started just now) work off."""
    started = time.perf_counter()
    took, sampled_at, left = time_drain(dsn, probe, unfinished, procs, started=started)
    window = took - sampled_at if sampled_at else 0.0
    steady = left / window if window >= STEADY_MIN_WINDOW_S else float("nan")
    return Drain(n / took, steady)


def worker_cpu_s(logs: list[str]) -> float:
    """Sum of the CPU seconds corral workers report in their exit line."""
    total = 0.0
    for text in logs:
        for line in text.splitlines():
            if "exiting:" in line and "s of CPU" in line:
                total += float(line.split(" completed, ")[1].split("s of CPU")[0])
    return total


def wait_until_true(predicate: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(0.05)


def _tail(proc: subprocess.Popen[bytes]) -> str:
    path = getattr(proc, "log_path", None)
    if path is None:
        return ""
    lines = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(lines[-15:])


@contextlib.contextmanager
def processes(
    commands: list[tuple[list[str], dict[str, str]]],
    logs: list[str] | None = None,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run `commands` for the block, then SIGTERM them; their output is
    appended to `logs` when given."""
    import tempfile

    procs = []
    for cmd, env in commands:
        fd, log_path = tempfile.mkstemp(prefix="bench-proc-", suffix=".log")
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=env,
            stdout=fd,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        os.close(fd)
        proc.log_path = log_path  # type: ignore[attr-defined]
        procs.append(proc)
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
            with contextlib.suppress(OSError):
                if logs is not None:
                    logs.append(Path(p.log_path).read_text(errors="replace"))  # type: ignore[attr-defined]
                os.unlink(p.log_path)  # type: ignore[attr-defined]


# -- corral ---------------------------------------------------------------------


class Corral:
    def __init__(self, bench: Bench, procs: int, concurrency: int, batch: int) -> None:
        self.bench = bench
        self.procs = procs
        self.concurrency = concurrency
        self.batch = batch
        self.cpu_s: list[float] = []  # worker CPU seconds of each drain run

    def startup_cpu_s(self, tmp: Path) -> float:
        """CPU seconds one worker spends to start, enroll and stop with no job."""
        dsn = self.prepare()
        try:
            logs: list[str] = []
            with processes(self.workers(dsn, tmp)[:1], logs), queue.Queue.connect(dsn) as q:
                wait_until_true(lambda: bool(q.list_workers()))
                time.sleep(0.5)
            return worker_cpu_s(logs)
        finally:
            self.bench.drop_db(dsn)

    def prepare(self) -> str:
        dsn = self.bench.fresh_db("corral")
        queue.migrate(dsn)
        return dsn

    @staticmethod
    def enqueue(dsn: str, n: int, chunk: int = 10_000) -> float:
        with queue.Queue.connect(dsn) as q:
            started = time.perf_counter()
            for i in range(0, n, chunk):
                q.enqueue_many([queue.JobSpec("noop")] * min(chunk, n - i))
            return time.perf_counter() - started

    def workers(
        self, dsn: str, tmp: Path, extra: tuple[str, ...] = ()
    ) -> list[tuple[list[str], dict[str, str]]]:
        with queue.Queue.connect(dsn) as q:
            token = q.create_token("default", ttl_s=3600, uses=self.procs).secret
        commands = []
        for i in range(self.procs):
            env = dict(
                os.environ,
                CORRAL_DATABASE_URL=dsn,
                CORRAL_ENROLLMENT_TOKEN=token,
                CORRAL_STATE_DIR=str(tmp / f"w{i}"),
                CORRAL_NAME=f"bench-{i}",
                CORRAL_HTTP_PORT="-1",
                CORRAL_LOG_LEVEL="INFO",
                CORRAL_QUEUES="noop",
                CORRAL_CONCURRENCY=str(self.concurrency),
                CORRAL_BATCH_SIZE=str(self.batch),
            )
            # As a pod runs it: `corral worker`, its settings in CORRAL_* variables.
            cmd = [CORRAL, "worker", *extra]
            commands.append((cmd, env))
        return commands

    def drain(self, n: int, tmp: Path) -> tuple[float, Drain]:
        """(enqueue jobs/s, drain rates) for n jobs in a fresh database."""
        dsn = self.prepare()
        try:
            enqueue_s = self.enqueue(dsn, n)
            run_sql(dsn, "ANALYZE", "CHECKPOINT")
            commands = self.workers(dsn, tmp)
            logs: list[str] = []
            with processes(commands, logs) as procs:
                drained = drain_rates(
                    dsn,
                    n,
                    "SELECT NOT EXISTS (SELECT 1 FROM corral_jobs)",
                    "SELECT count(*) FROM corral_jobs",
                    procs,
                )
            with psycopg.connect(dsn) as conn:
                done = scalar(
                    conn, "SELECT count(*) FROM corral_jobs_finished WHERE state = 'completed'"
                )
            if done != n:
                raise RuntimeError(f"corral completed {done} of {n} jobs")
            self.cpu_s.append(worker_cpu_s(logs))
            return n / enqueue_s, drained
        finally:
            self.bench.drop_db(dsn)

    def latency(self, rate: int, seconds: float, tmp: Path) -> Latency:
        """Latencies (ms) under a steady `rate` jobs/s: enqueue-to-start (the
        server's `started_at - enqueued_at`), the producer's enqueue call
        (its durable commit included: a job is claimable only after it), and
        from that call's return to the job's start (the workers' share; the
        same clock, one machine)."""
        dsn = self.prepare()
        try:
            run_sql(dsn, "ANALYZE")
            returned_at: dict[int, float] = {}
            calls: list[float] = []
            with processes(self.workers(dsn, tmp)):
                time.sleep(2.0)  # workers up and idle
                tick_s = 0.005
                per_tick = max(1, round(rate * tick_s))
                total = int(rate * seconds)
                sent = 0
                with queue.Queue.connect(dsn) as q:
                    started = time.perf_counter()
                    while sent < total:
                        due = started + (sent / per_tick) * tick_s
                        pause = due - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                        called = time.perf_counter()
                        ids = q.enqueue_many([queue.JobSpec("noop")] * per_tick)
                        calls.append((time.perf_counter() - called) * 1000)
                        returned_at.update(dict.fromkeys(ids, time.time()))
                        sent += per_tick
                    achieved = sent / (time.perf_counter() - started)
                wait_empty(dsn, "SELECT NOT EXISTS (SELECT 1 FROM corral_jobs)")
            say(f"  steady producer achieved {achieved:,.0f} jobs/s over {seconds:g}s")
            with psycopg.connect(dsn) as conn:
                rows = conn.execute(
                    "SELECT id, extract(epoch FROM started_at - enqueued_at) * 1000,"
                    " extract(epoch FROM started_at) FROM corral_jobs_finished"
                ).fetchall()
            return Latency(
                [float(r[1]) for r in rows],
                calls,
                [(float(r[2]) - returned_at[int(r[0])]) * 1000 for r in rows],
            )
        finally:
            self.bench.drop_db(dsn)

    def burst_rate(self, size: int, bursts: int, tmp: Path) -> float:
        """Completions/s with a `size`-job backlog: bursts of `size` jobs enqueued
        onto an empty queue with the workers running, each timed from its commit
        until nothing is left; median over `bursts`."""
        dsn = self.prepare()
        try:
            run_sql(dsn, "ANALYZE")
            rates = []
            with (
                processes(self.workers(dsn, tmp)),
                queue.Queue.connect(dsn) as q,
                psycopg.connect(dsn, autocommit=True) as probe,
            ):
                empty = "SELECT NOT EXISTS (SELECT 1 FROM corral_jobs)"
                specs = [queue.JobSpec("noop")] * size
                for i in range(bursts + 3):
                    q.enqueue_many(specs)
                    started = time.perf_counter()
                    while not scalar(probe, empty):
                        time.sleep(0.0005)
                    if i >= 3:  # the first bursts warm the workers up
                        rates.append(size / (time.perf_counter() - started))
            return statistics.median(rates)
        finally:
            self.bench.drop_db(dsn)

    def backlog_rate(self, backlog: int, window_s: float, tmp: Path) -> float:
        """Completions/s with `backlog` jobs waiting (workers running, measured
        over a window short enough that the backlog stays deep)."""
        dsn = self.prepare()
        try:
            self.enqueue(dsn, backlog, chunk=20_000)
            run_sql(dsn, "ANALYZE", "CHECKPOINT")
            with (
                processes(self.workers(dsn, tmp)),
                psycopg.connect(dsn, autocommit=True) as conn,
            ):
                count = "SELECT count(*) FROM corral_jobs_finished"
                # Warm up: until the workers complete their first jobs, then 1 s more.
                while not scalar(conn, count):
                    time.sleep(0.05)
                time.sleep(1.0)
                first, t0 = scalar(conn, count), time.perf_counter()
                time.sleep(window_s)
                last, t1 = scalar(conn, count), time.perf_counter()
            say(f"  backlog {backlog:,}: {backlog - last:,} still waiting at the end of the window")
            return float(last - first) / (t1 - t0)
        finally:
            self.bench.drop_db(dsn)


# The raw SQL's batches: issue #16's reference (`sql_ceiling=`), and the
# batch corral and PgQueuer run at here (`sql_ceiling_1000=`).
CEILING_LIMIT = 100
WIDE_LIMIT = 1000


def sql_ceiling(bench: Bench, n: int, *, batch: int, sessions: int = 2) -> float:
    """Rows/s of claim-and-delete in plain SQL on corral's table: no Python per job."""
    dsn = bench.fresh_db("ceiling")
    try:
        queue.migrate(dsn)
        Corral.enqueue(dsn, n)
        run_sql(dsn, "ANALYZE", "CHECKPOINT")
        statement = (
            "DELETE FROM corral_jobs WHERE id IN ("
            " SELECT id FROM corral_jobs"
            " WHERE state = 'pending' AND queue = 'noop' AND region = ''"
            " ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED)"
        )
        conns = [psycopg.connect(dsn, autocommit=True) for _ in range(sessions)]

        def drain(conn: psycopg.Connection[Any]) -> None:
            while conn.execute(statement, (batch,), prepare=True).rowcount:
                pass

        threads = [threading.Thread(target=drain, args=(c,)) for c in conns]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        took = time.perf_counter() - started
        for c in conns:
            c.close()
        return n / took
    finally:
        bench.drop_db(dsn)


# -- peers ------------------------------------------------------------------------


def peer_venv() -> Path:
    python = PEER_VENV / "bin" / "python"
    stamp = PEER_VENV / ".corral-bench-stamp"
    wanted = "\n".join(PEER_PACKAGES)
    if not python.exists() or not stamp.exists() or stamp.read_text() != wanted:
        say(f"  installing the peers into {PEER_VENV} (once)")
        subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_PACKAGES], check=True)
        stamp.write_text(wanted)
    return PEER_VENV / "bin"


def run_quietly(cmd: list[str], env: dict[str, str]) -> None:
    """Run a set-up step; show its output only when it fails."""
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{out.stdout}{out.stderr}")


def peer_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIRTUAL_ENV")}
    env.update(PYTHONPATH=str(ROOT), **extra)
    return env


def pgqueuer_drain(bench: Bench, bindir: Path, n: int, *, batch: int, procs: int = 2) -> Drain:
    dsn = bench.fresh_db("pgqueuer")
    try:
        env = peer_env(PGDSN=dsn)
        run_quietly([str(bindir / "pgq"), "--pg-dsn", dsn, "install"], env)
        run_quietly(
            [str(bindir / "python"), "-m", "bench._peers", "pgqueuer-enqueue", dsn, str(n)], env
        )
        run_sql(dsn, "ANALYZE", "CHECKPOINT")
        cmd = [
            str(bindir / "pgq"), "run", "bench._peers:pgqueuer_factory",
            "--batch-size", str(batch), "--log-level", "WARNING",
        ]  # fmt: skip
        with processes([(cmd, env)] * procs) as running:
            return drain_rates(
                dsn,
                n,
                "SELECT NOT EXISTS (SELECT 1 FROM pgqueuer)",
                "SELECT count(*) FROM pgqueuer",
                running,
            )
    finally:
        bench.drop_db(dsn)


def procrastinate_drain(
    bench: Bench, bindir: Path, n: int, procs: int = 2, concurrency: int = 10
) -> Drain:
    dsn = bench.fresh_db("procrastinate")
    try:
        env = peer_env(PROCRASTINATE_DSN=dsn)
        app = ["--app", "bench._peers.procrastinate_app"]
        run_quietly([str(bindir / "procrastinate"), *app, "schema", "--apply"], env)
        run_quietly(
            [str(bindir / "python"), "-m", "bench._peers", "procrastinate-enqueue", dsn, str(n)],
            env,
        )
        run_sql(dsn, "ANALYZE", "CHECKPOINT")
        cmd = [
            str(bindir / "procrastinate"), *app, "--log-level", "warning", "worker",
            "--concurrency", str(concurrency),
        ]  # fmt: skip
        unfinished = "FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        with processes([(cmd, env)] * procs) as running:
            return drain_rates(
                dsn,
                n,
                f"SELECT NOT EXISTS (SELECT 1 {unfinished})",
                f"SELECT count(*) {unfinished}",
                running,
            )
    finally:
        bench.drop_db(dsn)


@dataclass
class River:
    """River (Go) through its harness, bench/river/ (built by bench/_river.py)."""

    bench: Bench
    binary: Path
    max_workers: int
    cooldown: str
    poll: str
    pool_conns: int = 0
    # the work process's CPU seconds, each drain run
    cpu_s: list[float] = field(default_factory=list, init=False)

    def run(self, env: dict[str, str], command: str, *args: str) -> dict[str, str]:
        out = subprocess.run(
            [str(self.binary), command, *args], env=env, capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise _river.HarnessError(f"river-bench {command} failed:\n{out.stdout}{out.stderr}")
        return _river.parse_result(out.stdout, command)

    def drain(self, n: int) -> Drain:
        dsn = self.bench.fresh_db("river")
        try:
            env = peer_env(DATABASE_URL=dsn)
            self.run(env, "migrate")
            self.run(env, "enqueue", str(n))
            run_sql(dsn, "ANALYZE", "CHECKPOINT")
            cmd = [
                str(self.binary), "work",
                "-max-workers", str(self.max_workers),
                "-fetch-cooldown", self.cooldown,
                "-fetch-poll-interval", self.poll,
                "-pool-conns", str(self.pool_conns),
            ]  # fmt: skip
            unfinished = "FROM river_job WHERE state IN ('available', 'running', 'retryable')"
            logs: list[str] = []
            with processes([(cmd, env)], logs) as running:
                drained = drain_rates(
                    dsn,
                    n,
                    f"SELECT NOT EXISTS (SELECT 1 {unfinished})",
                    f"SELECT count(*) {unfinished}",
                    running,
                )
            with psycopg.connect(dsn) as conn:
                done = scalar(conn, "SELECT count(*) FROM river_job WHERE state = 'completed'")
            if done != n:
                raise RuntimeError(f"river completed {done} of {n} jobs")
            exit_line = _river.parse_result("".join(logs), "work")
            if int(exit_line["worked"]) != n:
                raise RuntimeError(f"river's worker ran {exit_line['worked']} of {n} jobs")
            self.cpu_s.append(float(exit_line["cpu_s"]))
            return drained
        finally:
            self.bench.drop_db(dsn)


# -- the run ----------------------------------------------------------------------------


def median_of(runs: int, what: str, fn: Callable[[], float]) -> float:
    values = []
    for i in range(runs):
        value = fn()
        values.append(value)
        say(f"  {what} run {i + 1}/{runs}: {value:,.0f} jobs/s")
    result = statistics.median(values)
    if runs > 1:
        say(f"  {what}: median {result:,.0f} (range {min(values):,.0f}-{max(values):,.0f})")
    return result


def median_drain(runs: int, what: str, n: int, fn: Callable[[int], Drain]) -> Drain:
    """Median end-to-end and steady rates over `runs` drains of `n` jobs
    (`fn(n)`), each printed. When a drain was too short for a steady rate,
    the steady rate is the median of `runs` more drains, sized to last about
    STEADY_DRAIN_S at the end-to-end rate (their end-to-end rates unused)."""
    drains = []
    for i in range(runs):
        drained = fn(n)
        drains.append(drained)
        say(
            f"  {what} run {i + 1}/{runs}: {drained.rate:,.0f} jobs/s "
            f"(steady after the first second: {drained.steady:,.0f})"
        )
    rates = [d.rate for d in drains]
    rate = statistics.median(rates)
    steadies = [d.steady for d in drains]
    if any(math.isnan(x) for x in steadies):
        longer = 10_000 * math.ceil(STEADY_DRAIN_S * rate / 10_000)
        say(
            f"  {what}: {n:,} jobs leave less than {STEADY_MIN_WINDOW_S:g} s after the first "
            f"second; the steady rate from {runs} drain(s) of {longer:,} jobs"
        )
        steadies = []
        for i in range(runs):
            drained = fn(longer)
            steadies.append(drained.steady)
            say(f"  {what}, {longer:,} jobs, run {i + 1}/{runs}: steady {drained.steady:,.0f}")
    result = Drain(rate, statistics.median(steadies))
    if runs > 1:
        say(
            f"  {what}: median {result.rate:,.0f} (range {min(rates):,.0f}-{max(rates):,.0f}), "
            f"steady {result.steady:,.0f}"
        )
    return result


def cpu_ticks(pid: int) -> tuple[str, int] | None:
    """A process's name and user + system CPU in clock ticks (/proc), or
    None when it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        return name, int(fields[11]) + int(fields[12])
    return None


def resident_mib(pid: int) -> float:
    """A process's resident memory (VmRSS) in MiB; nan where /proc has none."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def busiest(top: int = 5, interval_s: float = 1.0) -> list[str]:
    """The processes using the most CPU over the next `interval_s` (from /proc)."""

    def sample() -> dict[int, tuple[str, int]]:
        out = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (got := cpu_ticks(int(entry.name))) is not None:
                out[int(entry.name)] = got
        return out

    before = sample()
    time.sleep(interval_s)
    after = sample()
    ticks = os.sysconf("SC_CLK_TCK") * interval_s
    used = sorted(
        ((after[p][1] - before[p][1], after[p][0]) for p in after if p in before),
        reverse=True,
    )
    return [f"{100 * t / ticks:5.0f}% {name}" for t, name in used[:top] if t > 0]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run each, smaller backlogs")
    parser.add_argument("--jobs", type=int, default=50_000, help="jobs per drain run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--procs", type=int, default=2, help="corral worker processes")
    # Corral's and PgQueuer's best settings on this machine (docs/benchmarks.md,
    # "Runs of 2026-12-03 ...: every queue at its best batch size").
    parser.add_argument("--concurrency", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--pgqueuer-batch", type=int, default=1000)
    parser.add_argument(
        "--skip-peers", action="store_true", help="corral only: no PgQueuer, procrastinate, River"
    )
    parser.add_argument("--river-max-workers", type=int, default=_river.MAX_WORKERS)
    parser.add_argument(
        "--river-fetch-cooldown", default=_river.FETCH_COOLDOWN, help="a Go duration: 1ms"
    )
    parser.add_argument(
        "--river-fetch-poll-interval", default=_river.FETCH_POLL_INTERVAL, help="a Go duration"
    )
    args = parser.parse_args(argv)
    # River's harness first: a missing Go fails the run now, and its build
    # (once, a minute or two) does not compete with a measurement.
    river_binary = None if args.skip_peers else _river.harness()
    runs = 1 if args.quick else args.runs
    big_backlog = 300_000 if args.quick else 1_000_000
    latency_s = 5.0 if args.quick else 10.0
    procrastinate_jobs = 2_000 if args.quick else 5_000

    say(
        f"bench-queue: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; busiest processes now:"
    )
    for line in busiest():
        say(f"    {line}")
    building = subprocess.run(["pgrep", "-f", "go build"], capture_output=True, text=True).stdout
    say(f"    Kubernetes build running: {'yes' if building.strip() else 'no'}")
    say(
        f"corral: {args.procs} worker processes x concurrency {args.concurrency}, "
        f"claim batch {args.batch}; {args.jobs:,} no-op jobs per drain, median of {runs}"
    )
    # Bytecode as the worker image has it, and as the peers' virtualenv has
    # theirs: without it each worker launched would compile corral anew.
    compile_corral()
    server = PostgresServer(
        settings={"shared_buffers": "1GB", "max_connections": "300"},
    )
    server.start()
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    try:
        bench = Bench(server)
        with psycopg.connect(server.dsn("postgres")) as conn:
            say(f"server: {scalar(conn, 'SELECT version()').split(',')[0]}, "
                f"fsync={scalar(conn, 'SHOW fsync')}, "
                f"synchronous_commit={scalar(conn, 'SHOW synchronous_commit')}, "
                f"shared_buffers={scalar(conn, 'SHOW shared_buffers')}")  # fmt: skip
        corral = Corral(bench, args.procs, args.concurrency, args.batch)

        say(
            "\n[corral] bulk enqueue + end-to-end drain (ANALYZE after enqueue, CHECKPOINT, startup included)"
        )
        enqueue_rates: list[float] = []

        def one_drain(n: int) -> Drain:
            enq, drained = corral.drain(n, tmp / secrets.token_hex(3))
            if n == args.jobs:
                enqueue_rates.append(enq)
            return drained

        corral_drain = median_drain(runs, "corral drain", args.jobs, one_drain)
        say(f"  bulk enqueue: median {statistics.median(enqueue_rates):,.0f} jobs/s")
        startup = corral.startup_cpu_s(tmp / "idle")
        drains_cpu_s = statistics.median(corral.cpu_s[:runs])  # the drains of args.jobs
        per_job_us = 1e6 * (drains_cpu_s - args.procs * startup) / args.jobs
        say(
            f"  worker CPU per job: {per_job_us:.1f} µs (startup of an idle worker: "
            f"{startup:.2f} s of CPU, subtracted)"
        )

        say(
            "\n[raw SQL ceiling] 2 sessions, DELETE ... IN (SELECT ... FOR UPDATE SKIP LOCKED "
            f"LIMIT {CEILING_LIMIT})"
        )
        ceiling = median_of(
            runs, "sql ceiling", lambda: sql_ceiling(bench, args.jobs, batch=CEILING_LIMIT)
        )
        say(f"\n[raw SQL ceiling] the same, LIMIT {WIDE_LIMIT}")
        ceiling_1000 = median_of(
            runs,
            f"sql ceiling, LIMIT {WIDE_LIMIT}",
            lambda: sql_ceiling(bench, args.jobs, batch=WIDE_LIMIT),
        )

        say("\n[corral] enqueue-to-start latency under a steady 1,000 jobs/s")
        lat = corral.latency(1000, latency_s, tmp / "lat")
        p50, p95, p99 = (percentile(lat.to_start, p) for p in (50, 95, 99))
        say(f"  {len(lat.to_start):,} jobs: p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms")
        # A job is claimable once its enqueue commits (fsync on): the
        # producer's call bounds the figure above from below.
        for what, values in (
            ("the producer's enqueue call (5 jobs, durable commit)", lat.enqueue_calls),
            ("from that call's return to the job's start", lat.after_return),
        ):
            q50, q95, q99 = (percentile(values, p) for p in (50, 95, 99))
            say(f"    {what}: p50 {q50:.2f} ms, p95 {q95:.2f} ms, p99 {q99:.2f} ms")

        window_s = 2.0 if args.quick else 5.0
        say("\n[corral] completions/s by backlog depth (workers running)")
        small = corral.burst_rate(1_000, 10 if args.quick else 30, tmp / "b1")
        say(
            f"  1,000-job backlog (bursts of 1,000 onto an empty queue, median): {small:,.0f} jobs/s"
        )
        big = corral.backlog_rate(big_backlog, window_s, tmp / "b2")
        say(
            f"  {big_backlog:,}-job backlog ({window_s:g} s window): {big:,.0f} jobs/s "
            f"({100 * (big / small - 1):+.0f}% vs 1,000)"
        )

        nothing = Drain(0.0, 0.0)
        pgq = proc = river = nothing
        if river_binary is not None:
            bindir = peer_venv()
            say(
                f"\n[pgqueuer 1.6.0] batch {args.pgqueuer_batch}, 2 processes, "
                "ANALYZE after enqueue"
            )
            pgq = median_drain(
                runs,
                "pgqueuer drain",
                args.jobs,
                lambda n: pgqueuer_drain(bench, bindir, n, batch=args.pgqueuer_batch),
            )
            say(
                f"\n[procrastinate 3.10.0] concurrency 10, 2 processes, {procrastinate_jobs:,} jobs"
            )
            proc = median_drain(
                runs,
                "procrastinate drain",
                procrastinate_jobs,
                lambda n: procrastinate_drain(bench, bindir, n),
            )
            say(
                f"\n[river v{_river.RIVER_VERSION}] Go, 1 process, MaxWorkers "
                f"{args.river_max_workers}, FetchCooldown {args.river_fetch_cooldown}, "
                f"FetchPollInterval {args.river_fetch_poll_interval}, InsertManyFast, "
                "ANALYZE after enqueue"
            )
            river_peer = River(
                bench,
                river_binary,
                args.river_max_workers,
                args.river_fetch_cooldown,
                args.river_fetch_poll_interval,
            )
            river = median_drain(runs, "river drain", args.jobs, river_peer.drain)
            say(
                f"  worker CPU per job: "
                f"{1e6 * statistics.median(river_peer.cpu_s[:runs]) / args.jobs:.1f} µs "
                "(the Go process's user+system time, its startup included)"
            )
    finally:
        server.stop()
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)

    corral_rate = corral_drain.rate
    best_peer = max(pgq.rate, proc.rate)  # the Python peers, as before River joined
    ratio = corral_rate / best_peer if best_peer else float("nan")
    ratio_river = corral_rate / river.rate if river.rate else float("nan")
    # Issue #16's targets, each with this run's figure: met or not.
    targets = [
        ("ratio_vs_best_peer", ratio, ">=", 3.0, "{:.2f}"),
        ("ratio_vs_river", ratio_river, ">=", 1.5, "{:.2f}"),
        ("share of the SQL ceiling %", 100 * corral_rate / ceiling, ">=", 30.0, "{:.1f}"),
        ("p99 ms at 1,000 jobs/s", p99, "<=", 5.0, "{:.2f}"),
        ("worker CPU per job µs", per_job_us, "<=", 25.0, "{:.1f}"),
        ("1M backlog % of 1k", 100 * big / small, ">=", 80.0, "{:.1f}"),
    ]
    say("\ntargets:")
    for name, value, op, bound, fmt in targets:
        met = value >= bound if op == ">=" else value <= bound
        say(f"  {name} {fmt.format(value)} ({op} {bound:g}): {'met' if met else 'NOT met'}")
    say(
        f"  (not a target: {100 * corral_rate / ceiling_1000:.0f}% of the raw SQL at "
        f"LIMIT {WIDE_LIMIT}, "
        f"{ceiling_1000:,.0f} rows/s)"
    )
    say(
        f"bench-queue: corral={corral_rate:.0f} pgqueuer={pgq.rate:.0f} "
        f"procrastinate={proc.rate:.0f} river={river.rate:.0f} jobs/s "
        f"ratio_vs_best_peer={ratio:.2f} ratio_vs_river={ratio_river:.2f} "
        f"steady_jobs_s={corral_drain.steady:.0f} river_steady_jobs_s={river.steady:.0f} "
        f"sql_ceiling={ceiling:.0f} p50_ms={p50:.2f} sql_ceiling_1000={ceiling_1000:.0f}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except _river.HarnessError as error:
        print(f"bench-queue: error: {error}", file=sys.stderr)
        sys.exit(2)

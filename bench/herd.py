"""`make bench-herd`: what idle workers cost when jobs arrive one at a time.

PostgreSQL delivers a NOTIFY to every listener, and each idle corral worker
of the queue claims when it hears one: the first claim takes the job, the
others come back empty. This measures that cost as the number of idle
workers grows, on one throwaway PostgreSQL server (fsync on):

- for each fleet size in `--workers` (default 1, 2, 4, 8): a fresh database,
  that many `corral worker` processes (concurrency 10, no HTTP endpoint),
  enrolled and idle;
- `--rate` single-job enqueues a second (default 100) for `--seconds`
  (default 10), paced, until the queue is empty again;
- over that window only (start-up left out), read from /proc: the workers'
  CPU, and the CPU of the server processes serving the workers' connections
  (the producer's own is left out).

Printed per fleet size: worker CPU and server CPU per job, and the
enqueue-to-start p50/p99. The last line is the summary:
`bench-herd: rate=<R> workers=<a,b,..> worker_cpu_us=<..> server_cpu_us=<..>
pgqueuer_worker_cpu_us=<..> pgqueuer_server_cpu_us=<..>` (one line; one value
per fleet size, in order).

Then the same for PgQueuer 1.6.0, whose workers also each fetch on every
notification, from its own virtualenv (bench.queue.peer_venv): that many
`pgq run` processes (its defaults), and a producer in that virtualenv making
one `enqueue` call a job at the same pace (`bench._peers pgqueuer-trickle`);
its latency is the job's 'picked' log row against its 'queued' one.
`--skip-peers` leaves it out. (River spaces each worker's fetches by its
FetchCooldown, 100 ms by default, so it pays for the herd in latency.)
docs/worker.md ("How claims are sized") says when the cost matters.

Usage: python -m bench.herd [--workers 1,2,4,8] [--rate N] [--seconds S] [--skip-peers]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, LiteralString

import psycopg

from bench.queue import (
    Bench,
    Corral,
    cpu_ticks,
    peer_env,
    peer_venv,
    percentile,
    processes,
    run_quietly,
    say,
    wait_empty,
    wait_until_true,
)
from corral import queue
from corral_local.postgres import running


def cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the live processes among `pids`."""
    ticks = (cpu_ticks(pid) for pid in pids)
    return sum(t[1] for t in ticks if t is not None) / os.sysconf("SC_CLK_TCK")


def _backends(conn: psycopg.Connection[Any], *not_these: int) -> list[int]:
    """The server processes of this database's connections but `not_these`."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> ALL(%s)",
        ([conn.info.backend_pid, *not_these],),
    ).fetchall()
    return [int(r[0]) for r in rows]


def fleet(bench: Bench, workers: int, rate: int, seconds: float, tmp: Path) -> dict[str, float]:
    """One fleet size: per-job figures over the paced window."""
    corral = Corral(bench, workers, concurrency=10, batch=10)
    dsn = corral.prepare()
    try:
        with (
            processes(corral.workers(dsn, tmp)) as procs,
            psycopg.connect(dsn, autocommit=True) as conn,
            queue.Queue.connect(dsn) as q,
        ):
            wait_until_true(lambda: len(q.list_workers()) == workers)
            time.sleep(1.0)  # past start-up: idle, listening
            backends = _backends(conn, q.conn.info.backend_pid)
            total = int(rate * seconds)

            def produce() -> None:
                started = time.perf_counter()
                for sent in range(total):
                    pause = started + sent / rate - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    q.enqueue("noop")

            return window(
                dsn, conn, [p.pid for p in procs], backends, total, produce,
                "SELECT NOT EXISTS (SELECT 1 FROM corral_jobs)",
                "SELECT extract(epoch FROM started_at - enqueued_at) * 1000"
                " FROM corral_jobs_finished",
            )  # fmt: skip
    finally:
        bench.drop_db(dsn)


def window(
    dsn: str,
    conn: psycopg.Connection[Any],
    pids: list[int],
    backends: list[int],
    total: int,
    produce: Callable[[], object],
    empty: LiteralString,
    waits_query: LiteralString,
) -> dict[str, float]:
    """Per-job figures of `total` jobs sent by `produce` into `dsn`: CPU of the worker
    processes `pids` and of the server processes `backends` from before it
    to when `empty` holds, and the p50/p99 of `waits_query` (ms, one a job)."""
    workers0, server0 = cpu_s(pids), cpu_s(backends)
    produce()
    wait_empty(dsn, empty)
    workers1, server1 = cpu_s(pids), cpu_s(backends)
    waits = [float(r[0]) for r in conn.execute(waits_query)]
    return {
        "worker_cpu_us": (workers1 - workers0) / total * 1e6,
        "server_cpu_us": (server1 - server0) / total * 1e6,
        "p50_ms": percentile(waits, 50) if waits else float("nan"),
        "p99_ms": percentile(waits, 99) if waits else float("nan"),
    }


def pgqueuer_fleet(
    bench: Bench, bindir: Path, workers: int, rate: int, seconds: float
) -> dict[str, float]:
    """The same window for `workers` idle `pgq run` processes."""
    dsn = bench.fresh_db("herd_pgq")
    try:
        env = peer_env(PGDSN=dsn)
        run_quietly([str(bindir / "pgq"), "--pg-dsn", dsn, "install"], env)
        cmd = [
            str(bindir / "pgq"),
            "run",
            "bench._peers:pgqueuer_factory",
            "--log-level",
            "WARNING",
        ]
        with (
            processes([(cmd, env)] * workers) as procs,
            psycopg.connect(dsn, autocommit=True) as conn,
        ):
            wait_until_true(lambda: len(_backends(conn)) >= workers)
            time.sleep(2.0)  # past start-up: idle, listening
            backends = _backends(conn)  # the producer connects after this
            total = int(rate * seconds)
            trickle = [
                str(bindir / "python"), "-m", "bench._peers", "pgqueuer-trickle", dsn,
                str(total), str(rate),
            ]  # fmt: skip
            return window(
                dsn, conn, [p.pid for p in procs], backends, total,
                lambda: run_quietly(trickle, env),
                "SELECT NOT EXISTS (SELECT 1 FROM pgqueuer)",
                "SELECT extract(epoch FROM p.created - q.created) * 1000"
                " FROM pgqueuer_log p JOIN pgqueuer_log q ON q.job_id = p.job_id"
                " WHERE p.status = 'picked' AND q.status = 'queued'",
            )  # fmt: skip
    finally:
        bench.drop_db(dsn)


def _line(n: int, got: dict[str, float]) -> str:
    return (
        f"  {n} idle worker(s): worker CPU {got['worker_cpu_us']:,.0f} µs a job, "
        f"server CPU {got['server_cpu_us']:,.0f} µs a job, "
        f"enqueue-to-start p50 {got['p50_ms']:.2f} ms, p99 {got['p99_ms']:.2f} ms"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="fleet sizes, comma-separated")
    parser.add_argument("--rate", type=int, default=100, help="single-job enqueues a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the window")
    parser.add_argument("--skip-peers", action="store_true", help="corral only: no PgQueuer")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.workers.split(",")]
    say(f"bench-herd: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.rate} jobs/s one at a time for {args.seconds:g}s onto idle workers")  # fmt: skip
    results, peer = [], []
    with running() as server, tempfile.TemporaryDirectory(prefix="corral-herd-") as tmp:
        bench = Bench(server)
        say("[corral] concurrency 10 each")
        for n in sizes:
            results.append(fleet(bench, n, args.rate, args.seconds, Path(tmp) / f"n{n}"))
            say(_line(n, results[-1]))
        if not args.skip_peers:
            bindir = peer_venv()
            say("[pgqueuer 1.6.0] `pgq run`, its defaults")
            for n in sizes:
                peer.append(pgqueuer_fleet(bench, bindir, n, args.rate, args.seconds))
                say(_line(n, peer[-1]))

    def column(key: str, rows: list[dict[str, float]]) -> str:
        return ",".join(f"{r[key]:.0f}" for r in rows) or "nan"

    say(
        f"\nbench-herd: rate={args.rate} workers={args.workers} "
        f"worker_cpu_us={column('worker_cpu_us', results)} "
        f"server_cpu_us={column('server_cpu_us', results)} "
        f"pgqueuer_worker_cpu_us={column('worker_cpu_us', peer)} "
        f"pgqueuer_server_cpu_us={column('server_cpu_us', peer)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

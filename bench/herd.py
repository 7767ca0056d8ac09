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
`bench-herd: rate=<R> workers=<a,b,..> worker_cpu_us=<..> server_cpu_us=<..>`
(one line; one value per fleet size, in order).

No peer runs here: the cost is the same design in PgQueuer and River (every
listener fetches on a notification; River spaces its fetches by
FetchCooldown, 100 ms by default). docs/worker.md ("How claims are sized")
says when it matters.

Usage: python -m bench.herd [--workers 1,2,4,8] [--rate N] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import psycopg

from bench.queue import Bench, Corral, processes, say, wait_empty, wait_until_true
from corral import queue
from corral_local.postgres import running

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: Iterable[int]) -> float:
    """User + system CPU seconds of the live processes among `pids`."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


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
            pids = [p.pid for p in procs]
            workers0, server0 = cpu_s(pids), cpu_s(backends)
            total = int(rate * seconds)
            started = time.perf_counter()
            for sent in range(total):
                pause = started + sent / rate - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
                q.enqueue("noop")
            wait_empty(dsn, "SELECT NOT EXISTS (SELECT 1 FROM corral_jobs)")
            workers1, server1 = cpu_s(pids), cpu_s(backends)
            waits = sorted(
                float(r[0])
                for r in conn.execute(
                    "SELECT extract(epoch FROM started_at - enqueued_at) * 1000"
                    " FROM corral_jobs_finished"
                )
            )
        return {
            "worker_cpu_us": (workers1 - workers0) / total * 1e6,
            "server_cpu_us": (server1 - server0) / total * 1e6,
            "p50_ms": statistics.median(waits),
            "p99_ms": waits[min(len(waits) - 1, int(len(waits) * 0.99))],
        }
    finally:
        bench.drop_db(dsn)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2,4,8", help="fleet sizes, comma-separated")
    parser.add_argument("--rate", type=int, default=100, help="single-job enqueues a second")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the window")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.workers.split(",")]
    say(f"bench-herd: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; "
        f"{args.rate} jobs/s one at a time for {args.seconds:g}s onto idle workers")  # fmt: skip
    results = []
    with running() as server, tempfile.TemporaryDirectory(prefix="corral-herd-") as tmp:
        bench = Bench(server)
        for n in sizes:
            got = fleet(bench, n, args.rate, args.seconds, Path(tmp) / f"n{n}")
            results.append(got)
            say(
                f"  {n} idle worker(s): worker CPU {got['worker_cpu_us']:,.0f} µs a job, "
                f"server CPU {got['server_cpu_us']:,.0f} µs a job, "
                f"enqueue-to-start p50 {got['p50_ms']:.2f} ms, p99 {got['p99_ms']:.2f} ms"
            )

    def column(key: str, spec: str) -> str:
        return ",".join(format(r[key], spec) for r in results)

    say(
        f"\nbench-herd: rate={args.rate} workers={args.workers} "
        f"worker_cpu_us={column('worker_cpu_us', '.0f')} "
        f"server_cpu_us={column('server_cpu_us', '.0f')}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make bench-leases`: what keeping the leases of held jobs costs the server.

A worker that holds jobs for a long time (jobs waiting on the network, at a
high concurrency) keeps their leases with its heartbeat. Each renewal is a
non-HOT update of the job's row (a new row version, a primary-key and a
lease-index entry, WAL for all three). On one throwaway PostgreSQL server
(fsync on), three runs, each in a fresh database, each holding `--jobs` jobs
(default 1,000) for a window of `--seconds` (default 20) once all are held:

- **this release**: one `corral worker` (concurrency = jobs, its default
  --lease 30s and --heartbeat-interval 1s) running `sleep` jobs longer than
  the window: claims grant --lease plus its slack, and beats renew only the
  leases with less than --lease left (`corral_heartbeat_v4`, migration 0016);
- **every lease, every beat** (the previous release's heartbeat,
  `corral_heartbeat_v3`): a worker enrolled by this script claims the same
  jobs for 30 s and beats once a second naming them all, with no
  threshold, as a worker of the previous release did;
- **PgQueuer 1.6.0** (`--skip-peers` leaves it out), from its own
  virtualenv (bench.queue.peer_venv): one `pgq run` process (its defaults:
  a job is re-picked after 30 s without a heartbeat, which it writes every
  15 s; `--max-concurrent-tasks` = jobs) running `hold` jobs that sleep
  longer than the window; its rows are in its `pgqueuer` table.

Over the window only, read from the server: row versions written to
`corral_jobs` (`pg_stat_user_tables.n_tup_upd`), WAL bytes
(`pg_current_wal_insert_lsn()`), and CPU of the server processes serving
the worker. Printed per held job and minute. The last line is the summary:
`bench-leases: jobs=<N> seconds=<S> row_writes_per_job_min=<x>
every_beat_row_writes_per_job_min=<x> wal_kib_per_job_min=<x>
every_beat_wal_kib_per_job_min=<x> server_cpu_ms_per_job_min=<x>
every_beat_server_cpu_ms_per_job_min=<x> pgqueuer_row_writes_per_job_min=<x>
pgqueuer_wal_kib_per_job_min=<x> pgqueuer_server_cpu_ms_per_job_min=<x>` (one
line).

Usage: python -m bench.leases [--jobs N] [--seconds S] [--skip-peers]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from bench.herd import _backends, cpu_s
from bench.queue import (
    Bench,
    Corral,
    peer_env,
    peer_venv,
    processes,
    run_quietly,
    say,
    scalar,
    wait_until_true,
)
from corral import queue
from corral_local.postgres import running

LEASE_S = 30.0  # corral worker's default --lease
BEAT_S = 1.0  # and --heartbeat-interval


def _counters(conn: psycopg.Connection[Any], table: str) -> tuple[int, int]:
    """(row updates of `table` so far, WAL insert position in bytes)."""
    conn.execute("SELECT pg_stat_clear_snapshot()")
    row = conn.execute(
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = %s", (table,)
    ).fetchone()
    updates = row[0] if row else 0
    wal = scalar(conn, "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
    return int(updates), int(wal)


def measure(
    dsn: str,
    backends: Callable[[], list[int]],
    jobs: int,
    seconds: float,
    beat: Callable[[], None],
    table: str = "corral_jobs",
) -> dict[str, float]:
    """Per held job and minute over a window of `seconds`: row writes, WAL,
    server CPU of `backends()`. `beat()` is called once a second (the
    simulated worker's heartbeat; a no-op when a real worker beats)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        pids = backends()
        time.sleep(1.5)  # every backend's statistics flushed (at most once a second)
        updates0, wal0 = _counters(conn, table)
        cpu0 = cpu_s(pids)
        ends = time.monotonic() + seconds
        while (left := ends - time.monotonic()) > 0:
            beat()
            time.sleep(min(BEAT_S, left))
        cpu1 = cpu_s(pids)
        time.sleep(1.5)
        updates1, wal1 = _counters(conn, table)
    per = jobs * seconds / 60.0
    return {
        "row_writes": (updates1 - updates0) / per,
        "wal_kib": (wal1 - wal0) / 1024 / per,
        "server_cpu_ms": (cpu1 - cpu0) * 1000 / per,
    }


def this_release(bench: Bench, jobs: int, seconds: float, tmp: Path) -> dict[str, float]:
    corral = Corral(bench, procs=1, concurrency=jobs, batch=min(jobs, 1000))
    dsn = corral.prepare()
    try:
        with queue.Queue.connect(dsn) as q:
            q.enqueue_many([queue.JobSpec("sleep", {"seconds": 600}, queue="noop")] * jobs)
        with processes(corral.workers(dsn, tmp)) as procs, psycopg.connect(dsn) as conn:
            running_jobs = "SELECT count(*) FROM corral_jobs WHERE state = 'running'"
            wait_until_true(lambda: scalar(conn, running_jobs) == jobs, 120)
            conn.commit()
            own = conn.info.backend_pid
            got = measure(dsn, lambda: _backends(conn, own), jobs, seconds, lambda: None)
            os.killpg(procs[0].pid, signal.SIGKILL)  # its jobs are not handed back: no drain
            return got
    finally:
        bench.drop_db(dsn)


def every_beat(bench: Bench, jobs: int, seconds: float) -> dict[str, float]:
    dsn = Corral(bench, procs=1, concurrency=jobs, batch=1000).prepare()
    try:
        with queue.Queue.connect(dsn) as q:
            q.enqueue_many([queue.JobSpec("sleep", {"seconds": 600}, queue="noop")] * jobs)
            token = q.create_token("default", ttl_s=600, uses=1).secret
            me = q.enroll(token, name="every-beat", queues=["noop"], concurrency=jobs)
            held: list[int] = []
            while len(held) < jobs:
                claimed = q.claim(
                    me.worker_id, me.credential, ["noop"], batch=1000, lease_s=LEASE_S
                )
                held += [job.id for job in claimed]

            def beat() -> None:
                q.heartbeat(me.worker_id, me.credential, in_flight=jobs, lease_s=LEASE_S, held=held)

            own = q.conn.info.backend_pid
            return measure(dsn, lambda: [own], jobs, seconds, beat)
    finally:
        bench.drop_db(dsn)


def pgqueuer(bench: Bench, jobs: int, seconds: float) -> dict[str, float]:
    bindir = peer_venv()
    dsn = bench.fresh_db("leases_pgq")
    try:
        env = peer_env(PGDSN=dsn)
        run_quietly([str(bindir / "pgq"), "--pg-dsn", dsn, "install"], env)
        enqueue = [str(bindir / "python"), "-m", "bench._peers", "pgqueuer-enqueue", dsn]
        run_quietly([*enqueue, str(jobs), "hold"], env)
        cmd = [
            str(bindir / "pgq"), "run", "bench._peers:pgqueuer_hold_factory",
            "--max-concurrent-tasks", str(jobs), "--log-level", "WARNING",
        ]  # fmt: skip
        with processes([(cmd, env)]) as procs, psycopg.connect(dsn, autocommit=True) as conn:
            picked = "SELECT count(*) FROM pgqueuer WHERE status = 'picked'"
            wait_until_true(lambda: scalar(conn, picked) == jobs, 120)
            got = measure(dsn, lambda: _backends(conn), jobs, seconds, lambda: None, "pgqueuer")
            os.killpg(procs[0].pid, signal.SIGKILL)
            return got
    finally:
        bench.drop_db(dsn)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000, help="jobs held through the window")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the window")
    parser.add_argument("--skip-peers", action="store_true", help="no PgQueuer")
    args = parser.parse_args(argv)
    say(
        f"bench-leases: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {args.jobs:,} "
        f"jobs held for a {args.seconds:g}s window; --lease {LEASE_S:g}s, beats every {BEAT_S:g}s"
    )
    with running() as server, tempfile.TemporaryDirectory(prefix="corral-leases-") as tmp:
        bench = Bench(server)
        mine = this_release(bench, args.jobs, args.seconds, Path(tmp))
        say(f"[this release] renew below --lease, granted with its slack: {_line(mine)}")
        old = every_beat(bench, args.jobs, args.seconds)
        say(f"[every lease, every beat] (corral_heartbeat_v3's renewal): {_line(old)}")
        nan = float("nan")
        peer = {"row_writes": nan, "wal_kib": nan, "server_cpu_ms": nan}
        if not args.skip_peers:
            peer = pgqueuer(bench, args.jobs, args.seconds)
            say(f"[pgqueuer 1.6.0] `pgq run`, heartbeat timeout 30 s (its default): {_line(peer)}")
    say(
        f"\nbench-leases: jobs={args.jobs} seconds={args.seconds:g} "
        f"row_writes_per_job_min={mine['row_writes']:.2f} "
        f"every_beat_row_writes_per_job_min={old['row_writes']:.2f} "
        f"wal_kib_per_job_min={mine['wal_kib']:.2f} "
        f"every_beat_wal_kib_per_job_min={old['wal_kib']:.2f} "
        f"server_cpu_ms_per_job_min={mine['server_cpu_ms']:.3f} "
        f"every_beat_server_cpu_ms_per_job_min={old['server_cpu_ms']:.3f} "
        f"pgqueuer_row_writes_per_job_min={peer['row_writes']:.2f} "
        f"pgqueuer_wal_kib_per_job_min={peer['wal_kib']:.2f} "
        f"pgqueuer_server_cpu_ms_per_job_min={peer['server_cpu_ms']:.3f}"
    )
    return 0


def _line(got: dict[str, float]) -> str:
    return (
        f"{got['row_writes']:.2f} row writes, {got['wal_kib']:.2f} KiB of WAL, "
        f"{got['server_cpu_ms']:.3f} ms of server CPU a held job and minute"
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make bench-dashboard`: what each dashboard read costs at size, on a
throwaway PostgreSQL (fsync on; `corral_local.postgres`).

`seed(dsn)` fills a migrated database fast (INSERT ... SELECT over
generate_series, not the Python API): 1,000,000 finished jobs spread over
the last day (six queues, three kinds each, four regions; 2% dead with an
error, 5% completed after a failed attempt, a few cancelled), 100,000 waiting
jobs, 60 workers in the registry and 10,000 audit entries. Then the bench
catches up with rollups (each folds at most 100,000 counts rows into the
per-minute counters; the seed's one INSERT wrote one a queue and minute), times one with nothing new, and times each read the
dashboard makes (median of 5): the overview (`stats(finished=False)` and
`dispatch_status`; `stats_all` is `corral stats`, which counts the finished
table too), the charts
(`throughput`, `depth_history`), the audit trail, the job browser
(`list_jobs` by queue and state, newest first), a job by id, the workers and
regions. Each read's statements are also EXPLAINed: any that reads
`corral_jobs_finished` with a Seq Scan is named in `seqscan=`.

The last line is the summary:
`bench-dashboard: rows_finished=1000000 rows_waiting=100000 rollup_catchup_ms=… overview_ms=… … seqscan=<statement names>|none`

Then the web side: `corral dashboard` (a subprocess, as an admin runs it)
on that database, and each page fetched over HTTP (median of 5,
`page_<name>_ms=` in the same line): the Overview (which also runs the idle
rollup), the job browser unfiltered, by queue and state, dead jobs of a queue,
by text in the last error, a page deep in the keyset, a job's page, the
workers, schedules, dispatch, audit and pools (no cluster) pages.

Usage: python -m bench.dashboard [--finished N] [--waiting N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import psycopg

from corral import queue
from corral.queue import _insights, _regions, _registry, _sql
from corral.queue import _operations as op
from corral_local.postgres import free_port, running

QUEUES = ["mail", "images", "reports", "webhooks", "billing", "search"]
KINDS = ["send", "render", "sync"]
REGIONS = ["", "eu", "us", "ap"]

_FINISHED = """
INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state, run_at,
    attempt, max_attempts, worker_id, last_error, last_error_reason, enqueued_at, started_at,
    finished_at)
SELECT s.g, s.kind, s.q, jsonb_build_object('n', s.g, 'to', 'user' || (s.g %% 1000)),
       0, s.region, s.state, s.t - interval '2 s',
       CASE WHEN s.state = 'dead' THEN 5 WHEN s.g %% 20 = 0 THEN 2
            WHEN s.state = 'cancelled' THEN 0 ELSE 1 END,
       5, 1 + s.g %% 60,
       CASE WHEN s.state = 'dead' THEN 'TimeoutError: upstream ' || (s.g %% 13) || ' timed out' END,
       CASE WHEN s.state = 'dead' THEN 'timeout' END,
       s.t - interval '3 s', s.t - interval '1 s', s.t
  FROM (SELECT g, (%(queues)s::text[])[1 + (g / 3) %% 6] AS q,
               (%(kinds)s::text[])[1 + g %% 3] AS kind,
               (%(regions)s::text[])[1 + (g / 7) %% 4] AS region,
               CASE WHEN g %% 50 = 0 THEN 'dead' WHEN g %% 997 = 0 THEN 'cancelled'
                    ELSE 'completed' END AS state,
               now() - interval '1 day' + g * interval '1 day' / %(n)s AS t
          FROM generate_series(1, %(n)s) g) s
 ORDER BY s.g
"""

_WAITING = """
INSERT INTO corral_jobs (kind, queue, payload, region, state, max_attempts, run_at, enqueued_at)
SELECT (%(kinds)s::text[])[1 + g %% 3], (%(queues)s::text[])[1 + (g / 3) %% 6],
       jsonb_build_object('n', g), (%(regions)s::text[])[1 + (g / 7) %% 4], 'pending', 20,
       now() - g * interval '10 ms', now() - g * interval '10 ms'
  FROM generate_series(1, %(n)s) g
"""

_WORKERS = """
INSERT INTO corral_workers (name, region, pool, queues, concurrency, state, in_flight,
    last_heartbeat, version, credential_hash)
SELECT 'w-' || g, (ARRAY['eu', 'us', 'ap'])[1 + g %% 3], 'pool-' || (g %% 5),
       ARRAY[(%(queues)s::text[])[1 + g %% 6]], 10,
       CASE WHEN g %% 20 = 0 THEN 'draining' ELSE 'active' END, g %% 10, now(), 'bench',
       encode(sha256(convert_to('bench-credential-' || g, 'UTF8')), 'hex')
  FROM generate_series(1, 60) g
"""

_AUDIT = """
INSERT INTO corral_audit (at, actor, action, target, detail)
SELECT now() - g * interval '1 s', (ARRAY['alice', 'bob', 'carol'])[1 + g %% 3],
       (ARRAY['jobs.cancel', 'jobs.requeue', 'dispatch.pause', 'workers.drain'])[1 + g %% 4],
       g::text, jsonb_build_object('queue', (%(queues)s::text[])[1 + g %% 6])
  FROM generate_series(1, 10000) g
"""


def say(text: str) -> None:
    print(text, flush=True)


def seed(dsn: str, *, finished: int = 1_000_000, waiting: int = 100_000) -> None:
    """Migrate the database at `dsn` and fill it as described above. For a
    fresh database of a throwaway server: it inserts ids from 1 up."""
    queue.migrate(dsn)
    names = {"queues": QUEUES, "kinds": KINDS, "regions": REGIONS}
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET statement_timeout = 0")
        conn.execute(_FINISHED, {**names, "n": finished})
        conn.execute("SELECT setval(pg_get_serial_sequence('corral_jobs', 'id'), %s)", (finished,))
        conn.execute(_WAITING, {**names, "n": waiting})
        conn.execute(_WORKERS, names)
        conn.execute(_AUDIT, names)
        conn.execute("VACUUM (ANALYZE)")


def reads(q: queue.Queue, *, finished_id: int = 1000, hot_id: int | None = None) -> list[
    tuple[str, Callable[[], Any], Callable[[], op.Operation[Any]]]
]:  # fmt: skip
    """Each dashboard read: its label, the call, and its operation (for EXPLAIN)."""
    hot = hot_id if hot_id is not None else finished_id + 1
    return [
        ("overview", lambda: (q.stats(finished=False), q.dispatch_status()), lambda: _both(op.stats(finished=False), op.dispatch_status())),
        ("stats_all", lambda: q.stats(), lambda: op.stats()),
        ("throughput", lambda: q.throughput(60), lambda: _insights.throughput(60)),
        ("depth", lambda: q.depth_history(60), lambda: _insights.depth_history(60)),
        ("audit", lambda: q.audit(100), lambda: _insights.audit(100)),
        ("jobs_pending", lambda: q.list_jobs(queue="mail", state="pending"), lambda: op.list_jobs(queue="mail", state="pending")),
        ("jobs_completed", lambda: q.list_jobs(queue="mail", state="completed"), lambda: op.list_jobs(queue="mail", state="completed")),
        ("jobs_dead", lambda: q.list_jobs(queue="billing", state="dead"), lambda: op.list_jobs(queue="billing", state="dead")),
        ("job_finished", lambda: q.get_job(finished_id), lambda: op.get_job(finished_id)),
        ("job_waiting", lambda: q.get_job(hot), lambda: op.get_job(hot)),
        ("workers", lambda: q.list_workers(), lambda: _registry.list_workers()),
        ("regions", lambda: q.list_regions(), lambda: _regions.list_regions()),
    ]  # fmt: skip


def pages(finished_id: int) -> list[tuple[str, str]]:
    """Each dashboard page the bench fetches: its name and path."""
    return [
        ("overview", "/"),
        ("jobs", "/jobs"),
        ("jobs_queue_state", "/jobs?queue=mail&state=completed"),
        ("jobs_dead", "/jobs?queue=billing&state=dead"),
        ("jobs_error", "/jobs?error=upstream+3+timed"),
        ("jobs_deep_page", f"/jobs?queue=mail&before={finished_id}"),
        ("job", f"/jobs/{finished_id}"),
        ("workers", "/workers"),
        ("schedules", "/schedules"),
        ("dispatch", "/dispatch"),
        ("audit", "/audit"),
        ("pools", "/pools"),
    ]


def time_pages(dsn: str, finished_id: int) -> dict[str, str]:
    """`corral dashboard` on `dsn`, each page fetched 5 times: the median ms."""
    port = free_port()
    env = {**os.environ, "CORRAL_DATABASE_URL": dsn}
    env.pop("CORRAL_DASHBOARD_PASSWORD", None)
    cmd = [sys.executable, "-c", "from corral.cli import main; main()"]
    cmd += ["dashboard", "--port", str(port), "--no-kubernetes"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/dispatch", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"corral dashboard did not start: {err}") from None
                time.sleep(0.2)
        figures: dict[str, str] = {}
        for name, path in pages(finished_id):

            def fetch(path: str = path) -> None:
                with urllib.request.urlopen(base + path, timeout=30) as response:
                    response.read()

            fetch()  # a first fetch warms the connection and the plans
            figures[f"page_{name}_ms"] = f"{median_ms(fetch):.1f}"
            say(f"  page {name} {path}: {figures[f'page_{name}_ms']} ms (median of 5)")
        return figures
    finally:
        proc.terminate()
        proc.wait(10)


def _both(first: op.Operation[Any], second: op.Operation[Any]) -> op.Operation[Any]:
    a = yield from first
    b = yield from second
    return a, b


def median_ms(call: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def _seq_scans_finished(plan: Any) -> bool:
    if isinstance(plan, dict):
        if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") == (
            "corral_jobs_finished"
        ):
            return True
        return any(_seq_scans_finished(v) for v in plan.values())
    if isinstance(plan, list):
        return any(_seq_scans_finished(v) for v in plan)
    return False


def seq_scans(conn: psycopg.Connection[Any], operation: op.Operation[Any]) -> set[str]:
    """Run `operation` statement by statement, EXPLAINing each first; the
    names of those whose plan reads corral_jobs_finished with a Seq Scan."""
    found: set[str] = set()
    try:
        stmt = next(operation)
        while True:
            text = _sql.query(stmt.name)
            [(plan,)] = conn.execute("EXPLAIN (FORMAT JSON)\n" + text, stmt.params).fetchall()
            if _seq_scans_finished(plan):
                found.add(stmt.name)
            cur = conn.execute(text, stmt.params)
            rows = None if stmt.fetch is op.Fetch.ROWCOUNT else cur.fetchall()
            stmt = operation.send(op.result(stmt, rows, cur.rowcount))
    except StopIteration:
        pass
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--waiting", type=int, default=100_000)
    args = parser.parse_args(argv)
    say(f"bench-dashboard: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with running(settings={"shared_buffers": "512MB"}) as server:
        dsn = server.create_database(f"dash_{secrets.token_hex(4)}")
        started = time.perf_counter()
        seed(dsn, finished=args.finished, waiting=args.waiting)
        say(f"seeded {args.finished:,} finished and {args.waiting:,} waiting jobs "
            f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        figures: dict[str, str] = {}
        with queue.Queue.connect(dsn) as q:
            # Catching up from nothing: calls of at most ROLLUP_LIMIT counts rows each.
            folded, calls = 0, []
            while True:
                started = time.perf_counter()
                n = q.rollup_throughput()
                calls.append(1000 * (time.perf_counter() - started))
                folded += n
                if n < _insights.ROLLUP_LIMIT:
                    break
            figures["rollup_catchup_ms"] = f"{sum(calls):.0f}"
            figures["rollup_call_max_ms"] = f"{max(calls):.0f}"
            say(f"catching up folded {folded:,} jobs in {len(calls)} rollups, "
                f"{sum(calls):.0f} ms (slowest call {max(calls):.0f} ms)")  # fmt: skip
            figures["rollup_idle_ms"] = f"{median_ms(q.rollup_throughput):.2f}"
            hot_id = args.finished + 1
            scanned: set[str] = set()
            for label, call, operation in reads(q, finished_id=args.finished // 2, hot_id=hot_id):
                figures[f"{label}_ms"] = f"{median_ms(call):.2f}"
                scanned |= seq_scans(q.conn, operation())
                say(f"  {label}: {figures[f'{label}_ms']} ms (median of 5)")
        figures.update(time_pages(dsn, args.finished // 2))
        summary = " ".join(f"{k}={v}" for k, v in figures.items())
        say(
            f"\nbench-dashboard: rows_finished={args.finished} rows_waiting={args.waiting} "
            f"{summary} seqscan={','.join(sorted(scanned)) or 'none'}"
        )
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

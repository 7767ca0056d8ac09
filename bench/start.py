"""`make bench-start`: how long a `corral worker` takes from launch to ready
and to its first claim, on a throwaway PostgreSQL.

A scale-up is only as quick as its new workers: a pod started for a burst is
useless until it claims. Each of `--launches` runs (median printed):

- one no-op job waits in the queue, and a fresh enrollment token;
- `corral worker` is launched as a pod runs it (no argument, its settings in
  CORRAL_* variables: enroll, HTTP endpoint, one queue) and timed from just
  before the launch to the line saying it is ready, and to the job's
  `started_at` (the server's clock, on this machine);
  its resident memory is read at the ready line (/proc; the endpoint is
  serving then);
- the worker is stopped with SIGTERM.

Beside it, in the same run and with the same number of launches (medians):

- the floor of corral's stack: the same interpreter importing asyncio and
  psycopg (the collector paused, as `corral.entry` pauses it), timed to the
  line it prints then: what any asyncio worker on psycopg pays before it can
  open a connection. One floor launch follows each worker launch, and the
  median of the pairs' differences is printed as the worker's time over the
  floor: the machine's speed drifts between runs a minute apart by more
  than a change to the worker's start moves it (the floor alone measured
  177, 230 and 264 ms in three runs), and a pair's two launches share the
  moment;
- PgQueuer 1.6.0, the fastest Python peer of `make bench-queue`, from its
  own virtualenv (bench.queue.peer_venv): `pgq run` with one job waiting,
  timed to the `created` of the job's 'picked' row in its log table (the
  server's clock at the pick, as corral's `started_at` is at the claim),
  its resident memory read once that row is seen.
  `--skip-peers` leaves it out (no package index needed then).

Then one launch with `python -X importtime` lists the modules whose import
costs most on the way to the first claim (self time; the import of the
command line and what it pulls in before `corral worker` runs).

The last line is the summary:
`bench-start: ready_ms=<median> first_claim_ms=<median> imports_ms=<X> launches=<N>
pgqueuer_first_pick_ms=<median> floor_ms=<median> ready_rss_mib=<median>
pgqueuer_rss_mib=<median> over_floor_ms=<median>` (one line; the PgQueuer
figures are `nan` with `--skip-peers`)

Usage: python -m bench.start [--launches N] [--skip-peers]
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, LiteralString

import psycopg

from bench._bytecode import compile_corral
from bench.queue import peer_env, peer_venv, resident_mib, run_quietly
from corral import queue
from corral_local.postgres import running

ROOT = Path(__file__).resolve().parent.parent
CORRAL = str(Path(sys.executable).with_name("corral"))
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def say(text: str) -> None:
    print(text, flush=True)


def _env(dsn: str, token: str, state_dir: Path, **extra: str) -> dict[str, str]:
    return dict(
        os.environ,
        CORRAL_DATABASE_URL=dsn,
        CORRAL_ENROLLMENT_TOKEN=token,
        CORRAL_STATE_DIR=str(state_dir),
        CORRAL_NAME=f"start-{secrets.token_hex(2)}",
        CORRAL_HTTP_HOST="127.0.0.1",
        CORRAL_HTTP_PORT="0",
        CORRAL_QUEUES="start",
        **extra,
    )


@dataclass
class Launch:
    ready_s: float = 0.0  # launch to the "ready" line
    claim_s: float = 0.0  # launch to the waiting job's started_at
    rss_mib: float = float("nan")  # resident memory at the ready line
    stderr: str = ""


def launch(dsn: str, state_dir: Path, **extra_env: str) -> Launch:
    """One launch of a worker with one job waiting for it."""
    result = Launch()
    with queue.Queue.connect(dsn) as q:
        job_id = q.enqueue("noop", queue="start")
        token = q.create_token("default", ttl_s=600, uses=1).secret
    env = _env(dsn, token, state_dir, **extra_env)
    launched = time.time()
    proc = subprocess.Popen(
        [CORRAL, "worker"],  # as a pod runs it: its settings in CORRAL_* variables
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " ready" in line:
                result.ready_s = time.time() - launched
                result.rss_mib = resident_mib(proc.pid)
                break
        else:
            raise RuntimeError("the worker exited before it was ready (its stderr follows)")
        with psycopg.connect(dsn, autocommit=True) as conn:
            started = _wait_for(
                conn,
                "SELECT extract(epoch FROM started_at) FROM corral_jobs_finished WHERE id = %(id)s"
                " UNION ALL SELECT extract(epoch FROM started_at) FROM corral_jobs"
                " WHERE id = %(id)s AND started_at IS NOT NULL",
                "the claim of the waiting job",
                {"id": job_id},
            )
        result.claim_s = started - launched
        return result
    finally:
        result.stderr = _stop(proc)
        if not result.claim_s:
            print(result.stderr, file=sys.stderr)


def _stop(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, then its stderr (killed if it takes over 30 s to exit)."""
    proc.send_signal(signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def _wait_for(
    conn: psycopg.Connection[Any], query: LiteralString, what: str, params: Any = None
) -> float:
    """Poll `query` (one epoch value, or no row) for up to 30 s."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        row = conn.execute(query, params).fetchone()
        if row is not None:
            return float(row[0])
        time.sleep(0.005)
    raise RuntimeError(f"{what} did not happen within 30 s")


# The stack's floor: an interpreter importing asyncio and psycopg, with the
# collector paused as corral's console script pauses it (corral.entry), timed
# to the line it prints once they are imported (its exit is not counted, as a
# worker's is not).
_FLOOR = "import gc; gc.disable(); import asyncio, psycopg; print('imported', flush=True)"


def floor_launch() -> float:
    """Seconds for this interpreter to start and import asyncio and psycopg."""
    launched = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", _FLOOR], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    took = time.perf_counter() - launched
    proc.communicate()
    if line.strip() != "imported" or proc.returncode != 0:
        raise RuntimeError(f"{sys.executable} could not import asyncio and psycopg")
    return took


def pgqueuer_launch(dsn: str, bindir: Path) -> tuple[float, float]:
    """Seconds from launching `pgq run` with one job waiting to its pick, and
    its resident memory (MiB) once the pick is seen."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM pgqueuer_log")
        conn.execute(
            "INSERT INTO pgqueuer (priority, entrypoint, payload, status)"
            " VALUES (0, 'noop', NULL, 'queued')"
        )
    cmd = [str(bindir / "pgq"), "run", "bench._peers:pgqueuer_factory", "--log-level", "WARNING"]
    launched = time.time()
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=peer_env(PGDSN=dsn), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    picked = 0.0
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            picked = _wait_for(
                conn,
                "SELECT extract(epoch FROM created) FROM pgqueuer_log WHERE status = 'picked'",
                "PgQueuer's first pick",
            )
        return picked - launched, resident_mib(proc.pid)
    finally:
        err = _stop(proc)
        if not picked:
            print(err, file=sys.stderr)


def peer_medians(server: Any, launches: int, skip_peers: bool) -> tuple[float, float]:
    """Median seconds of PgQueuer's start to its pick, and its resident MiB
    then (both nan when skipped); each launch printed."""
    if skip_peers:
        say("[pgqueuer 1.6.0] skipped (--skip-peers)")
        return float("nan"), float("nan")
    bindir = peer_venv()
    dsn = server.create_database(f"start_pgq_{secrets.token_hex(4)}")
    run_quietly([str(bindir / "pgq"), "--pg-dsn", dsn, "install"], peer_env(PGDSN=dsn))
    say("[pgqueuer 1.6.0] `pgq run`, one job waiting, launch to its pick")
    pgqueuer_launch(dsn, bindir)  # the page cache, as for corral's warm-up
    picks, rss = [], []
    for i in range(launches):
        took, mib = pgqueuer_launch(dsn, bindir)
        picks.append(took)
        rss.append(mib)
        say(f"  launch {i + 1:2d}: first pick {1000 * took:6.0f} ms, {mib:.1f} MiB")
    say(f"median of {launches}: first pick {1000 * statistics.median(picks):.0f} ms, "
        f"resident then {statistics.median(rss):.1f} MiB")  # fmt: skip
    return statistics.median(picks), statistics.median(rss)


def import_offenders(dsn: str, state_dir: Path, top: int) -> tuple[float, list[str]]:
    """Import time of one launch (ms, the top-level imports summed) and the
    modules with the most self time."""
    rows = []
    for line in launch(dsn, state_dir, PYTHONPROFILEIMPORTTIME="1").stderr.splitlines():
        m = _IMPORT_LINE.match(line)
        if m:
            rows.append((int(m[1]), int(m[2]), len(m[3]), m[4]))
    total_us = sum(cumulative for _, cumulative, indent, _ in rows if indent == 1)
    worst = sorted(rows, reverse=True)[:top]
    lines = [f"{own / 1000:6.1f} ms  {name}  (with its imports {cum / 1000:.1f} ms)"
             for own, cum, _, name in worst]  # fmt: skip
    return total_us / 1000, lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=int, default=10, help="launches timed (median)")
    parser.add_argument("--top", type=int, default=12, help="import offenders listed")
    parser.add_argument(
        "--skip-peers", action="store_true", help="corral and the floor only: no PgQueuer"
    )
    args = parser.parse_args(argv)
    say(f"bench-start: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {CORRAL}")
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-start-"))
    with running() as server:
        dsn = server.create_database(f"start_{secrets.token_hex(4)}")
        queue.migrate(dsn)
        compile_corral()  # bytecode as an image has it (bench/_bytecode.py)
        launch(dsn, tmp / "warm-up")  # the page cache, as on a node that ran one before
        floor_launch()  # the floor's own warm-up
        ready, claim, rss, floor = [], [], [], []
        for i in range(args.launches):
            one = launch(dsn, tmp / f"w{i}")
            floor.append(floor_launch())  # its pair: the same moment's machine
            ready.append(one.ready_s)
            claim.append(one.claim_s)
            rss.append(one.rss_mib)
            say(f"  launch {i + 1:2d}: ready {1000 * one.ready_s:6.0f} ms, "
                f"first claim {1000 * one.claim_s:6.0f} ms, {one.rss_mib:.1f} MiB; "
                f"floor {1000 * floor[-1]:4.0f} ms")  # fmt: skip
        ready_ms, claim_ms = 1000 * statistics.median(ready), 1000 * statistics.median(claim)
        rss_mib = statistics.median(rss)
        floor_ms = 1000 * statistics.median(floor)
        over_ms = 1000 * statistics.median(c - f for c, f in zip(claim, floor, strict=True))
        say(f"median of {args.launches}: ready {ready_ms:.0f} ms, first claim {claim_ms:.0f} ms, "
            f"resident at ready {rss_mib:.1f} MiB")  # fmt: skip
        say(f"[floor] python: import asyncio, psycopg (no collector), median of "
            f"{args.launches}: {floor_ms:.0f} ms; the first claim over it, median of the "
            f"pairs: {over_ms:.0f} ms")  # fmt: skip
        pgqueuer_s, pgqueuer_mib = peer_medians(server, args.launches, args.skip_peers)
        imports_ms, offenders = import_offenders(dsn, tmp / "importtime", args.top)
        say(f"\nimports of one launch: {imports_ms:.0f} ms; the most self time:")
        for line in offenders:
            say(f"  {line}")
        say(
            f"\nbench-start: ready_ms={ready_ms:.0f} first_claim_ms={claim_ms:.0f} "
            f"imports_ms={imports_ms:.0f} launches={args.launches} "
            f"pgqueuer_first_pick_ms={1000 * pgqueuer_s:.0f} floor_ms={floor_ms:.0f} "
            f"ready_rss_mib={rss_mib:.1f} pgqueuer_rss_mib={pgqueuer_mib:.1f} "
            f"over_floor_ms={over_ms:.0f}"
        )
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

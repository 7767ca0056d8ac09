"""`make bench-start`: how long a `corral worker` takes from launch to ready
and to its first claim, on a throwaway PostgreSQL.

A scale-up is only as quick as its new workers: a pod started for a burst is
useless until it claims. Each of `--launches` runs (median printed):

- one no-op job waits in the queue, and a fresh enrollment token;
- `corral worker` is launched (as a pod would run it: enroll, HTTP endpoint,
  one queue) and timed from just before the launch to the line saying it is
  ready, and to the job's `started_at` (the server's clock, on this machine);
- the worker is stopped with SIGTERM.

Then one launch with `python -X importtime` lists the modules whose import
costs most on the way to the first claim (self time; the import of the
command line and what it pulls in before `corral worker` runs).

The last line is the summary:
`bench-start: ready_ms=<median> first_claim_ms=<median> imports_ms=<X> launches=<N>`

Usage: python -m bench.start [--launches N]
"""

from __future__ import annotations

import argparse
import compileall
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

import psycopg

import corral
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
        **extra,
    )


@dataclass
class Launch:
    ready_s: float = 0.0  # launch to the "ready" line
    claim_s: float = 0.0  # launch to the waiting job's started_at
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
        [CORRAL, "worker", "-q", "start"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if " ready" in line:
                result.ready_s = time.time() - launched
                break
        else:
            raise RuntimeError("the worker exited before it was ready (its stderr follows)")
        with psycopg.connect(dsn, autocommit=True) as conn:
            deadline = time.monotonic() + 30
            started = None
            while started is None and time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT extract(epoch FROM started_at) FROM corral_jobs_finished WHERE id = %s"
                    " UNION ALL SELECT extract(epoch FROM started_at) FROM corral_jobs"
                    " WHERE id = %s AND started_at IS NOT NULL",
                    (job_id, job_id),
                ).fetchone()
                started = None if row is None else float(row[0])
                time.sleep(0.005)
        if started is None:
            raise RuntimeError("the worker did not claim the waiting job within 30 s")
        result.claim_s = started - launched
        return result
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        result.stderr = err
        if not result.claim_s:
            print(err, file=sys.stderr)


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
    args = parser.parse_args(argv)
    say(f"bench-start: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}; {CORRAL}")
    tmp = Path(tempfile.mkdtemp(prefix="corral-bench-start-"))
    with running() as server:
        dsn = server.create_database(f"start_{secrets.token_hex(4)}")
        queue.migrate(dsn)
        # Bytecode as an image has it (pip compiles what it installs; the
        # editable checkout here has none, and a shell exporting
        # PYTHONDONTWRITEBYTECODE=1 would have every launch compile corral anew).
        compileall.compile_dir(str(Path(corral.__file__).parent), quiet=1)
        launch(dsn, tmp / "warm-up")  # the page cache, as on a node that ran one before
        ready, claim = [], []
        for i in range(args.launches):
            one = launch(dsn, tmp / f"w{i}")
            ready.append(one.ready_s)
            claim.append(one.claim_s)
            say(f"  launch {i + 1:2d}: ready {1000 * one.ready_s:6.0f} ms, "
                f"first claim {1000 * one.claim_s:6.0f} ms")  # fmt: skip
        ready_ms, claim_ms = 1000 * statistics.median(ready), 1000 * statistics.median(claim)
        say(f"median of {args.launches}: ready {ready_ms:.0f} ms, first claim {claim_ms:.0f} ms")
        imports_ms, offenders = import_offenders(dsn, tmp / "importtime", args.top)
        say(f"\nimports of one launch: {imports_ms:.0f} ms; the most self time:")
        for line in offenders:
            say(f"  {line}")
        say(
            f"\nbench-start: ready_ms={ready_ms:.0f} first_claim_ms={claim_ms:.0f} "
            f"imports_ms={imports_ms:.0f} launches={args.launches}"
        )
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""`make bench-ack-versions`: what one claim and one completion cost the
server per job, for each version a worker of this or the previous release
calls, measured side by side on one throwaway PostgreSQL server.

Each version pair (claim_v4 + complete_v4, claim_v5 + complete_v5) gets its
own database on the same server, with the same backlog of no-op jobs and one
enrolled worker. A raw client loop (no worker runtime, no handler) claims a
batch and completes it, taking the pairs in turn batch by batch, so that the
machine's drifts hit every pair alike, until every backlog is drained.
Printed for each pair: the client's wall time per job (round trips, rows
decoded) and the server's time per job inside the two functions
(`pg_stat_user_functions`, `track_functions = 'pl'`). Never asserts.

The last line: `bench-ack-versions: jobs=<N> batch=<N>
v4_server_us=<X> v5_server_us=<X> server_saved_pct=<X> v4_wall_us=<X>
v5_wall_us=<X>`.

Usage: python -m bench.ack_versions [--jobs N] [--batch N]
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from corral import queue
from corral_local.postgres import running

VERSIONS = ("v4", "v5")
CLAIM = "SELECT * FROM corral_claim_{v}(%s::int8, %s::text, %s::text[], %s::int4, %s::float8)"
COMPLETE = (
    "SELECT corral_complete_{v}(%s::int8, %s::text, %s::int8[], %s::int8[], %s::text[]::jsonb[])"
)


@dataclass
class Loop:
    """One version's database, worker and running totals."""

    version: str
    dsn: str
    conn: psycopg.Connection[Any]
    worker_id: int
    credential: str
    wall_s: float = 0.0
    jobs: int = 0
    drained: bool = False

    def round(self, batch: int) -> None:
        """Claim one batch and complete it."""
        started = time.perf_counter()
        rows = self.conn.execute(
            CLAIM.format(v=self.version),
            (self.worker_id, self.credential, ["q"], batch, 60.0),
            prepare=True,
            binary=True,
        ).fetchall()
        if not rows:
            self.drained = True
            return
        ids, tokens = [r[0] for r in rows], [r[8] for r in rows]
        row = self.conn.execute(
            COMPLETE.format(v=self.version),
            (self.worker_id, self.credential, ids, tokens, None),
            prepare=True,
        ).fetchone()
        if row is None or row[0]:
            raise RuntimeError(f"{self.version}: the completion rejected {row}")
        self.wall_s += time.perf_counter() - started
        self.jobs += len(rows)

    def server_ms(self) -> float:
        """Milliseconds spent inside this version's claim and complete."""
        names = [f"corral_claim_{self.version}", f"corral_complete_{self.version}"]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            (total,) = conn.execute(
                "SELECT coalesce(sum(total_time), 0) FROM pg_stat_user_functions"
                " WHERE funcname = ANY(%s)",
                (names,),
            ).fetchone() or (0,)
        return float(total)


def prepared(server: Any, version: str, jobs: int) -> Loop:
    """A fresh database with `jobs` no-op jobs and one enrolled worker."""
    name = f"acks_{version}_{secrets.token_hex(3)}"
    dsn = server.create_database(name)
    queue.migrate(dsn)
    with queue.Queue.connect(dsn) as q:
        for start in range(0, jobs, 10_000):
            q.enqueue_many([queue.JobSpec("noop", queue="q")] * min(10_000, jobs - start))
        token = q.create_token("eu", ttl_s=3600, uses=1).secret
        me = q.enroll(token, name=f"bench-{version}", queues=["q"], concurrency=1000)
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("ANALYZE")
    conn.execute("SET track_functions = 'pl'")
    return Loop(version, dsn, conn, me.worker_id, me.credential)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000, help="backlog per version")
    parser.add_argument("--batch", type=int, default=250, help="jobs per claim")
    args = parser.parse_args(argv)
    with running(settings={"shared_buffers": "1GB"}) as server:
        print(f"bench-ack-versions: {args.jobs:,} jobs per version, batches of {args.batch}")
        loops = [prepared(server, v, args.jobs) for v in VERSIONS]
        with psycopg.connect(server.dsn(), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
        while not all(loop.drained for loop in loops):
            for loop in loops:
                if not loop.drained:
                    loop.round(args.batch)
        for loop in loops:
            loop.conn.close()  # its function statistics are flushed as it ends
        time.sleep(1.0)
        server_us, wall_us = {}, {}
        for loop in loops:
            server_us[loop.version] = 1000 * loop.server_ms() / loop.jobs
            wall_us[loop.version] = 1e6 * loop.wall_s / loop.jobs
            print(
                f"  claim_{loop.version} + complete_{loop.version}: {loop.jobs:,} jobs,"
                f" {server_us[loop.version]:.2f} µs a job in the server's functions,"
                f" {wall_us[loop.version]:.2f} µs a job at the client"
            )
    saved = 100 * (1 - server_us["v5"] / server_us["v4"])
    print(
        f"bench-ack-versions: jobs={args.jobs} batch={args.batch}"
        f" v4_server_us={server_us['v4']:.2f} v5_server_us={server_us['v5']:.2f}"
        f" server_saved_pct={saved:.1f} v4_wall_us={wall_us['v4']:.2f}"
        f" v5_wall_us={wall_us['v5']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

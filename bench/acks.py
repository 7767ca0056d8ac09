"""`python -m bench.acks`: what checking the caller costs the acknowledgement
hot path, measured side by side on one throwaway PostgreSQL server.

Two raw client loops (no worker runtime, no handler) claim a batch and
complete it, alternating round by round so that machine load hits both
alike: one as an admin would (`corral_complete_v1`: id + lease token only),
one as a worker (`corral_complete_v5` today, `_v3` when this was written:
the caller's id and credential checked once per batch, only jobs it holds).
Both claim as the worker (`Queue.claim`: `corral_claim_v5` today). Prints
the completion time per batch of each and their ratio; never asserts. Not
a `make` target: a one-off question (commit da4d832, the caller check);
`make bench-ack-versions` compares whole releases' claim + complete.

Usage: python -m bench.acks [--jobs N] [--batch N]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

import psycopg

from corral import queue
from corral_local.postgres import PostgresServer


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    server = PostgresServer()
    server.start()
    try:
        name = f"acks_{secrets.token_hex(4)}"
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        dsn = server.dsn(name)
        queue.migrate(dsn)
        with queue.Queue.connect(dsn) as q:
            for start in range(0, args.jobs, 10_000):
                n = min(10_000, args.jobs - start)
                q.enqueue_many([queue.JobSpec("noop", queue="q") for _ in range(n)])
            token = q.create_token("eu", uses=1)
            me = q.enroll(token.secret, name="bench", queues=["q"], concurrency=args.batch)
            times: dict[str, list[float]] = {"v1 (no caller check)": [], "v3 (caller checked)": []}
            rounds = 0
            while True:
                for label, worker in (
                    ("v1 (no caller check)", None),
                    ("v3 (caller checked)", me),
                ):
                    jobs = q.claim(me.worker_id, me.credential, ["q"], batch=args.batch)
                    if not jobs:
                        break
                    began = time.perf_counter()
                    q.complete_many(jobs, worker=worker)
                    times[label].append((time.perf_counter() - began) / len(jobs))
                else:
                    rounds += 1
                    continue
                break
        print(f"bench-acks: {rounds} rounds of batch {args.batch}, alternating, one server")
        medians = {label: statistics.median(v) * 1e6 for label, v in times.items() if v}
        for label, median in medians.items():
            print(f"  complete {label}: median {median:.1f} µs per job")
        v1, v3 = medians.values()
        print(f"bench-acks: v1={v1:.1f}us v3={v3:.1f}us per_job ratio_v3_over_v1={v3 / v1:.3f}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

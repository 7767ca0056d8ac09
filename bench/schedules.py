"""`make bench-schedules`: recurring schedules at scale, on a throwaway
PostgreSQL (fsync on).

- 10,000 schedules whose occurrence falls in the same minute (created through
  `Queue.create_schedule`, as users would) are fired by ONE process running
  firing passes back to back (`Queue.fire_due_schedules`, 100 schedules a
  pass, one transaction each): the time from the occurrence to the last job
  enqueued must stay well inside that minute, with exactly one job each.
- O(due), not O(schedules): the time of a firing pass that finds nothing due,
  median of 200, with 10,000 schedules stored and again with 100,000 (the
  extra 90,000 inserted in one statement, none due).

The last line is the summary:
`bench-schedules: schedules=10000 fired_in_s=<X> jobs=<N> passes=<N> empty_pass_ms_10k=<X> empty_pass_ms_100k=<X>`

Usage: python -m bench.schedules [--schedules N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import secrets
import statistics
import sys
import time

from corral import queue
from corral.queue import ScheduleSpec
from corral_local.postgres import running


def say(text: str) -> None:
    print(text, flush=True)


def empty_pass_ms(q: queue.Queue, runs: int = 200) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fired = q.fire_due_schedules(limit=100)
        times.append(time.perf_counter() - started)
        assert fired == [], fired
    return 1000 * statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=10_000)
    parser.add_argument("--lead", type=float, default=120.0, help="seconds until they are due")
    args = parser.parse_args(argv)
    n = args.schedules
    say(f"bench-schedules: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}")
    with running(settings={"shared_buffers": "512MB"}) as server:
        dsn = server.create_database(f"sched_{secrets.token_hex(4)}")
        queue.migrate(dsn)
        with queue.Queue.connect(dsn) as q:
            due = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=args.lead)
            started = time.perf_counter()
            for i in range(n):
                # Hourly, first occurrence at `due`: all n fall in the same minute.
                q.create_schedule(
                    ScheduleSpec(f"s{i:06d}", "noop", every_s=3600, queue="bench", start_at=due)
                )
            created_s = time.perf_counter() - started
            say(f"created {n:,} schedules in {created_s:.1f} s ({n / created_s:,.0f}/s), "
                f"all due at {due:%H:%M:%S}Z")  # fmt: skip
            idle_10k = empty_pass_ms(q)
            say(f"a pass with nothing due, {n:,} schedules stored: {idle_10k:.2f} ms (median)")
            wait = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if wait < 0:
                raise SystemExit(f"creating took longer than --lead {args.lead:g}s: raise it")
            time.sleep(wait)
            passes = jobs = 0
            while True:
                fired = q.fire_due_schedules(limit=100)
                passes += 1
                jobs += sum(len(f.job_ids) for f in fired)
                if not fired:
                    break
            fired_in = (dt.datetime.now(dt.UTC) - due).total_seconds()
            say(f"one process fired {jobs:,} jobs in {passes:,} passes, "
                f"{fired_in:.2f} s after the occurrence")  # fmt: skip
            counted = q.conn.execute(
                "SELECT count(*), count(DISTINCT (schedule, scheduled_for))"
                " FROM corral_schedule_occurrences"
            ).fetchone()
            assert counted == (n, n) and jobs == n, (counted, jobs)
            extra = 10 * n - n
            q.conn.execute(
                "INSERT INTO corral_schedules (name, kind, every_s, queue, next_at)"
                " SELECT 'x' || g, 'noop', 3600, 'bench', now() + interval '1 hour'"
                " FROM generate_series(1, %s) g",
                (extra,),
            )
            q.conn.execute("ANALYZE corral_schedules")
            idle_100k = empty_pass_ms(q)
            say(
                f"a pass with nothing due, {10 * n:,} schedules stored: {idle_100k:.2f} ms (median)"
            )
        say(
            f"\nbench-schedules: schedules={n} fired_in_s={fired_in:.2f} jobs={jobs} "
            f"passes={passes} empty_pass_ms_10k={idle_10k:.2f} "
            f"empty_pass_ms_100k={idle_100k:.2f}"
        )
        return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

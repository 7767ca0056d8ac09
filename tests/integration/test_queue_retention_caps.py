"""Retention caps: per queue, at most N dead (default 5,000) and N completed
(default: no cap) finished jobs stay, the oldest deleted first, in batches,
under the retention advisory lock, beside the age limit."""

from __future__ import annotations

import threading
from pathlib import Path

import psycopg

from corral.queue import UNCAPPED, Queue
from tests.integration._enrolled import enroll, run_sql
from tests.integration._workers import starting_workers, wait_until

WEEK_S = 7 * 86400.0
_NEXT_ID = [1_000_000]


def finished(url: str, queue: str, state: str, n: int, *, age_s: float = 0) -> list[int]:
    """`n` finished jobs of `queue` in `state`, the first the oldest (one
    second apart, the newest `age_s` seconds old); their ids, oldest first."""
    first = _NEXT_ID[0]
    _NEXT_ID[0] += n
    run_sql(
        url,
        "INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state,"
        " run_at, attempt, max_attempts, enqueued_at, finished_at)"
        " SELECT g, 'noop', %s, '{}', 0, '', %s, now(), 1, 1, now(),"
        "        now() - make_interval(secs => %s + (%s - g))"
        "   FROM generate_series(%s::int8, %s::int8) g",
        [queue, state, age_s, first + n - 1, first, first + n - 1],
    )
    return list(range(first, first + n))


def left(url: str, queue: str, state: str) -> list[int]:
    rows = run_sql(
        url,
        "SELECT id FROM corral_jobs_finished WHERE queue = %s AND state = %s ORDER BY id",
        [queue, state],
    )
    return [int(row[0]) for row in rows]


def retain(queue: Queue, batch: int) -> list[int | None]:
    """A worker's retention pass: batches until one comes back short."""
    counts = []
    while True:
        deleted = queue.purge_finished_batch(WEEK_S, batch=batch)
        counts.append(deleted)
        if deleted is None or deleted < batch:
            return counts


def test_a_queue_never_set_keeps_its_5000_newest_dead_jobs_and_every_completed_one(
    database_url: str,
) -> None:
    dead = finished(database_url, "q", "dead", 5_030)
    done = finished(database_url, "q", "completed", 6_000)
    with Queue.connect(database_url) as queue:
        assert retain(queue, 1_000) == [30]
    assert left(database_url, "q", "dead") == dead[30:]  # the 30 oldest went
    assert left(database_url, "q", "completed") == done


def test_caps_set_per_queue_delete_the_oldest_first_in_batches_and_spare_other_queues(
    database_url: str,
) -> None:
    a_dead = finished(database_url, "a", "dead", 10)
    a_done = finished(database_url, "a", "completed", 9)
    b_dead = finished(database_url, "b", "dead", 10)
    b_done = finished(database_url, "b", "completed", 9)
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("a", max_dead=3, max_completed=2)
        queue.set_queue_defaults("b", max_dead=UNCAPPED)
        # 7 + 7 rows over the caps, 4 per batch: four batches, the last short.
        assert retain(queue, 4) == [4, 4, 4, 2]
        settings = {s.queue: s for s in queue.list_queues()}
    assert left(database_url, "a", "dead") == a_dead[-3:]
    assert left(database_url, "a", "completed") == a_done[-2:]
    assert left(database_url, "b", "dead") == b_dead  # no cap
    assert left(database_url, "b", "completed") == b_done
    assert (settings["a"].max_dead, settings["a"].max_completed) == (3, 2)
    assert (settings["b"].max_dead, settings["b"].max_completed) == (None, None)


def test_the_age_limit_still_applies_below_the_caps(database_url: str) -> None:
    old = finished(database_url, "q", "dead", 3, age_s=8 * 86400)
    new = finished(database_url, "q", "dead", 3)
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("q", max_dead=100)
        retain(queue, 1_000)
    assert left(database_url, "q", "dead") == new
    assert old[0] not in left(database_url, "q", "dead")


def test_caps_wait_for_the_retention_lock_like_the_age_limit(database_url: str) -> None:
    dead = finished(database_url, "q", "dead", 5)
    with Queue.connect(database_url) as queue, psycopg.connect(database_url) as holder:
        queue.set_queue_defaults("q", max_dead=1)
        holder.execute("SELECT pg_advisory_xact_lock(hashtext('corral_retention'))")
        # Another process is purging: this one deletes nothing and says so.
        assert queue.purge_finished_batch(WEEK_S, batch=100) is None
        assert left(database_url, "q", "dead") == dead
        holder.rollback()
        assert queue.purge_finished_batch(WEEK_S, batch=100) == 4
    assert left(database_url, "q", "dead") == dead[-1:]


def test_a_worker_role_applies_the_caps_through_its_own_retention_call(
    database_url: str, worker_database_url: str
) -> None:
    dead = finished(database_url, "q", "dead", 6)
    with Queue.connect(database_url) as admin:
        admin.set_queue_defaults("q", max_dead=2)
        worker = enroll(admin)
    with Queue.connect(worker_database_url) as queue:
        assert queue.retention_batch(worker.worker_id, worker.credential, WEEK_S, batch=100) == 4
    assert left(database_url, "q", "dead") == dead[-2:]


def test_two_passes_at_once_delete_each_row_once(database_url: str) -> None:
    finished(database_url, "q", "dead", 50)
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("q", max_dead=10)
    counts: list[list[int | None]] = []

    def run() -> None:
        with Queue.connect(database_url) as queue:
            counts.append(retain(queue, 5))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(left(database_url, "q", "dead")) == 10
    assert sum(c or 0 for run_counts in counts for c in run_counts) == 40


def test_a_running_worker_enforces_the_caps_on_its_retention_pass(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> None:
    dead = finished(database_url, "q", "dead", 6)
    done = finished(database_url, "q", "completed", 4)
    with Queue.connect(database_url) as queue:
        queue.set_queue_defaults("q", max_dead=2, max_completed=3)
    # Its settings from a file, as `corral worker --config` reads them.
    config = tmp_path / "worker.toml"
    config.write_text('retention = "2d"\nconcurrency = 1\n')
    with starting_workers(database_url, worker_database_url, tmp_path, queues="q") as start:
        start("w1", "--config", str(config))
        wait_until(lambda: len(left(database_url, "q", "dead")) == 2, 30, "the dead cap")
        wait_until(lambda: len(left(database_url, "q", "completed")) == 3, 30, "the completed cap")
    assert left(database_url, "q", "dead") == dead[-2:]
    assert left(database_url, "q", "completed") == done[-3:]

"""The dashboard's charts: per-minute throughput folded off the hot path by
`rollup_throughput`, and depth sampled by the same call.

Both clients (the `queue` / `connect` fixtures): the dashboard serves on
either. The guarantee under test: every finished job is counted once, in
its queue and minute, however many rollups run, whenever they run, and
however late the completion commits (its counts row is committed with it,
by the history's statement trigger, migration 0015).
"""

from __future__ import annotations

import datetime as dt
import threading
import time

import psycopg
import pytest

from corral.queue import (
    Failure,
    JobSpec,
    JobState,
    Queue,
    ThroughputMinute,
    WorkerRemoved,
    migrate,
    migrations,
)
from corral.queue import _sql as queue_sql
from tests.integration._clients import Client, Connect
from tests.integration._enrolled import enroll, run_sql


def _totals(rows: list[ThroughputMinute]) -> dict[str, tuple[int, int, int]]:
    out: dict[str, tuple[int, int, int]] = {}
    for row in rows:
        c, f, d = out.get(row.queue, (0, 0, 0))
        out[row.queue] = (c + row.completed, f + row.failed, d + row.dead)
    return out


def _minute(url: str, ago_min: int) -> dt.datetime:
    [(minute,)] = run_sql(
        url, "SELECT date_trunc('minute', now()) - make_interval(mins => %s)", [ago_min]
    )
    assert isinstance(minute, dt.datetime)
    return minute


def _clear_of_a_minute_boundary(url: str, margin_s: float = 10.0) -> None:
    """Wait, if the server's clock is within `margin_s` of the next minute,
    for that minute to begin: a test that reads its rows back by minute
    (it takes well under `margin_s`) then finds them all in one."""
    [(second,)] = run_sql(url, "SELECT extract(second FROM now())::float8")
    if float(second) > 60 - margin_s:
        time.sleep(60 - float(second) + 0.2)


def _finish(queue: Client, url: str) -> None:
    """On queue a: 3 completed (one after a failed attempt); on b: 1 dead."""
    queue.enqueue_many([JobSpec("noop", queue="a") for _ in range(3)])
    queue.enqueue("noop", queue="b", max_attempts=1)
    worker = enroll(queue, queues=["a", "b"])
    first = queue.claim(worker.worker_id, worker.credential, ["a"], batch=1)
    assert queue.fail_many([Failure(first[0], "boom")], worker=worker) == []
    run_sql(url, "UPDATE corral_jobs SET run_at = now() WHERE state = 'scheduled'")
    held = queue.claim(worker.worker_id, worker.credential, ["a", "b"], batch=10)
    assert len(held) == 4
    on_a = [j for j in held if j.queue == "a"]
    on_b = [j for j in held if j.queue == "b"]
    assert queue.complete_many(on_a, worker=worker) == []
    assert queue.fail_many([Failure(on_b[0], "KeyError")], worker=worker) == []


def test_completed_failed_and_dead_jobs_land_in_their_queue_and_minute(
    queue: Client, database_url: str
) -> None:
    _clear_of_a_minute_boundary(database_url)
    _finish(queue, database_url)
    # A job of b that died five minutes ago (a row written by hand, as the
    # history holds it): its minute is that one, not the rollup's.
    run_sql(
        database_url,
        "INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state,"
        " run_at, attempt, max_attempts, enqueued_at, finished_at)"
        " SELECT -1, 'noop', 'b', '{}', 0, '', 'dead', now(), 2, 2, now(),"
        " now() - interval '5 min'",
    )
    assert queue.rollup_throughput() == 5
    rows = queue.throughput(60)
    by_minute = {(row.queue, row.minute): row for row in rows}
    now, ago = _minute(database_url, 0), _minute(database_url, 5)
    assert set(by_minute) == {("a", now), ("b", now), ("b", ago)}
    a, b_now, b_ago = by_minute["a", now], by_minute["b", now], by_minute["b", ago]
    assert (a.completed, a.failed, a.dead) == (3, 1, 0)
    assert (b_now.completed, b_now.failed, b_now.dead) == (0, 0, 1)
    assert (b_ago.completed, b_ago.failed, b_ago.dead) == (0, 1, 1)
    assert [r.minute for r in rows] == sorted(r.minute for r in rows)
    # A window that ends before that minute leaves it out.
    assert {(r.queue, r.minute) for r in queue.throughput(3)} == {("a", now), ("b", now)}


def test_a_second_rollup_counts_only_what_finished_since_the_first(
    queue: Client, database_url: str
) -> None:
    _finish(queue, database_url)
    assert queue.rollup_throughput() == 4
    assert queue.rollup_throughput() == 0
    assert _totals(queue.throughput()) == {"a": (3, 1, 0), "b": (0, 0, 1)}
    queue.enqueue("noop", queue="a")
    worker = enroll(queue, queues=["a"], name="w2")
    queue.complete_many(queue.claim(worker.worker_id, worker.credential, ["a"]), worker=worker)
    assert queue.rollup_throughput() == 1
    assert _totals(queue.throughput()) == {"a": (4, 1, 0), "b": (0, 0, 1)}


def test_a_long_backlog_is_folded_a_limited_batch_at_a_time(
    queue: Client, database_url: str
) -> None:
    # _finish's jobs are counted by two statements (a's 3 completions in one,
    # b's dead job in another); the limit counts those statements' rows.
    _finish(queue, database_url)
    first, second = queue.rollup_throughput(limit=1), queue.rollup_throughput(limit=1)
    assert sorted([first, second]) == [1, 3]
    assert queue.rollup_throughput(limit=1) == 0
    assert _totals(queue.throughput()) == {"a": (3, 1, 0), "b": (0, 0, 1)}
    with pytest.raises(ValueError, match="limit must be between 1 and 1000000"):
        queue.rollup_throughput(limit=0)


def test_cancelled_jobs_are_folded_but_count_nowhere(queue: Client, database_url: str) -> None:
    job_id = queue.enqueue("noop", queue="a")
    queue.cancel(job_id)
    assert queue.rollup_throughput() == 1
    assert queue.throughput() == []


def test_a_completion_that_commits_late_is_counted_once(queue: Client, database_url: str) -> None:
    # Two completions: the first is written first but commits after the
    # second has been folded; the rollup must still count it, once.
    queue.enqueue_many([JobSpec("noop", queue="late"), JobSpec("noop", queue="early")])
    worker = enroll(queue, queues=["late", "early"])
    held = {j.queue: j for j in queue.claim(worker.worker_id, worker.credential, ["late", "early"])}
    with psycopg.connect(database_url) as slow:  # a transaction left open
        assert Queue(slow).complete_many([held["late"]], worker=worker) == []
        assert queue.complete_many([held["early"]], worker=worker) == []
        assert queue.rollup_throughput() == 1
        assert _totals(queue.throughput()) == {"early": (1, 0, 0)}
        slow.commit()
    assert queue.rollup_throughput() == 1
    assert queue.rollup_throughput() == 0
    assert _totals(queue.throughput()) == {"early": (1, 0, 0), "late": (1, 0, 0)}


def test_concurrent_rollups_count_every_job_exactly_once(
    connect: Connect, database_url: str
) -> None:
    jobs, rounds = 40, 8
    with connect(database_url) as queue:
        worker = enroll(queue, queues=["c"])
    stop = threading.Event()
    errors: list[BaseException] = []

    def keep_rolling() -> None:
        try:
            with connect(database_url) as mine:
                while not stop.is_set():
                    mine.rollup_throughput()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    rollers = [threading.Thread(target=keep_rolling) for _ in range(3)]
    for thread in rollers:
        thread.start()
    try:
        with connect(database_url) as queue:
            for _ in range(rounds):
                queue.enqueue_many([JobSpec("noop", queue="c") for _ in range(jobs)])
                held = queue.claim(worker.worker_id, worker.credential, ["c"], batch=jobs)
                for job in held:  # one commit each: many seqs, interleaved with rollups
                    assert queue.complete_many([job], worker=worker) == []
    finally:
        stop.set()
        for thread in rollers:
            thread.join()
    assert errors == []
    with connect(database_url) as queue:
        queue.rollup_throughput()
        assert _totals(queue.throughput()) == {"c": (jobs * rounds, 0, 0)}


def test_a_worker_rolls_up_with_its_own_rights_and_skips_its_turn_while_another_rolls_up(
    connect: Connect, database_url: str, worker_database_url: str
) -> None:
    with connect(database_url) as admin:
        _finish(admin, database_url)
        caller = enroll(admin, queues=["a"], name="upkeep")
    with psycopg.connect(database_url) as other:  # someone else mid-rollup
        other.execute("SELECT pg_advisory_xact_lock(hashtext('corral_rollup_throughput'))")
        with connect(worker_database_url) as worker:
            assert worker.rollup_throughput(limit=10, worker=caller) == 0
        other.rollback()
    with connect(worker_database_url) as worker:
        assert worker.rollup_throughput(limit=10, worker=caller) == 4
    with connect(database_url) as admin:
        assert _totals(admin.throughput()) == {"a": (3, 1, 0), "b": (0, 0, 1)}
        admin.remove_worker(caller.worker_id)
    with connect(worker_database_url) as worker, pytest.raises(WorkerRemoved):
        worker.rollup_throughput(worker=caller)


def test_depth_is_sampled_once_a_minute_per_queue(queue: Client, database_url: str) -> None:
    queue.enqueue_many([JobSpec("noop", queue="a") for _ in range(2)])
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    queue.enqueue_many([JobSpec("noop", queue="b", run_at=soon) for _ in range(2)])
    run_sql(database_url, "UPDATE corral_jobs SET run_at = now() WHERE id = "
            "(SELECT min(id) FROM corral_jobs WHERE queue = 'b')")  # fmt: skip
    queue.rollup_throughput()
    samples = queue.depth_history(60)
    assert {(s.queue, s.waiting) for s in samples} == {("a", 2), ("b", 1)}
    [minute] = {s.minute for s in samples}
    [(sampled,)] = run_sql(database_url, "SELECT depth_minute FROM corral_rollup_state")
    assert minute == sampled
    # Later rollups in the same sampled minute add nothing.
    queue.enqueue("noop", queue="a")
    queue.rollup_throughput()
    again = {(s.queue, s.waiting) for s in queue.depth_history(60) if s.minute == minute}
    assert again == {("a", 2), ("b", 1)}


def test_stats_without_finished_counts_only_unfinished_jobs(
    queue: Client, database_url: str
) -> None:
    _finish(queue, database_url)
    queue.enqueue("noop", queue="a")
    hot_only = {s.queue: s.counts for s in queue.stats(finished=False)}
    everything = {s.queue: s.counts for s in queue.stats()}
    assert hot_only == {"a": {JobState.PENDING: 1}}
    assert everything["a"] == {JobState.PENDING: 1, JobState.COMPLETED: 3}
    assert everything["b"] == {JobState.DEAD: 1}


def test_windows_outside_the_kept_history_are_refused(queue: Client) -> None:
    for call in (queue.throughput, queue.depth_history):
        with pytest.raises(ValueError, match="minutes must be between 1 and 10080"):
            call(0)


def test_the_rollup_refuses_a_snapshot_older_than_its_lock(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.Error, match="must run at READ COMMITTED"):
            conn.execute("SELECT corral_rollup_throughput_v1()")


def test_an_upgrade_counts_the_rows_finished_before_it_once(empty_database_url: str) -> None:
    """A database at 0014 whose rollup has folded part of its history (and
    the rest not yet): 0015 counts the rest as 0011 would have, once, and
    every job finished after it through the trigger."""
    url = empty_database_url
    before = [m for m in queue_sql.migrations() if m.version < 15]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(migrations._CREATE_TABLE)  # the ledger as migrate() makes it
        for m in before:
            conn.execute(m.sql)
            conn.execute(
                "INSERT INTO corral_schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (m.version, m.name, m.checksum),
            )
        finish = (
            "INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state,"
            " run_at, attempt, max_attempts, enqueued_at)"
            " SELECT i, 'noop', 'q', '{}', 0, '', 'completed', now(), 1, 3, now()"
            " FROM generate_series(%s::int, %s::int) i"
        )
        conn.execute(finish, (1, 3))
        [(folded,)] = conn.execute("SELECT corral_rollup_throughput_v1()").fetchall()
        assert folded == 3
        conn.execute(finish, (4, 10))  # past the watermark at the upgrade
    assert migrate(url) == [m.version for m in queue_sql.migrations() if m.version >= 15]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(finish, (11, 12))
        [(folded,)] = conn.execute("SELECT corral_rollup_throughput_v1()").fetchall()
        assert folded == 2
        [(completed,)] = conn.execute(
            "SELECT sum(completed) FROM corral_throughput_minutes WHERE queue = 'q'"
        ).fetchall()
    assert completed == 12

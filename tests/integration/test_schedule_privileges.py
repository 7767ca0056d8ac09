"""A worker's reach over schedules (docs/security.md, "Schedules"): it sees,
locks, declares and fires only the schedules on the queues it serves, for its
own region or any, and a firing must be the schedule's own (due occurrences
from its next one, run times within its jitter, a next occurrence after
them). Each test calls the worker functions as the worker role, the way a
hostile worker would: directly."""

from __future__ import annotations

import datetime as dt
from typing import Any

import psycopg
import pytest

from corral.queue import Enrollment, PermissionDenied, Queue, ScheduleSpec
from tests.integration._enrolled import enroll, run_sql

UTC = dt.UTC
_FIRE = "SELECT corral_worker_fire_schedule_v1(%s, %s, %s, %s, %s, %s)"


def _now() -> dt.datetime:
    return dt.datetime.now(UTC)


def _fire(
    conn: psycopg.Connection[Any],
    worker: Enrollment,
    name: str,
    occurrences: list[dt.datetime],
    next_at: dt.datetime | None,
    run_at: list[dt.datetime] | None = None,
) -> Any:
    row = conn.execute(
        _FIRE, (worker.worker_id, worker.credential, name, occurrences, run_at, next_at)
    ).fetchone()
    assert row is not None
    return row[0]


def _jobs_on(url: str, queue: str) -> int:
    [(count,)] = run_sql(url, "SELECT count(*) FROM corral_jobs WHERE queue = %s", (queue,))
    return int(count)


def test_a_worker_sees_and_fires_only_the_schedules_on_its_queues(
    database_url: str, worker_database_url: str
) -> None:
    start = _now() - dt.timedelta(seconds=2)
    with Queue.connect(database_url) as q:
        q.create_schedule(ScheduleSpec("billing-nightly", "charge", {"api_key": "sk_live_SECRET"},
                                       every_s=3600, queue="billing", start_at=start))  # fmt: skip
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=3600, queue="q", start_at=start))
        worker = enroll(q, queues=["q"])
    with Queue.connect(worker_database_url) as w:
        fired = w.fire_due_schedules(worker=worker)
        assert [f.schedule for f in fired] == ["tick"], fired
        locked = w.conn.execute(
            "SELECT * FROM corral_worker_lock_schedule_v1(%s, %s, 'billing-nightly')",
            (worker.worker_id, worker.credential),
        ).fetchall()
        assert locked == []  # no payload of another queue's schedule
        [(next_at,)] = run_sql(
            database_url, "SELECT next_at FROM corral_schedules WHERE name = 'billing-nightly'"
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="does not serve"):
            _fire(w.conn, worker, "billing-nightly", [next_at],
                  next_at + dt.timedelta(hours=1))  # fmt: skip
    assert _jobs_on(database_url, "billing") == 0
    assert _jobs_on(database_url, "q") == 1


def test_a_worker_cannot_fire_made_up_occurrences_nor_stop_its_schedule(
    database_url: str, worker_database_url: str
) -> None:
    with Queue.connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=3600, queue="q", overlap="allow",
                                       start_at=_now() - dt.timedelta(seconds=2)))  # fmt: skip
        worker = enroll(q, queues=["q"])
    [(next_at,)] = run_sql(database_url, "SELECT next_at FROM corral_schedules WHERE name = 'tick'")
    later = next_at + dt.timedelta(hours=1)
    invalid = psycopg.errors.InvalidParameterValue
    with psycopg.connect(worker_database_url, autocommit=True) as conn:
        # Occurrences from before its next one: a flood of made-up past times.
        old = [dt.datetime(2020, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=i)
               for i in range(1000)]  # fmt: skip
        with pytest.raises(invalid, match="from its next one"):
            _fire(conn, worker, "tick", old, later)
        # No next occurrence for a schedule without an end: it would never fire again.
        with pytest.raises(invalid, match="cannot be none"):
            _fire(conn, worker, "tick", [next_at], None)
        # A next occurrence that goes back, or far-off run times.
        with pytest.raises(invalid, match="must follow the ones fired"):
            _fire(conn, worker, "tick", [next_at], next_at)
        with pytest.raises(invalid, match="within its jitter"):
            _fire(conn, worker, "tick", [next_at], later, [next_at + dt.timedelta(days=365)])
        run_sql(database_url, "UPDATE corral_schedules SET paused = true")
        with pytest.raises(invalid, match="paused"):
            _fire(conn, worker, "tick", [next_at], later)
        run_sql(database_url, "UPDATE corral_schedules SET paused = false")
        # The schedule's own firing goes through, once.
        assert len(_fire(conn, worker, "tick", [next_at], later)) == 1
    assert _jobs_on(database_url, "q") == 1
    [(stored,)] = run_sql(database_url, "SELECT next_at FROM corral_schedules WHERE name = 'tick'")
    assert stored == later


def test_a_worker_declares_schedules_only_in_its_region_or_in_any(
    database_url: str, worker_database_url: str
) -> None:
    with Queue.connect(database_url) as q:
        worker = enroll(q, region="eu", queues=["q"])
    with Queue.connect(worker_database_url) as w:
        # Jobs for region us on a queue it serves: workers of us claim them,
        # so an eu worker may not enqueue them through a schedule.
        with pytest.raises(PermissionDenied, match="in region us: it is enrolled in region eu"):
            w.declare_schedule(ScheduleSpec("abroad", "noop", every_s=1, queue="q", region="us"),
                               worker=worker)  # fmt: skip
        assert w.declare_schedule(
            ScheduleSpec("home", "noop", every_s=60, queue="q", region="eu"), worker=worker
        )
        assert w.declare_schedule(ScheduleSpec("any", "noop", every_s=60, queue="q"), worker=worker)
    stored = run_sql(database_url, "SELECT name, region FROM corral_schedules ORDER BY name")
    assert stored == [("any", ""), ("home", "eu")]


def test_a_worker_neither_fires_nor_takes_over_a_schedule_of_another_region(
    database_url: str, worker_database_url: str
) -> None:
    start = _now() - dt.timedelta(seconds=2)
    with Queue.connect(database_url) as q:
        # An admin's schedule for region us, on a queue the eu worker serves.
        q.create_schedule(ScheduleSpec("us-tick", "noop", {"secret": "us-only"}, every_s=3600,
                                       queue="q", region="us", start_at=start))  # fmt: skip
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=3600, queue="q", start_at=start))
        worker = enroll(q, region="eu", queues=["q"])
    [(next_at,)] = run_sql(
        database_url, "SELECT next_at FROM corral_schedules WHERE name = 'us-tick'"
    )
    with Queue.connect(worker_database_url) as w:
        # Its firing pass passes over the us schedule (it is not an error
        # that would stop the pass) and fires the one of any region.
        fired = w.fire_due_schedules(worker=worker)
        assert [f.schedule for f in fired] == ["tick"], fired
        locked = w.conn.execute(
            "SELECT * FROM corral_worker_lock_schedule_v1(%s, %s, 'us-tick')",
            (worker.worker_id, worker.credential),
        ).fetchall()
        assert locked == []  # nor its payload
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="region us"):
            _fire(w.conn, worker, "us-tick", [next_at], next_at + dt.timedelta(hours=1))
    # Declaring the name again, in its own region, would move it here.
    with (
        Queue.connect(worker_database_url) as w,
        pytest.raises(PermissionDenied, match="another region"),
    ):
        w.declare_schedule(ScheduleSpec("us-tick", "noop", every_s=1, queue="q", region="eu"),
                           worker=worker)  # fmt: skip
    assert run_sql(database_url, "SELECT region, every_s FROM corral_schedules"
                                 " WHERE name = 'us-tick'") == [("us", 3600)]  # fmt: skip
    assert run_sql(database_url, "SELECT region FROM corral_jobs") == [("",)]

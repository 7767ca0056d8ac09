"""Recurring schedules against a real PostgreSQL: each occurrence fires
exactly once whoever fires it (the ledger's key), catch-up, overlap,
pause/resume/delete, create-again updates in place, run-now, and
scheduled_for reaching the claim and `corral jobs get`. The tests taking
`connect` run once per client (Queue, AsyncQueue)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from corral.cli import cli
from corral.queue import (
    PermissionDenied,
    Queue,
    ScheduleNotFound,
    ScheduleSpec,
)
from corral.worker.metrics import parse_text as parse_metrics
from tests._postgres import WORKER_ROLE
from tests.integration._clients import Connect
from tests.integration._enrolled import enroll, run_sql
from tests.integration._workers import WorkerProcess, starting_workers, wait_until

UTC = dt.UTC


def ledger(url: str, name: str) -> list[tuple[Any, ...]]:
    return run_sql(
        url,
        "SELECT scheduled_for, job_id, outcome FROM corral_schedule_occurrences"
        " WHERE schedule = %s ORDER BY scheduled_for",
        (name,),
    )


def past(seconds: float) -> dt.datetime:
    return dt.datetime.now(UTC) - dt.timedelta(seconds=seconds)


def finish_all(url: str) -> None:
    """Move every unfinished job to the finished table (its run is over)."""
    run_sql(
        url,
        "WITH d AS (DELETE FROM corral_jobs RETURNING *)"
        " INSERT INTO corral_jobs_finished (id, kind, queue, payload, priority, region, state,"
        " run_at, attempt, max_attempts, enqueued_at, finished_at)"
        " SELECT id, kind, queue, payload, priority, region, 'completed', run_at, attempt,"
        " max_attempts, enqueued_at, now() FROM d",
    )


def test_a_new_interval_schedule_fires_at_once_and_then_every_interval(
    connect: Connect, database_url: str
) -> None:
    with connect(database_url) as q:
        created = q.create_schedule(ScheduleSpec("tick", "noop", every_s=10))
        assert created.next_at is not None and created.last_occurrence is None
        first = q.fire_due_schedules()
        assert [len(f.job_ids) for f in first] == [1]
        assert first[0].queue == "noop"  # the queue whose pools the firer wakes
        assert q.fire_due_schedules() == []  # the next occurrence is 10 s away
        schedule = q.get_schedule("tick")
        assert schedule.last_occurrence == created.next_at
        assert schedule.next_at == created.next_at + dt.timedelta(seconds=10)
        assert schedule.last_job_id == first[0].job_ids[0]
        assert schedule.last_job_state == "pending"
        assert schedule.queue == "noop"


def test_two_concurrent_firing_passes_with_the_same_now_make_one_job(database_url: str) -> None:
    """Both passes run the same plan in their own transaction at once; the
    row lock and the ledger key leave one job per occurrence."""
    with Queue.connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec("tick", "noop", every_s=1, start_at=past(5), overlap="allow")
        )
    barrier = threading.Barrier(2)
    results: list[list[int]] = []

    def fire() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn, conn.transaction():
            q = Queue(conn)
            # The plan of each pass, made before either commits.
            row = conn.execute(
                "SELECT next_at, last_occurrence, now() FROM corral_schedules WHERE name = 'tick'"
            ).fetchone()
            assert row is not None
            occurrences = [row[0] + dt.timedelta(seconds=k) for k in range(4)]
            barrier.wait()
            ids = q.conn.execute(
                "SELECT corral_fire_schedule_v1('tick', %s, %s, %s)",
                (occurrences, occurrences, occurrences[-1] + dt.timedelta(seconds=1)),
            ).fetchone()
            assert ids is not None
            results.append([i for i in ids[0] if i is not None])

    threads = [threading.Thread(target=fire) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 4]
    rows = ledger(database_url, "tick")
    assert len(rows) == 4 == len({r[0] for r in rows})
    assert run_sql(database_url, "SELECT count(*) FROM corral_jobs")[0][0] == 4


def test_the_ledger_key_alone_stops_a_second_firing_of_an_occurrence(database_url: str) -> None:
    """Even past the row's last_occurrence (reset by hand), an occurrence in
    the ledger never gets a second job."""
    with Queue.connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec("tick", "noop", every_s=1, start_at=past(3), overlap="allow")
        )
        q.fire_due_schedules()
        before = run_sql(database_url, "SELECT count(*) FROM corral_jobs")[0][0]
        run_sql(
            database_url, "UPDATE corral_schedules SET last_occurrence = NULL, next_at = start_at"
        )
        q.fire_due_schedules()
        assert run_sql(database_url, "SELECT count(*) FROM corral_jobs")[0][0] == before


@pytest.mark.parametrize(("catch_up", "missed_jobs"), [("none", 0), ("one", 1), ("all", 300)])
def test_missed_occurrences_follow_the_catch_up_policy(
    connect: Connect, database_url: str, catch_up: str, missed_jobs: int
) -> None:
    start = past(360).replace(microsecond=0)
    with connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec(
                "tick", "noop", every_s=1, start_at=start, catch_up=catch_up, overlap="allow"
            )
        )
        q.fire_due_schedules(limit=10)
        rows = ledger(database_url, "tick")
        assert len(rows) == len({r[0] for r in rows})
        # Missed: more than MISSED_AFTER_S older than the pass's clock (fired_at).
        missed, recent, fired_at = run_sql(
            database_url,
            "SELECT count(*) FILTER (WHERE scheduled_for < fired_at - interval '60 s'),"
            " count(*) FILTER (WHERE scheduled_for >= fired_at - interval '60 s'),"
            " min(fired_at) FROM corral_schedule_occurrences",
        )[0]
        if catch_up == "all":
            # Every missed one: one a second from the start up to the pass's
            # clock less the minute (300, plus however long the test took to
            # get here on a loaded machine).
            assert abs(missed - ((fired_at - start).total_seconds() - 60)) <= 1, (missed, fired_at)
        else:
            assert missed == missed_jobs
        assert recent in (60, 61)  # the minute not yet missed fires in full


@pytest.mark.parametrize("overlap", ["skip", "queue", "allow"])
def test_overlap_decides_what_happens_while_the_previous_job_runs(
    connect: Connect, database_url: str, overlap: str
) -> None:
    """Four occurrences due in one pass: the first one's job is unfinished
    when the next three are considered."""
    with connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec("tick", "noop", every_s=1, start_at=past(3.5), overlap=overlap)
        )
        fired = q.fire_due_schedules()[0]
        outcomes = [r[2] for r in ledger(database_url, "tick")]
        if overlap == "skip":
            assert outcomes == ["enqueued", "skipped", "skipped", "skipped"]
            assert (len(fired.job_ids), fired.skipped) == (1, 3)
        elif overlap == "queue":
            assert outcomes == ["enqueued"]
            first = ledger(database_url, "tick")[0][0]
            assert q.get_schedule("tick").next_at == first + dt.timedelta(seconds=1)
            assert q.fire_due_schedules()[0].job_ids == []  # still waiting for the job
            finish_all(database_url)
            assert len(q.fire_due_schedules()[0].job_ids) == 1  # the next one, once
            assert [r[2] for r in ledger(database_url, "tick")] == ["enqueued"] * 2
        else:
            assert outcomes == ["enqueued"] * 4 and len(fired.job_ids) == 4


@pytest.mark.parametrize("overlap", ["skip", "queue", "allow"])
def test_occurrences_fired_ahead_are_not_skipped_before_their_time(
    connect: Connect, database_url: str, overlap: str
) -> None:
    """The operator fires ahead by its lead: with the first occurrence's job
    not even due yet, skip must not decide the next ones seconds early; they
    wait, like queue, for a pass that finds the job finished (or their time)."""
    start = dt.datetime.now(UTC) + dt.timedelta(seconds=3)
    with connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=1, start_at=start, overlap=overlap))
        fired = q.fire_due_schedules(lead_s=5)[0]
        if overlap == "allow":
            assert fired.skipped == 0 and len(fired.job_ids) >= 2
            return
        assert (len(fired.job_ids), fired.skipped) == (1, 0)
        assert [r[:3:2] for r in ledger(database_url, "tick")] == [(start, "enqueued")]
        assert q.get_schedule("tick").next_at == start + dt.timedelta(seconds=1)
        assert q.fire_due_schedules(lead_s=5)[0].job_ids == []  # its job is still ahead
        finish_all(database_url)  # it ran (early, for the test's sake)
        again = q.fire_due_schedules(lead_s=5)[0]
        assert again.skipped == 0 and len(again.job_ids) == 1  # the next one, once
        assert [r[2] for r in ledger(database_url, "tick")] == ["enqueued"] * 2


def test_jitter_delays_the_job_but_not_its_occurrence(database_url: str) -> None:
    with Queue.connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec("tick", "noop", every_s=1, start_at=past(5.5), overlap="allow",
                         jitter_s="30s")
        )  # fmt: skip
        q.fire_due_schedules()
        rows = run_sql(
            database_url,
            "SELECT o.scheduled_for, j.run_at, j.state FROM corral_schedule_occurrences o"
            " JOIN corral_jobs j ON j.id = o.job_id",
        )
    assert len(rows) == 6
    assert all(occurrence <= run_at <= occurrence + dt.timedelta(seconds=30)
               for occurrence, run_at, _ in rows)  # fmt: skip
    assert "scheduled" in {state for *_, state in rows}  # some wait out their jitter


def test_a_schedule_past_its_end_is_finished(database_url: str) -> None:
    with Queue.connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec("tick", "noop", every_s=1, start_at=past(3.5), end_at=past(1.2),
                         overlap="allow")
        )  # fmt: skip
        assert len(q.fire_due_schedules()[0].job_ids) == 3
        assert q.get_schedule("tick").next_at is None
        assert q.fire_due_schedules() == []
    listed = corral(database_url, "schedules", "list")
    assert "finished" in listed.output


def test_schedules_that_cannot_be_planned_hold_back_none_due_after_them(
    database_url: str,
) -> None:
    # Three schedules whose rule predates the 366-day cap on --every (written
    # straight into the table, as an older release could have), due before
    # "good": a pass of 2 must still fire "good" and leave the three as they are.
    with Queue.connect(database_url) as q:
        for i in range(3):
            q.create_schedule(ScheduleSpec(f"bad-{i}", "noop", every_s=60, start_at=past(60 - i)))
        q.create_schedule(ScheduleSpec("good", "noop", every_s=60, start_at=past(30)))
        run_sql(database_url, "UPDATE corral_schedules SET every_s = 1e12 WHERE name LIKE 'bad-%%'")
        fired = q.fire_due_schedules(limit=2)
        assert [(f.schedule, len(f.job_ids)) for f in fired] == [("good", 1)]
        for i in range(3):
            broken = q.get_schedule(f"bad-{i}")
            assert broken.next_at == broken.start_at and broken.last_occurrence is None


def test_pause_resume_and_delete(connect: Connect, database_url: str) -> None:
    with connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=1))
        assert q.pause_schedule("tick").paused
        assert q.fire_due_schedules() == []
        assert not q.resume_schedule("tick").paused
        assert len(q.fire_due_schedules()) == 1
        q.delete_schedule("tick")
        assert q.list_schedules() == []
        for call in (q.get_schedule, q.pause_schedule, q.delete_schedule, q.run_schedule_now):
            with pytest.raises(ScheduleNotFound, match="schedule 'tick' does not exist"):
                call("tick")


def test_creating_again_updates_in_place_and_an_unchanged_spec_keeps_its_place(
    connect: Connect,
    database_url: str,
) -> None:
    with connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=60, start_at=past(1)))
        q.fire_due_schedules()
        fired = q.get_schedule("tick")
        again = q.create_schedule(ScheduleSpec("tick", "noop", every_s=60, start_at=fired.start_at))
        assert (again.next_at, again.last_occurrence) == (fired.next_at, fired.last_occurrence)
        assert again.updated_at == fired.updated_at
        changed = q.create_schedule(
            ScheduleSpec("tick", "other", cron="0 3 * * *", timezone="Europe/Berlin")
        )
        assert (changed.kind, changed.cron, changed.every_s) == ("other", "0 3 * * *", None)
        assert changed.next_at is not None
        assert changed.next_at.astimezone(dt.timezone(dt.timedelta(hours=1))).hour in (2, 3)
        assert changed.last_occurrence == fired.last_occurrence
        assert len(q.list_schedules()) == 1


def test_run_now_enqueues_once_and_records_it_in_the_ledger(
    connect: Connect, database_url: str
) -> None:
    with connect(database_url) as q:
        q.create_schedule(ScheduleSpec("nightly", "noop", cron="0 3 * * *"))
        job_id = q.run_schedule_now("nightly")
        assert [r[1] for r in ledger(database_url, "nightly")] == [job_id]
        job = q.get_job(job_id)
        assert job.scheduled_for is not None and job.state == "pending"
        assert q.get_schedule("nightly").last_job_id == job_id
        assert run_sql(database_url, "SELECT count(*) FROM corral_jobs")[0][0] == 1


def test_a_claimed_job_and_corral_jobs_get_carry_scheduled_for(database_url: str) -> None:
    with Queue.connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=5, queue="q"))
        job_id = q.fire_due_schedules()[0].job_ids[0]
        occurrence = q.get_schedule("tick").last_occurrence
        plain = q.enqueue("noop", queue="q")
        worker = enroll(q)
        claimed = {j.id: j for j in q.claim(worker.worker_id, worker.credential, ["q"])}
        assert claimed[job_id].scheduled_for == occurrence
        assert claimed[plain].scheduled_for is None
        assert [j.scheduled_for for j in q.list_jobs() if j.id == job_id] == [occurrence]
    out = CliRunner().invoke(cli, ["jobs", "get", str(job_id), "-o", "json"],
                             env={"CORRAL_DATABASE_URL": database_url})  # fmt: skip
    assert out.exit_code == 0, out.output
    assert occurrence is not None
    assert dt.datetime.fromisoformat(json.loads(out.output)["scheduled_for"]) == occurrence


def test_a_job_fired_while_a_claim_is_under_way_still_carries_scheduled_for(
    connect: Connect, database_url: str
) -> None:
    """A claim that reaches the backlog after a firing committed returns
    that firing's occurrence too. The claim is held between its start and
    its read of the backlog (the workers table locked), the schedule fires
    meanwhile: the job is claimed, so its occurrence must come with it (an
    every-second schedule with three workers hit this window in CI)."""
    with connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=5, queue="q"))
        worker = enroll(q)
    claimed: list[Any] = []

    def claim() -> None:
        with connect(database_url) as mine:
            claimed.extend(mine.claim(worker.worker_id, worker.credential, ["q"]))

    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE corral_workers IN ACCESS EXCLUSIVE MODE")
        claimer = threading.Thread(target=claim)
        claimer.start()
        wait_until(
            lambda: (
                run_sql(
                    database_url,
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE wait_event_type = 'Lock' AND query LIKE %s",
                    ["%corral_claim%"],
                )[0][0]
                == 1
            ),
            what="the claim waits for the workers table",
        )
        with Queue.connect(database_url) as q:
            job_id = q.fire_due_schedules()[0].job_ids[0]
            occurrence = q.get_schedule("tick").last_occurrence
        holder.commit()
    claimer.join(timeout=30)
    assert occurrence is not None
    assert [(j.id, j.scheduled_for) for j in claimed] == [(job_id, occurrence)]


def test_the_worker_role_fires_through_its_wrappers_only(
    database_url: str, worker_database_url: str
) -> None:
    with Queue.connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "noop", every_s=1, queue="q"))
        worker = enroll(q)  # serves queue q
    with Queue.connect(worker_database_url) as w:
        fired = w.fire_due_schedules(worker=worker)
        assert len(fired) == 1 and len(fired[0].job_ids) == 1
        with pytest.raises(PermissionDenied):
            w.fire_due_schedules()
        with pytest.raises(PermissionDenied):
            w.run_schedule_now("tick")
        with pytest.raises(PermissionDenied):
            w.list_schedules()
        # Only what is due: an occurrence an hour ahead is refused.
        ahead = [dt.datetime.now(UTC) + dt.timedelta(hours=1)]
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="due within a minute"):
            w.conn.execute(
                "SELECT corral_worker_fire_schedule_v1(%s, %s, 'tick', %s, %s, NULL)",
                (worker.worker_id, worker.credential, ahead, ahead),
            )


def test_a_worker_declares_schedules_only_on_its_queues_and_moves_none_away(
    database_url: str, worker_database_url: str
) -> None:
    with Queue.connect(database_url) as q:
        q.create_schedule(ScheduleSpec("billing-run", "noop", every_s=60, queue="billing"))
        worker = enroll(q, queues=["q"])
    with Queue.connect(worker_database_url) as w:
        with pytest.raises(PermissionDenied, match="serves only") as refused:
            w.declare_schedule(ScheduleSpec("mine", "noop", every_s=60, queue="billing"),
                               worker=worker)  # fmt: skip
        # The function's own reason, not the hint for a role without the right.
        assert "lacks the right" not in str(refused.value)
        # The name is another queue's schedule: the worker may not take it over.
        with pytest.raises(PermissionDenied, match="does not serve"):
            w.declare_schedule(ScheduleSpec("billing-run", "noop", every_s=5, queue="q"),
                               worker=worker)  # fmt: skip
        assert w.declare_schedule(ScheduleSpec("mine", "noop", every_s=60, queue="q"),
                                  worker=worker)  # fmt: skip
    with Queue.connect(database_url) as q:
        kept = q.get_schedule("billing-run")
        assert (kept.queue, kept.every_s) == ("billing", 60)
        assert q.get_schedule("mine").queue == "q"


def test_retention_deletes_ledger_rows_of_deleted_jobs_but_each_schedules_latest(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec("tick", "noop", every_s=1, start_at=past(5.5), overlap="allow")
        )
        q.fire_due_schedules()
        assert len(ledger(database_url, "tick")) >= 5
        finish_all(database_url)
        run_sql(
            database_url, "UPDATE corral_jobs_finished SET finished_at = now() - interval '2 d'"
        )
        run_sql(
            database_url, "UPDATE corral_schedule_occurrences SET fired_at = now() - interval '2 d'"
        )
        assert q.purge_finished_batch(86400) is not None
        rows = ledger(database_url, "tick")
        assert len(rows) == 1 and rows[0][0] == q.get_schedule("tick").last_occurrence


# -- real worker processes ----------------------------------------------------------


@pytest.fixture
def fleet(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> Iterator[Callable[..., WorkerProcess]]:
    """Start `corral worker` processes (as the worker role) serving the
    `scheduled` queue; their handler records what it saw in `seen`."""
    run_sql(
        database_url, "CREATE TABLE seen (job_id bigint, scheduled_for timestamptz, worker text)"
    )
    run_sql(database_url, f"GRANT INSERT ON seen TO {WORKER_ROLE}")
    with starting_workers(database_url, worker_database_url, tmp_path, queues="scheduled") as start:
        yield start


def consecutive_seconds(values: list[dt.datetime]) -> bool:
    return all(b - a == dt.timedelta(seconds=1) for a, b in itertools.pairwise(values))


@pytest.mark.slow
def test_three_competing_workers_fire_an_every_second_schedule_once_per_occurrence(
    database_url: str, fleet: Callable[..., WorkerProcess]
) -> None:
    workers = [fleet(f"w{i}") for i in range(3)]
    with Queue.connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "scheduled", every_s=1, overlap="allow"))
        time.sleep(20)
        q.pause_schedule("tick")
    time.sleep(1.5)  # the last jobs run
    rows = ledger(database_url, "tick")
    times = [r[0] for r in rows]
    assert len(times) >= 17 and len(set(times)) == len(times)
    assert consecutive_seconds(times), times
    assert {r[2] for r in rows} == {"enqueued"}
    jobs = run_sql(database_url, "SELECT count(*) FROM corral_jobs_finished")[0][0]
    assert jobs == len(rows)
    seen = run_sql(database_url, "SELECT scheduled_for, count(*) FROM seen GROUP BY 1 ORDER BY 1")
    assert [s[0] for s in seen] == times  # each handler saw its job.scheduled_for
    # Fired by the fleet, one counter per worker: the sum is one per occurrence.
    counted = 0
    for w in workers:
        metrics = parse_metrics(w.http("/metrics")[1])
        counted += int(
            metrics.get('corral_worker_schedule_occurrences_total{outcome="enqueued"}', 0)
        )
    assert counted == len(rows)


@pytest.mark.slow
def test_a_fleet_restart_fires_late_what_it_missed_without_duplicates(
    database_url: str, fleet: Callable[..., WorkerProcess]
) -> None:
    """Under MISSED_AFTER_S away, every occurrence still fires (late); a
    schedule whose occurrences were missed by longer (started in the past
    while the fleet was down) fires one catch-up job for them (catch_up=one)."""
    first = [fleet("a"), fleet("b")]
    with Queue.connect(database_url) as q:
        q.create_schedule(ScheduleSpec("tick", "scheduled", every_s=1, overlap="allow"))
        time.sleep(4)
        for w in first:
            w.signal(signal.SIGTERM)
        for w in first:
            w.wait()
        time.sleep(5)
        q.create_schedule(
            ScheduleSpec("old", "scheduled", every_s=1, start_at=past(300), catch_up="one",
                         overlap="allow")
        )  # fmt: skip
        fleet("c"), fleet("d")
        time.sleep(4)
        q.pause_schedule("tick")
        q.pause_schedule("old")
    times = [r[0] for r in ledger(database_url, "tick")]
    assert len(times) >= 11 and len(set(times)) == len(times)
    assert consecutive_seconds(times), times
    old = run_sql(
        database_url,
        "SELECT count(*) FILTER (WHERE scheduled_for < fired_at - interval '60 s'), count(*)"
        " FROM corral_schedule_occurrences WHERE schedule = 'old'",
    )[0]
    assert old[0] == 1  # one catch-up job for the four missed minutes
    assert old[1] >= 61
    dupes = run_sql(database_url, "SELECT count(*) - count(DISTINCT scheduled_for) FROM seen")[0][0]
    assert dupes == 0


@pytest.mark.slow
@pytest.mark.parametrize("overlap", ["skip", "queue", "allow"])
def test_overlap_with_a_slow_handler(
    database_url: str, fleet: Callable[..., WorkerProcess], overlap: str
) -> None:
    """Every second, a handler that takes 2.5 s: skip runs one at a time and
    records the rest as skipped; queue runs one at a time and fires each
    occurrence in turn, late; allow runs them side by side."""
    fleet("w")
    with Queue.connect(database_url) as q:
        q.create_schedule(
            ScheduleSpec("slow", "scheduled", {"sleep_s": 2.5}, every_s=1, overlap=overlap)
        )
        time.sleep(8)
        q.pause_schedule("slow")
    rows = ledger(database_url, "slow")
    outcomes = [r[2] for r in rows]
    spans = run_sql(
        database_url,
        "SELECT started_at, finished_at FROM corral_jobs_finished ORDER BY started_at",
    )
    one_at_a_time = all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
    if overlap == "skip":
        assert outcomes[0] == "enqueued" and "skipped" in outcomes
        assert 2 <= outcomes.count("enqueued") <= 4  # one per ~3 s
        assert one_at_a_time
    elif overlap == "queue":
        assert set(outcomes) == {"enqueued"} and 2 <= len(outcomes) <= 4
        assert consecutive_seconds([r[0] for r in rows])  # none skipped, each in turn
        assert one_at_a_time
    else:
        assert set(outcomes) == {"enqueued"} and len(outcomes) >= 7
        assert not one_at_a_time


@pytest.mark.slow
def test_workers_upsert_the_schedules_their_handlers_declare(
    database_url: str, fleet: Callable[..., WorkerProcess]
) -> None:
    modules = ("--handlers", "tests.integration.worker_handlers",
               "--handlers", "tests.integration.scheduled_handlers")  # fmt: skip
    first = fleet("a", *modules)
    with Queue.connect(database_url) as q:
        stored = {s.name: s for s in q.list_schedules()}
        assert set(stored) == {"declared-nightly", "declared-kind"}
        assert (stored["declared-nightly"].cron, stored["declared-nightly"].timezone) == (
            "0 3 * * *", "Europe/Berlin",
        )  # fmt: skip
        assert stored["declared-kind"].every_s == 3600
        assert "declared-elsewhere" in first.output() and "elsewhere" in first.output()
        # The handler's own schedule fires (its first occurrence is its creation).
        wait_until(lambda: run_sql(database_url, "SELECT count(*) FROM seen")[0][0] == 1,
                   15, "the declared schedule's job to run")  # fmt: skip
        stored = {s.name: s for s in q.list_schedules()}
        fleet("b", *modules)  # converges on the same specs: nothing moves
        again = {s.name: s for s in q.list_schedules()}
        for name, schedule in stored.items():
            assert again[name].updated_at == schedule.updated_at
            assert again[name].next_at == schedule.next_at
        assert run_sql(database_url, "SELECT count(*) FROM seen")[0][0] == 1


# -- corral schedules ------------------------------------------------------------------


def corral(url: str, *args: str) -> Any:
    return CliRunner().invoke(cli, list(args), env={"CORRAL_DATABASE_URL": url})


def test_the_cli_creates_lists_pauses_runs_and_deletes_a_schedule(database_url: str) -> None:
    created = corral(database_url, "schedules", "create", "nightly", "roll-up", '{"a": 1}',
                     "--cron", "30 2 * * *", "--timezone", "Europe/Berlin", "--queue", "reports")  # fmt: skip
    assert created.exit_code == 0, created.output
    assert created.output.startswith("schedule nightly (cron 30 2 * * * Europe/Berlin): next ")
    listed = corral(database_url, "schedules", "list")
    assert listed.output.split("\n")[0].split() == [
        "NAME", "SPEC", "QUEUE", "NEXT", "LAST", "LAST-JOB-STATE", "PAUSED",
    ]  # fmt: skip
    assert "nightly" in listed.output and "reports" in listed.output
    got = json.loads(corral(database_url, "schedules", "get", "nightly", "-o", "json").output)
    assert (got["payload"], got["timezone"], got["paused"]) == ({"a": 1}, "Europe/Berlin", False)
    nxt = corral(database_url, "schedules", "next", "nightly", "-n", "3").output.splitlines()
    assert len(nxt) == 3 and all("T02:30:00+0" in line for line in nxt)
    assert (
        corral(database_url, "schedules", "pause", "nightly").output == "schedule nightly paused\n"
    )
    assert json.loads(corral(database_url, "schedules", "get", "nightly", "-o", "json").output)[
        "paused"
    ]
    assert corral(database_url, "schedules", "resume", "nightly").exit_code == 0
    job_id = int(corral(database_url, "schedules", "run-now", "nightly").output)
    assert json.loads(corral(database_url, "jobs", "get", str(job_id), "-o", "json").output)[
        "scheduled_for"
    ]
    assert corral(database_url, "schedules", "delete", "nightly").exit_code == 0
    gone = corral(database_url, "schedules", "get", "nightly")
    assert gone.exit_code == 3 and "schedule 'nightly' does not exist" in gone.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--cron", "61 * * * *"], "--cron: '61 * * * *' is not a cron expression (minute 61"),
        (["--every", "500ms"], "--every: '500ms' is under the 1 s minimum"),
        (["--every", "5s", "--timezone", "Nowhere/Land"], "--timezone: 'Nowhere/Land'"),
        (["--every", "5s", "--cron", "@daily"], "--every/--cron: give exactly one"),
        (["--every", "5s", "--catch-up", "some"], "'--catch-up'"),
        (
            [
                "--every",
                "5s",
                "--start-at",
                "2030-01-02T00:00:00Z",
                "--end-at",
                "2030-01-01T00:00:00Z",
            ],
            "--end-at: 2030-01-01T00:00:00+00:00 is not after --start-at",
        ),
        (["--every", "5s", "--jitter", "soon"], "--jitter 'soon' is not a duration"),
    ],
)
def test_bad_cli_input_exits_2_naming_the_field_and_stores_nothing(
    database_url: str, args: list[str], named: str
) -> None:
    result = corral(database_url, "schedules", "create", "s", "noop", *args)
    assert result.exit_code == 2, result.output
    assert named in result.output
    assert run_sql(database_url, "SELECT count(*) FROM corral_schedules")[0][0] == 0


def test_every_schedules_command_has_help() -> None:
    for command in ("create", "list", "get", "pause", "resume", "delete", "run-now", "next"):
        result = CliRunner().invoke(cli, ["schedules", command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, command

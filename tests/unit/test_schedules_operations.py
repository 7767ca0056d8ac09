"""The schedules' queue calls without a database (corral.queue._schedules):
which statements an upsert and a firing pass send, with what, and what
they make of the rows sent back."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from corral.queue import _schedules as sch
from corral.queue import records as r
from corral.queue.schedules import ScheduleSpec

UTC = dt.UTC
NOW = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
SCHEDULE_ROW: tuple[object, ...] = (
    "tick", "noop", {}, 60.0, None, "UTC", "noop", 0, "", None, None, None, "one", "skip", 0.0,
    False, NOW, None, None, None, NOW, NOW,
)  # fmt: skip


def drive(operation: Any, answers: dict[str, Any]) -> tuple[list[Any], Any]:
    """Run `operation`, answering each statement by name (an answer that is
    a function is called with the statement's parameters); returns the
    statements sent and the result."""
    sent = []
    try:
        stmt = next(operation)
        while True:
            sent.append(stmt)
            answer = answers[stmt.name]
            stmt = operation.send(answer(stmt.params) if callable(answer) else answer)
    except StopIteration as done:
        return sent, done.value


def stored(spec: ScheduleSpec, created: dt.datetime) -> list[tuple[Any, ...]]:
    columns = sch._columns(spec)
    return [(*[columns[c] for c in sch._COLUMNS], created, NOW)]


def test_an_unchanged_spec_is_not_written_again() -> None:
    spec = ScheduleSpec("tick", "noop", every_s=60)
    sent, schedule = drive(
        sch.create_schedule(spec),
        {"lock_schedule": stored(spec, NOW), "get_schedule": [SCHEDULE_ROW]},
    )
    assert [s.name for s in sent] == ["lock_schedule", "get_schedule"]
    assert schedule.name == "tick"


def test_a_changed_interval_keeps_counting_from_the_creation() -> None:
    created = NOW - dt.timedelta(seconds=90)
    old = ScheduleSpec("tick", "noop", every_s=60)
    sent, _ = drive(
        sch.create_schedule(ScheduleSpec("tick", "noop", every_s=40)),
        {"lock_schedule": stored(old, created), "upsert_schedule": 1,
         "get_schedule": [SCHEDULE_ROW]},
    )  # fmt: skip
    upsert = sent[1]
    assert upsert.name == "upsert_schedule"
    assert upsert.params["next_at"] == created + dt.timedelta(seconds=120)  # first >= now


def test_a_new_schedule_starts_now_or_at_start_at() -> None:
    sent, _ = drive(
        sch.create_schedule(ScheduleSpec("tick", "noop", every_s=60)),
        {"lock_schedule": [], "db_now": NOW, "upsert_schedule": 1,
         "get_schedule": [SCHEDULE_ROW]},
    )  # fmt: skip
    assert [s.name for s in sent] == ["lock_schedule", "db_now", "upsert_schedule", "get_schedule"]
    assert sent[2].params["next_at"] == NOW


def test_a_worker_declares_through_its_own_functions() -> None:
    caller = r.Credentials(7, "crl_wc_x")
    sent, changed = drive(
        sch.declare_schedule(ScheduleSpec("tick", "noop", cron="@hourly"), worker=caller),
        {"worker_lock_schedule_v1": [], "db_now": NOW, "worker_declare_schedule_v1": []},
    )
    assert changed is True
    assert sent[0].params == (7, "crl_wc_x", "tick")
    assert sent[2].params["worker_id"] == 7
    assert sent[2].params["next_at"] == NOW  # 12:00:00 is itself an @hourly occurrence


def due_row(next_at: dt.datetime) -> tuple[Any, ...]:
    return ("tick", "noop", 1.0, None, "UTC", "noop", None, None, "one", "allow", 0.0,
            next_at, None, next_at, NOW)  # fmt: skip


def test_a_firing_pass_fires_what_plan_firing_says_and_counts_skips() -> None:
    sent, fired = drive(
        sch.fire_due_schedules(),
        {"due_schedules_v1": [due_row(NOW - dt.timedelta(seconds=2))],
         "fire_schedule_v1": [11, None, 12]},
    )  # fmt: skip
    fire = sent[1]
    assert fire.params[1] == [NOW - dt.timedelta(seconds=k) for k in (2, 1, 0)]
    assert fire.params[2] == fire.params[1]  # no jitter: run at the occurrence
    assert fire.params[3] == NOW + dt.timedelta(seconds=1)
    assert fired == [r.ScheduleFiring("tick", [11, 12], 1, "noop")]


def test_a_workers_firing_pass_names_its_caller() -> None:
    caller = r.Credentials(7, "crl_wc_x")
    sent, _ = drive(
        sch.fire_due_schedules(5, 0.5, worker=caller),
        {"worker_due_schedules_v1": [due_row(NOW)], "worker_fire_schedule_v1": [1]},
    )
    assert sent[0].params == (7, "crl_wc_x", 5, 0.5)
    assert sent[1].name == "worker_fire_schedule_v1" and sent[1].params[:3] == (
        7,
        "crl_wc_x",
        "tick",
    )


@pytest.fixture(autouse=True)
def _fresh_warnings() -> None:
    sch._unplannable_warned.clear()


def test_a_schedule_that_cannot_be_planned_is_left_and_the_pass_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # "far": its next occurrence is past year 9999 (OverflowError); "typo":
    # stored before the 366-day cap. Neither may stop "tick" from firing.
    end = dt.datetime(9999, 12, 31, 12, 0, tzinfo=UTC)
    far = ("far", "noop", 86400.0, None, "UTC", "noop", None, None, "one", "allow", 0.0,
           end, None, end, end)  # fmt: skip
    typo = ("typo", "noop", 1e12, *due_row(NOW)[3:])
    with caplog.at_level(logging.WARNING, logger="corral.queue"):
        sent, fired = drive(
            sch.fire_due_schedules(),
            {"due_schedules_v1": [far, typo, due_row(NOW)], "fire_schedule_v1": [11]},
        )
    assert [stmt.params[0] for stmt in sent[1:]] == ["tick"]
    assert fired == [r.ScheduleFiring("tick", [11], 0, "noop")]
    logged = caplog.text
    assert "schedule 'far' not fired: date value out of range" in logged
    assert "schedule 'typo' not fired: --every: 1000000000000.0 is over" in logged


def _typo(name: str) -> tuple[Any, ...]:
    """A due row stored before the 366-day cap on --every: it cannot be planned."""
    return (name, "noop", 1e12, *due_row(NOW)[3:])


def _named(name: str) -> tuple[Any, ...]:
    return (name, *due_row(NOW)[1:])


def test_rows_that_cannot_be_planned_never_fill_a_pass(caplog: pytest.LogCaptureFixture) -> None:
    # Three broken schedules at the head of the due list and a pass of 2:
    # the list is read again, wider, until the schedules due after them fire.
    due = [_typo("bad1"), _typo("bad2"), _typo("bad3"), _named("a"), _named("b"), _named("c")]
    with caplog.at_level(logging.WARNING, logger="corral.queue"):
        sent, fired = drive(
            sch.fire_due_schedules(limit=2),
            {"due_schedules_v1": lambda params: due[: params[0]], "fire_schedule_v1": [11]},
        )
    reads = [stmt.params[0] for stmt in sent if stmt.name == "due_schedules_v1"]
    assert reads == [2, 4, 5]  # 2 bad of 2, then 3 bad of 4, then 3 bad of 5: done
    assert [f.schedule for f in fired] == ["a", "b"]  # still at most `limit` fired
    assert [stmt.params[0] for stmt in sent if stmt.name == "fire_schedule_v1"] == ["a", "b"]
    # Each broken schedule is named once, with what fixes it.
    assert caplog.text.count("schedule 'bad1' not fired") == 1
    assert "`corral schedules create bad1 ...` with a valid rule" in caplog.text


def test_a_short_due_list_is_read_once_whatever_it_holds() -> None:
    due = [_typo("bad1"), _named("a")]
    sent, fired = drive(
        sch.fire_due_schedules(limit=5),
        {"due_schedules_v1": lambda params: due[: params[0]], "fire_schedule_v1": [11]},
    )
    assert [stmt.name for stmt in sent] == ["due_schedules_v1", "fire_schedule_v1"]
    assert [f.schedule for f in fired] == ["a"]


def test_a_broken_schedule_is_named_again_only_after_a_while(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("corral.queue._schedules.time.monotonic", lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="corral.queue"):
        for seconds in (0, 1, sch.UNPLANNABLE_WARN_S - 2, 1):
            clock[0] += seconds
            drive(sch.fire_due_schedules(), {"due_schedules_v1": [_typo("bad")]})
    assert caplog.text.count("schedule 'bad' not fired") == 2

"""Schedules, the pure half (corral.queue.schedules): validation, when a
schedule fires (intervals, cron across DST in two timezones) and what a
firing pass enqueues under each catch-up policy."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from corral.queue.schedules import (
    MAX_PERIOD_S,
    MISSED_AFTER_S,
    InvalidSchedule,
    ScheduleSpec,
    first_occurrence,
    next_occurrences,
    plan_firing,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def s(seconds: float) -> dt.timedelta:
    return dt.timedelta(seconds=seconds)


# -- intervals ---------------------------------------------------------------


def test_an_interval_fires_every_n_seconds_from_its_anchor() -> None:
    spec = ScheduleSpec("tick", "noop", every_s="30s")
    got = next_occurrences(spec, T0 + s(45), 4, anchor=T0)
    assert got == [T0 + s(60), T0 + s(90), T0 + s(120), T0 + s(150)]


def test_an_interval_counts_from_start_at_and_stops_before_end_at() -> None:
    spec = ScheduleSpec("tick", "noop", every_s=10, start_at=T0, end_at=T0 + s(30))
    assert next_occurrences(spec, T0 - s(100), 10) == [T0, T0 + s(10), T0 + s(20)]


# -- cron across DST -----------------------------------------------------------


def local(spec: ScheduleSpec, after: dt.datetime, n: int) -> list[str]:
    return [t.astimezone(spec.zone).isoformat() for t in next_occurrences(spec, after, n)]


@pytest.mark.parametrize(
    ("zone", "after", "skipped_fires_at"),
    [
        ("Europe/Berlin", at(2026, 3, 28, 12), "2026-03-29T03:00:00+02:00"),
        ("America/New_York", at(2026, 3, 7, 12), "2026-03-08T03:00:00-04:00"),
    ],
)
def test_a_skipped_local_time_fires_once_right_after_the_jump(
    zone: str, after: dt.datetime, skipped_fires_at: str
) -> None:
    spec = ScheduleSpec("nightly", "roll-up", cron="30 2 * * *", timezone=zone)
    got = local(spec, after, 3)
    assert got[0] == skipped_fires_at
    assert got[1].startswith(skipped_fires_at[:8])  # next day, 02:30 again
    assert [t[11:16] for t in got[1:]] == ["02:30", "02:30"]
    assert len(set(got)) == 3


@pytest.mark.parametrize(
    ("zone", "after", "first"),
    [
        ("Europe/Berlin", at(2026, 10, 24, 12), "2026-10-25T01:30:00+02:00"),
        ("America/New_York", at(2026, 10, 31, 12), "2026-11-01T01:30:00-04:00"),
    ],
)
def test_a_repeated_local_time_fires_once(zone: str, after: dt.datetime, first: str) -> None:
    # 01:30 happens twice in New York on fall-back night; in Berlin 02:30 does.
    hour = int(first[11:13])
    spec = ScheduleSpec("nightly", "roll-up", cron=f"30 {hour} * * *", timezone=zone)
    got = local(spec, after, 3)
    assert got[0] == first
    assert got[1][:10] != got[0][:10]  # the second instance of the hour did not fire
    assert [t[11:16] for t in got] == [first[11:16]] * 3


def test_berlins_repeated_half_past_two_fires_once() -> None:
    spec = ScheduleSpec("nightly", "roll-up", cron="30 2 * * *", timezone="Europe/Berlin")
    got = local(spec, at(2026, 10, 24, 12), 2)
    assert got == ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


@pytest.mark.parametrize(
    ("zone", "cron", "second_copy", "fired", "next_day"),
    [
        ("America/New_York", "30 1 * * *", at(2025, 11, 2, 6, 10), at(2025, 11, 2, 5, 30),
         at(2025, 11, 3, 6, 30)),
        ("Europe/Berlin", "30 2 * * *", at(2025, 10, 26, 1, 10), at(2025, 10, 26, 0, 30),
         at(2025, 10, 27, 1, 30)),
    ],
)  # fmt: skip
def test_from_the_second_copy_of_a_repeated_hour_the_days_occurrence_is_past(
    zone: str, cron: str, second_copy: dt.datetime, fired: dt.datetime, next_day: dt.datetime
) -> None:
    # `second_copy` is 01:10 EST (02:10 CET): the clock shows it for the
    # second time (fold=1), after the day's 01:30 EDT (02:30 CEST) fired.
    # cronsim reads the wall time without the fold, an hour early.
    spec = ScheduleSpec("nightly", "roll-up", cron=cron, timezone=zone, catch_up="one")
    assert second_copy.astimezone(spec.zone).fold == 1
    assert next_occurrences(spec, second_copy, 2) == [next_day, next_day + s(86400)]
    assert first_occurrence(spec, second_copy) == next_day  # created then: not before
    # The fleet was down since before the day's occurrence: catch_up="one"
    # fires that one (the latest missed), not the day before's.
    plan = plan_firing(spec, fired - s(86400), None, second_copy + s(MISSED_AFTER_S))
    assert plan.occurrences == [fired] and plan.new_next_at == next_day
    # A wildcard hour fires on both copies: the second copy's half past.
    wildcard = ScheduleSpec("half-hourly", "roll-up", cron="*/30 * * * *", timezone=zone)
    assert next_occurrences(wildcard, second_copy, 1) == [second_copy + s(20 * 60)]


def test_shorthands_are_cron_expressions() -> None:
    for name, expected in [
        ("@hourly", at(2026, 1, 1, 13)),
        ("@daily", at(2026, 1, 2)),
        ("@midnight", at(2026, 1, 2)),
        ("@weekly", at(2026, 1, 4)),  # a Sunday
        ("@monthly", at(2026, 2, 1)),
        ("@yearly", at(2027, 1, 1)),
        ("@annually", at(2027, 1, 1)),
    ]:
        spec = ScheduleSpec("x", "noop", cron=name)
        assert next_occurrences(spec, T0, 1) == [expected], name


# -- catch-up ----------------------------------------------------------------------


def every_second(catch_up: str) -> ScheduleSpec:
    return ScheduleSpec("tick", "noop", every_s=1, start_at=T0, catch_up=catch_up)


def test_due_occurrences_that_are_not_missed_all_fire() -> None:
    plan = plan_firing(every_second("none"), T0, None, T0 + s(3))
    assert plan.occurrences == [T0, T0 + s(1), T0 + s(2), T0 + s(3)]
    assert plan.new_next_at == T0 + s(4)


def test_catch_up_none_fires_no_missed_occurrence() -> None:
    now = T0 + s(600)
    plan = plan_firing(every_second("none"), T0, None, now)
    assert plan.occurrences[0] == now - s(MISSED_AFTER_S)  # the oldest not yet missed
    assert plan.occurrences[-1] == now
    assert len(plan.occurrences) == MISSED_AFTER_S + 1
    assert plan.new_next_at == now + s(1)


def test_catch_up_one_fires_only_the_latest_missed_occurrence() -> None:
    now = T0 + s(600)
    plan = plan_firing(every_second("one"), T0, None, now)
    latest_missed = now - s(MISSED_AFTER_S + 1)
    assert plan.occurrences[0] == latest_missed
    assert plan.occurrences[1] == now - s(MISSED_AFTER_S)
    assert len(plan.occurrences) == MISSED_AFTER_S + 2


def test_catch_up_all_fires_every_missed_occurrence_up_to_the_cap() -> None:
    plan = plan_firing(every_second("all"), T0, None, T0 + s(600))
    assert plan.occurrences == [T0 + s(k) for k in range(601)]
    capped = plan_firing(every_second("all"), T0, None, T0 + s(5000))
    assert len(capped.occurrences) == 1000
    assert capped.new_next_at == T0 + s(1000)


def test_occurrences_already_fired_are_not_planned_again() -> None:
    plan = plan_firing(every_second("none"), T0, T0 + s(2), T0 + s(3))
    assert plan.occurrences == [T0 + s(3)]


def test_lead_fires_occurrences_shortly_ahead_and_end_at_finishes() -> None:
    spec = ScheduleSpec("tick", "noop", every_s=1, start_at=T0, end_at=T0 + s(3))
    plan = plan_firing(spec, T0, None, T0, lead_s=10)
    assert plan.occurrences == [T0, T0 + s(1), T0 + s(2)]
    assert plan.new_next_at is None


def test_a_missed_cron_occurrence_catches_up_once() -> None:
    spec = ScheduleSpec("hourly", "noop", cron="@hourly")
    plan = plan_firing(spec, at(2026, 1, 1, 1), None, at(2026, 1, 1, 5, 30))
    assert plan.occurrences == [at(2026, 1, 1, 5)]
    assert plan.new_next_at == at(2026, 1, 1, 6)


# -- validation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"cron": "61 * * * *"},
            "--cron: '61 * * * *' is not a cron expression (minute 61 is out of 0-59); "
            "e.g. '*/5 * * * *' or '@hourly'",
        ),
        ({"cron": "* * *"}, "--cron: '* * *' is not a cron expression (it has 3 field(s)"),
        (
            {"cron": "*/90 * * * *"},
            "--cron: '*/90 * * * *' is not a cron expression "
            "(minute step 90 exceeds 0-59; use --every 90m); e.g.",
        ),
        (
            {"cron": "0 0-23/24 * * *"},
            "--cron: '0 0-23/24 * * *' is not a cron expression "
            "(hour step 24 exceeds 0-23; use --every 24h)",
        ),
        (
            {"cron": "0 0 1 */13 *"},
            "--cron: '0 0 1 */13 *' is not a cron expression (month step 13 exceeds 1-12)",
        ),
        ({"cron": "@hourly", "timezone": "Mars/Olympus"}, "--timezone: 'Mars/Olympus' is not"),
        ({"every_s": 0.5}, "--every: 0.5 is under the 1 s minimum; e.g. '30s'"),
        ({"every_s": "soon"}, "--every 'soon' is not a duration"),
        ({}, "--every/--cron: give exactly one of them"),
        ({"every_s": 1, "cron": "@hourly"}, "--every/--cron: give exactly one of them"),
        (
            {"every_s": 1, "start_at": T0, "end_at": T0},
            "--end-at: 2026-01-01T12:00:00+00:00 is not after --start-at",
        ),
        (
            {"every_s": 1, "start_at": dt.datetime(2026, 1, 1)},
            "--start-at: 2026-01-01T00:00:00 has",
        ),
        ({"every_s": 1, "catch_up": "some"}, "--catch-up: 'some' is not one of none, one, all"),
        ({"every_s": 1, "overlap": "never"}, "--overlap: 'never' is not one of allow, skip, queue"),
        ({"every_s": 1, "jitter_s": -1}, "--jitter: -1 must be 0 or more"),
        ({"every_s": "1e12"}, "--every: '1e12' is over the 366-day maximum (31622400 s)"),
        ({"every_s": 1, "jitter_s": "367d"}, "--jitter: '367d' is over the 366-day maximum"),
        ({"every_s": 1, "priority": 5000}, "--priority: 5000 is out of -1000..1000"),
    ],
)
def test_bad_input_names_the_field_and_a_valid_example(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidSchedule) as err:
        ScheduleSpec("s", "noop", **kwargs)  # type: ignore[arg-type]
    assert str(err.value).startswith(message), str(err.value)


def test_a_step_within_its_fields_range_is_a_cron_expression() -> None:
    for cron in ("*/59 * * * *", "0 */23 * * *", "0 0 */30 * *", "0 0 1 */11 *", "0 0 * * */7"):
        assert ScheduleSpec("s", "noop", cron=cron).cron == cron


def test_a_year_is_the_longest_interval_and_jitter() -> None:
    spec = ScheduleSpec("yearly", "noop", every_s="366d", jitter_s=MAX_PERIOD_S)
    assert spec.every_s == spec.jitter_s == MAX_PERIOD_S


def test_an_empty_name_or_kind_is_refused() -> None:
    with pytest.raises(InvalidSchedule, match=r"^name: "):
        ScheduleSpec("", "noop", every_s=1)
    with pytest.raises(InvalidSchedule, match=r"^kind: "):
        ScheduleSpec("s", " ", every_s=1)


@pytest.mark.parametrize("name", [".", ".."])
def test_a_dot_segment_is_not_a_name(name: str) -> None:
    # The dashboard's buttons put the name in a URL path, where a browser
    # resolves "." and ".." (even encoded) instead of sending them.
    with pytest.raises(InvalidSchedule, match=rf"^name: '{re.escape(name)}' is not a schedule"):
        ScheduleSpec(name, "noop", every_s=1)
    assert ScheduleSpec(f"{name}/x", "noop", every_s=1).name == f"{name}/x"


def test_invalid_schedule_is_a_queue_error() -> None:
    from corral.queue.errors import QueueError

    assert issubclass(InvalidSchedule, QueueError)


# -- declared beside handlers ------------------------------------------------------------


def test_a_handler_declares_a_schedule_named_after_its_kind() -> None:
    import corral
    from corral.worker import handlers

    @corral.handler("unit-roll-up", schedule=corral.every("5m", timezone="Europe/Berlin"))
    def roll_up(job: corral.Job[object]) -> None: ...

    nightly = corral.schedule("unit-nightly", "unit-roll-up", cron="0 3 * * *")
    declared = {s.name: s for s in handlers.declared_schedules()}
    assert declared["unit-roll-up"] == ScheduleSpec(
        "unit-roll-up", "unit-roll-up", every_s=300, timezone="Europe/Berlin"
    )
    assert declared["unit-nightly"] is nightly
    # The same declaration again (a module imported twice) is fine; a different one is not.
    corral.schedule("unit-nightly", "unit-roll-up", cron="0 3 * * *")
    with pytest.raises(ValueError, match="'unit-nightly' is declared twice"):
        corral.schedule("unit-nightly", "unit-roll-up", cron="0 4 * * *")


def test_a_bad_declaration_fails_at_import_naming_the_field() -> None:
    import corral

    with pytest.raises(InvalidSchedule, match=r"^--every: '0.1s' is under the 1 s minimum"):
        corral.every("0.1s")
    with pytest.raises(InvalidSchedule, match=r"^--cron: 'every day'"):
        corral.schedule("unit-bad", "noop", cron="every day")

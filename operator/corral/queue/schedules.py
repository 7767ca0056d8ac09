"""Recurring schedules, the pure half: what a schedule is (`ScheduleSpec`),
when it fires (`next_occurrences`) and what one firing pass enqueues
(`plan_firing`). No I/O: the unit tier calls all of it.

Called by `corral.queue._schedules` (the firing pass and the schedule calls
of `Queue`/`AsyncQueue`), the admin CLI (`corral schedules`) and
`corral.schedule` / `@corral.handler(..., schedule=...)`.

Cron expressions are evaluated by cronsim in the schedule's timezone, which
follows Debian cron across DST changes: a local time the clock skips (02:30
on a spring-forward night) fires once, right after the jump; a local time
that happens twice (fall-back) fires once, at its first instance (cronsim
reads a wall time without its fold, so `_after` and `_last_before` keep only
the instants after, or before, the one asked about). Intervals
(`every_s`) are plain elapsed time from an anchor (`start_at`, else when the
schedule was created), untouched by DST.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from corral.durations import DurationError, parse_duration
from corral.queue.errors import InvalidJob

__all__ = [
    "CATCH_UP",
    "MAX_CATCH_UP",
    "MAX_PERIOD_S",
    "MISSED_AFTER_S",
    "OVERLAP",
    "Firing",
    "InvalidSchedule",
    "ScheduleSpec",
    "next_occurrences",
    "plan_firing",
]

UTC = dt.UTC
# An occurrence more than this many seconds older than the database's now
# is "missed" (the fleet was down, or the schedule paused): the catch-up
# policy decides whether it still fires. A younger one simply fires late.
MISSED_AFTER_S = 60.0
MAX_CATCH_UP = 1000  # occurrences one pass enqueues at most (catch_up="all")
# The longest --every and --jitter: 366 days (a longer one is a typo, and
# occurrences reckoned from it soon pass year 9999, which datetime refuses).
MAX_PERIOD_S = 366 * 86400
CATCH_UP = ("none", "one", "all")
OVERLAP = ("allow", "skip", "queue")
SHORTHANDS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_CRON_EXAMPLE = "e.g. '*/5 * * * *' or '@hourly'"
_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12),
           ("day of week", 0, 7))  # fmt: skip
_NUMBER = re.compile(r"(?<![/\d])\d+")  # numbers that are values, not steps
_STEP = re.compile(r"/(\d+)")
_EVERY_UNIT = {"minute": "m", "hour": "h", "day of month": "d"}  # a too long step's --every


class InvalidSchedule(InvalidJob):
    """A schedule argument is wrong; the message names it and shows a valid value."""


def _cron_error(expr: str) -> str | None:
    """Why `expr` is not a cron expression (None: it is one)."""
    text = SHORTHANDS.get(expr.strip().lower(), expr)
    parts = text.split()
    if len(parts) != 5:
        return f"it has {len(parts)} field(s), cron has 5: minute hour day month weekday"
    for part, (what, low, high) in zip(parts, _FIELDS, strict=True):
        for number in _NUMBER.findall(part):
            if not low <= int(number) <= high:
                return f"{what} {number} is out of {low}-{high}"
        for step in _STEP.findall(part):
            if int(step) > high - low:  # it never reaches a second value: */90 fires hourly
                unit = _EVERY_UNIT.get(what)
                hint = f"; use --every {int(step)}{unit}" if unit else ""
                return f"{what} step {step} exceeds {low}-{high}{hint}"
    try:
        CronSim(text, dt.datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        return str(exc).lower() or "cronsim refuses it"
    return None


def _aware(name: str, value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        raise InvalidSchedule(
            f"{name}: {value.isoformat()} has no timezone; e.g. '2026-01-01T00:00:00Z'"
        )
    return value.astimezone(UTC)


def _seconds(value: float | str, flag: str, least: float, otherwise: str) -> float:
    """A duration field (seconds, or a string such as '30s') as seconds, at
    least `least` and at most MAX_PERIOD_S; else `InvalidSchedule`
    "FLAG: VALUE OTHERWISE" (or naming the maximum)."""
    seconds = value
    if isinstance(seconds, str):
        try:
            seconds = parse_duration(seconds, what=flag)
        except DurationError as exc:
            raise InvalidSchedule(str(exc)) from None
    if not math.isfinite(float(seconds)) or float(seconds) < least:
        raise InvalidSchedule(f"{flag}: {value!r} {otherwise}")
    if float(seconds) > MAX_PERIOD_S:
        raise InvalidSchedule(
            f"{flag}: {value!r} is over the 366-day maximum ({MAX_PERIOD_S} s); e.g. '30d'"
        )
    return float(seconds)


@dataclass(frozen=True, slots=True)
class ScheduleSpec:
    """A recurring job: enqueue a `kind` job with `payload` every `every_s`
    seconds or on `cron` (five fields or @hourly/@daily/...; local time of
    `timezone`), between `start_at` (inclusive) and `end_at` (exclusive).

    `catch_up` (occurrences missed by more than MISSED_AFTER_S): none, one
    (the latest), all (up to MAX_CATCH_UP a pass). `overlap` while the
    previous occurrence's job is unfinished: skip (recorded as skipped),
    queue (wait for it, then fire), allow. `jitter_s` delays each job by a
    random 0..jitter_s seconds. Raises InvalidSchedule, naming the field."""

    name: str
    kind: str
    payload: Any = None
    every_s: float | str | None = None
    cron: str | None = None
    timezone: str = "UTC"
    queue: str | None = None
    priority: int = 0
    region: str | None = None
    max_attempts: int | None = None
    start_at: dt.datetime | None = None
    end_at: dt.datetime | None = None
    catch_up: str = "one"
    overlap: str = "skip"
    jitter_s: float | str = 0.0
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise InvalidSchedule("name: a schedule needs a name; e.g. 'nightly-report'")
        if self.name in (".", ".."):
            raise InvalidSchedule(
                f"name: {self.name!r} is not a schedule name (a URL path cannot carry it); "
                "e.g. 'nightly-report'"
            )
        if not self.kind or not self.kind.strip():
            raise InvalidSchedule("kind: a schedule needs the job kind it enqueues; e.g. 'roll-up'")
        if (self.every_s is None) == (self.cron is None):
            raise InvalidSchedule(
                "--every/--cron: give exactly one of them; e.g. --every 30s or --cron '0 * * * *'"
            )
        if self.every_s is not None:
            every = _seconds(
                self.every_s, "--every", 1, "is under the 1 s minimum; e.g. '30s' or '5m'"
            )
            object.__setattr__(self, "every_s", every)
        if self.cron is not None:
            why = _cron_error(self.cron)
            if why is not None:
                raise InvalidSchedule(
                    f"--cron: {self.cron!r} is not a cron expression ({why}); {_CRON_EXAMPLE}"
                )
        try:
            zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidSchedule(
                f"--timezone: {self.timezone!r} is not a known IANA timezone; "
                "e.g. 'Europe/Berlin', 'America/New_York' or 'UTC'"
            ) from None
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "start_at", _aware("--start-at", self.start_at))
        object.__setattr__(self, "end_at", _aware("--end-at", self.end_at))
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise InvalidSchedule(
                f"--end-at: {self.end_at.isoformat()} is not after --start-at "
                f"{self.start_at.isoformat()}; e.g. a day later"
            )
        if self.catch_up not in CATCH_UP:
            raise InvalidSchedule(f"--catch-up: {self.catch_up!r} is not one of none, one, all")
        if self.overlap not in OVERLAP:
            raise InvalidSchedule(f"--overlap: {self.overlap!r} is not one of allow, skip, queue")
        jitter = _seconds(self.jitter_s, "--jitter", 0, "must be 0 or more; e.g. '5s'")
        object.__setattr__(self, "jitter_s", jitter)
        if not -1000 <= self.priority <= 1000:
            raise InvalidSchedule(f"--priority: {self.priority} is out of -1000..1000; e.g. 0")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise InvalidSchedule(f"--max-attempts: {self.max_attempts} must be at least 1; e.g. 3")
        if self.queue is not None and self.queue in ("", "*"):
            raise InvalidSchedule(f"--queue: {self.queue!r} is reserved or empty; e.g. 'reports'")

    @property
    def zone(self) -> ZoneInfo:
        return self._zone

    @property
    def expression(self) -> str | None:
        """The cron expression cronsim evaluates (shorthands spelled out)."""
        if self.cron is None:
            return None
        return SHORTHANDS.get(self.cron.strip().lower(), self.cron)

    @property
    def interval(self) -> dt.timedelta | None:
        if self.every_s is None:
            return None
        return dt.timedelta(microseconds=round(float(self.every_s) * 1_000_000))

    def describe(self) -> str:
        """`every 30s` or `cron 0 3 * * * Europe/Berlin` (the CLI's SPEC column)."""
        if self.every_s is not None:
            return f"every {float(self.every_s):g}s"
        zone = "" if self.timezone == "UTC" else f" {self.timezone}"
        return f"cron {self.cron}{zone}"


def _anchor(spec: ScheduleSpec, anchor: dt.datetime | None) -> dt.datetime:
    found = spec.start_at or anchor
    if found is None:
        raise ValueError(f"schedule {spec.name!r}: an interval needs start_at or an anchor time")
    return found.astimezone(UTC)


def _after(
    spec: ScheduleSpec, after: dt.datetime, anchor: dt.datetime | None
) -> Iterator[dt.datetime]:
    """Occurrences strictly after `after`, in order, without an end."""
    after = after.astimezone(UTC)
    if spec.start_at is not None and after < spec.start_at:
        after = spec.start_at - dt.timedelta(microseconds=1)
    step = spec.interval
    if step is not None:
        base = _anchor(spec, anchor)
        k = 0 if after < base else (after - base) // step + 1
        while True:
            yield base + step * k
            k += 1
    expression = spec.expression
    assert expression is not None
    for local in CronSim(expression, after.astimezone(spec.zone)):
        at = local.astimezone(UTC)
        if at > after:  # from a repeated hour's second copy cronsim can answer
            yield at  # the first copy's time, before `after` (see `_wall`)


def _wall(spec: ScheduleSpec, before: dt.datetime) -> dt.datetime:
    """Where cronsim starts a backward walk to find what comes before
    `before`. cronsim reads a wall time without its fold: from the second
    copy of a repeated hour (fall-back) it would walk back from the first
    copy and miss what lies between. So start from the same instant plus
    the hour the clock went back: after both copies."""
    local = before.astimezone(spec.zone)
    if not local.fold:
        return local
    first, second = local.replace(fold=0).utcoffset(), local.utcoffset()
    assert first is not None and second is not None
    return (before + max(first - second, dt.timedelta(0))).astimezone(spec.zone)


def _last_before(
    spec: ScheduleSpec, before: dt.datetime, anchor: dt.datetime | None
) -> dt.datetime | None:
    """The latest occurrence strictly before `before` (None: none yet)."""
    step = spec.interval
    if step is not None:
        base = _anchor(spec, anchor)
        if before <= base:
            return None
        k = -((base - before) // step) - 1  # ceil((before - base) / step) - 1
        found: dt.datetime | None = base + step * k
    else:
        expression = spec.expression
        assert expression is not None
        older = (t.astimezone(UTC) for t in CronSim(expression, _wall(spec, before), reverse=True))
        found = next((t for t in older if t < before), None)
    if found is not None and spec.start_at is not None and found < spec.start_at:
        return None
    return found


def _live(spec: ScheduleSpec, at: dt.datetime | None) -> dt.datetime | None:
    """`at`, or None when it is at or past `end_at` (the schedule is over)."""
    if at is None or (spec.end_at is not None and at >= spec.end_at):
        return None
    return at


def next_occurrences(
    spec: ScheduleSpec, after: dt.datetime, n: int, *, anchor: dt.datetime | None = None
) -> list[dt.datetime]:
    """The next `n` occurrences strictly after `after`, as aware UTC
    datetimes (fewer once `end_at` is reached). An interval counts from
    `start_at`, else from `anchor` (when the schedule was created)."""
    found: list[dt.datetime] = []
    for at in _after(spec, after, anchor):
        if len(found) >= n or _live(spec, at) is None:
            break
        found.append(at)
    return found


def first_occurrence(
    spec: ScheduleSpec, at_or_after: dt.datetime, *, anchor: dt.datetime | None = None
) -> dt.datetime | None:
    """The first occurrence at or after `at_or_after` (None: past end_at)."""
    start = at_or_after - dt.timedelta(microseconds=1)
    return _live(spec, next(_after(spec, start, anchor)))


@dataclass(frozen=True, slots=True)
class Firing:
    """What one pass does for one schedule: the occurrences to enqueue now
    (oldest first) and the next occurrence to consider (None: finished)."""

    occurrences: list[dt.datetime]
    new_next_at: dt.datetime | None


def plan_firing(
    spec: ScheduleSpec,
    next_at: dt.datetime | None,
    last_occurrence: dt.datetime | None,
    now: dt.datetime,
    lead_s: float = 0.0,
    *,
    anchor: dt.datetime | None = None,
) -> Firing:
    """Occurrences from `next_at` that are due (<= now + lead_s) and not
    already fired (> last_occurrence). Those more than MISSED_AFTER_S older
    than `now` are missed and follow `spec.catch_up`: none fires none, one
    only the latest, all every one (MAX_CATCH_UP a pass, the rest next
    pass). `now` is the database's clock, the same for every replica."""
    if next_at is None:
        return Firing([], None)
    horizon = now + dt.timedelta(seconds=max(lead_s, 0.0))
    cutoff = now - dt.timedelta(seconds=MISSED_AFTER_S)
    cursor: dt.datetime | None = _live(spec, next_at)
    if last_occurrence is not None and cursor is not None and cursor <= last_occurrence:
        cursor = first_occurrence(spec, last_occurrence + dt.timedelta(microseconds=1),
                                  anchor=anchor)  # fmt: skip
    fired: list[dt.datetime] = []
    if cursor is not None and cursor < cutoff:  # some occurrences were missed
        if spec.catch_up == "all":
            occurrences = _after(spec, cursor - dt.timedelta(microseconds=1), anchor)
            for at in occurrences:
                if _live(spec, at) is None:
                    return Firing(fired, None)
                if at >= cutoff or len(fired) >= MAX_CATCH_UP:
                    cursor = at
                    break
                fired.append(at)
            if len(fired) >= MAX_CATCH_UP:
                return Firing(fired, cursor)
        else:
            latest = _last_before(spec, cutoff, anchor)
            one = spec.catch_up == "one" and latest is not None and latest >= cursor
            if one and _live(spec, latest) is not None:
                assert latest is not None
                fired.append(latest)
            cursor = first_occurrence(spec, cutoff, anchor=anchor)
    while cursor is not None and cursor <= horizon and len(fired) < MAX_CATCH_UP:
        fired.append(cursor)
        cursor = _live(spec, next(_after(spec, cursor, anchor)))
    return Firing(fired, cursor)

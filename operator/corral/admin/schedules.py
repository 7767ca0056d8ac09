"""The admin's recurring schedules: `corral schedules create|list|get|pause|
resume|delete|run-now|next`.

Registered in `corral/cli.py` (`_COMMANDS`) beside `corral jobs`, whose
options, error handling and printer it shares (`corral.admin.cli`,
`corral.admin._output`). A bad argument exits 2 naming the flag and a valid
value (`corral.queue.schedules.InvalidSchedule`), before any connection.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import click

from corral.admin._output import emit
from corral.admin.cli import (
    _CONTEXT,
    INT4_MAX,
    _at_most,
    _change_command,
    _database_option,
    _default_queue,
    _handled,
    _list_command,
    _output_option,
    _parse_time,
    _queue,
    _queue_names,
    _read_payload,
)
from corral.queue.client import Queue
from corral.queue.records import Schedule
from corral.queue.schedules import CATCH_UP, OVERLAP, ScheduleSpec, next_occurrences

_HEADERS = ["NAME", "SPEC", "QUEUE", "NEXT", "LAST", "LAST-JOB-STATE", "PAUSED"]


@click.group(context_settings=_CONTEXT)
def schedules() -> None:
    """Recurring jobs: every N seconds or on a cron expression, each
    occurrence enqueued once across the whole fleet (docs/queue.md)."""


def _when(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec_of(schedule: Schedule) -> ScheduleSpec:
    """The spec a stored schedule was created from."""
    return ScheduleSpec(
        schedule.name, schedule.kind, schedule.payload, schedule.every_s, schedule.cron,
        schedule.timezone, schedule.queue, schedule.priority, schedule.region,
        schedule.max_attempts, schedule.start_at, schedule.end_at, schedule.catch_up,
        schedule.overlap, schedule.jitter_s,
    )  # fmt: skip


def _row(s: Schedule) -> list[Any]:
    state = None if s.last_job_state is None else str(s.last_job_state)
    return [s.name, spec_of(s).describe(), s.queue, _when(s.next_at) or "finished",
            _when(s.last_occurrence), state, str(s.paused).lower()]  # fmt: skip


@schedules.command("create")
@click.argument("name")
@click.argument("kind")
@click.argument("payload", required=False)
@click.option("--every", metavar="DURATION", help="Fire every DURATION (30s, 5m, 1h; 1s to 366d).")
@click.option("--cron", metavar="EXPR", help="Fire on a cron expression ('0 3 * * *', '@hourly').")
@click.option("--timezone", default="UTC", help="Cron's timezone (IANA name).")
@click.option(
    "--queue",
    "queue_name",
    metavar="Q",
    callback=_queue_names,
    help="Queue of its jobs (default: KIND).",
)
@click.option("--priority", type=int, default=0, help="-1000..1000.")
@click.option("--region", metavar="R", help="Only workers of this region run its jobs.")
@click.option(
    "--max-attempts",
    type=int,
    callback=_at_most(INT4_MAX),
    help="Attempt budget per job (default: the queue's).",
)
@click.option("--start-at", callback=_parse_time, metavar="TIME", help="First occurrence at/after.")
@click.option("--end-at", callback=_parse_time, metavar="TIME", help="No occurrence at/after.")
@click.option(
    "--catch-up",
    type=click.Choice(CATCH_UP),
    default="one",
    help="Occurrences missed by over a minute: fire none, the latest one, or all.",
)
@click.option(
    "--overlap",
    type=click.Choice(OVERLAP),
    default="skip",
    help="While the previous job is unfinished: skip, queue (wait for it) or allow.",
)
@click.option(
    "--jitter",
    default="0",
    show_default=False,
    metavar="DURATION",
    help="Delay each job by 0..DURATION (at most 366d).",
)
@_output_option
@_database_option
@_handled
def schedules_create(
    name: str,
    kind: str,
    payload: str | None,
    every: str | None,
    cron: str | None,
    timezone: str,
    queue_name: str | None,
    priority: int,
    region: str | None,
    max_attempts: int | None,
    start_at: dt.datetime | None,
    end_at: dt.datetime | None,
    catch_up: str,
    overlap: str,
    jitter: str,
    output: str,
    database_url: str | None,
) -> None:
    """Create schedule NAME enqueueing KIND jobs with PAYLOAD (JSON, '-'
    reads stdin), or update it in place (same NAME: an unchanged spec keeps
    its next occurrence).

    \b
    Examples:
      corral schedules create nightly roll-up --cron "0 3 * * *" --timezone Europe/Berlin
      corral schedules create ping http '{"url": "https://example.com"}' --every 30s
    """
    if queue_name is None:
        _default_queue(kind)
    spec = ScheduleSpec(
        name, kind, _read_payload(payload), every, cron, timezone, queue_name, priority,
        region, max_attempts, start_at, end_at, catch_up, overlap, jitter,
    )  # fmt: skip
    with _queue(database_url) as queue:
        schedule = queue.create_schedule(spec)
    if output == "table":
        click.echo(f"schedule {schedule.name} ({spec.describe()}): next {_when(schedule.next_at)}")
    else:
        emit(output, schedule, _HEADERS, [_row(schedule)])


_list_command(
    schedules,
    "List schedules: spec, next and last occurrence, last job's state.",
    Queue.list_schedules,
    _HEADERS,
    _row,
)


@schedules.command("get")
@click.argument("name")
@_output_option
@_database_option
@_handled
def schedules_get(name: str, output: str, database_url: str | None) -> None:
    """Show one schedule (-o yaml or -o json for every field)."""
    with _queue(database_url) as queue:
        schedule = queue.get_schedule(name)
    emit(output, schedule, _HEADERS, [_row(schedule)])


_NAME = click.argument("target", metavar="NAME")
_change_command(
    schedules,
    "pause",
    _NAME,
    "Stop firing NAME (missed occurrences follow --catch-up on resume).",
    Queue.pause_schedule,
    lambda name, _: f"schedule {name} paused",
)
_change_command(
    schedules,
    "resume",
    _NAME,
    "Fire NAME again.",
    Queue.resume_schedule,
    lambda name, _: f"schedule {name} resumed",
)
_change_command(
    schedules,
    "delete",
    _NAME,
    "Delete NAME; the jobs it enqueued stay.",
    Queue.delete_schedule,
    lambda name, _: f"schedule {name} deleted",
)
_change_command(
    schedules,
    "run-now",
    _NAME,
    "Enqueue one job of NAME now, outside its timetable; prints its id.",
    Queue.run_schedule_now,
    lambda _, job_id: str(job_id),
)


@schedules.command("next")
@click.argument("name")
@click.option(
    "-n",
    "--count",
    "count",
    type=click.IntRange(min=1, max=1000),
    default=5,
    help="How many of the next runs to show.",
)
@_database_option
@_handled
def schedules_next(name: str, count: int, database_url: str | None) -> None:
    """Print NAME's next occurrences, in its timezone and in UTC."""
    with _queue(database_url) as queue:
        schedule = queue.get_schedule(name)
    if schedule.next_at is None:
        click.echo(f"schedule {name} is finished (past its --end-at)")
        return
    spec = spec_of(schedule)
    times = [schedule.next_at]
    times += next_occurrences(spec, schedule.next_at, count - 1, anchor=schedule.created_at)
    for at in times:
        local = at.astimezone(spec.zone).isoformat()
        click.echo(f"{local}  {_when(at)}  ({schedule.timezone})")

"""The audit trail from an admin's terminal: `corral audit list`.

Registered in `corral/cli.py` (`_COMMANDS`) like `corral regions`, sharing
the options, error handling and printer of `corral.admin.cli` and
`corral.admin._output`. What it reads is `corral_audit`
(`Queue.audit`): the actions the dashboard (or any caller of
`Queue.record_audit`) recorded, newest first.
"""

from __future__ import annotations

import datetime as dt
import json

import click

from corral.admin._output import emit
from corral.admin.cli import _CONTEXT, _database_option, _handled, _output_option, _queue

_HEADERS = ["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"]
# The ACTIONs the dashboard records (corral.dashboard.routes): what --action
# matches, beside whatever other callers of Queue.record_audit write.
ACTIONS = ("job.cancel", "job.requeue", "jobs.requeue_dead", "worker.drain", "worker.remove",
           "schedule.pause", "schedule.resume", "schedule.run_now", "dispatch.pause",
           "dispatch.resume")  # fmt: skip


@click.group(context_settings=_CONTEXT)
def audit() -> None:
    """The dashboard's audit trail: who did what, to what, and when.

    It holds the actions taken in the dashboard (and by callers of
    Queue.record_audit); what the admin commands change is not written
    here.
    """


def _at(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@audit.command("list")
@click.option(
    "--limit",
    type=click.IntRange(1, 10_000),
    default=100,
    help="Show at most this many entries (the newest).",
)
@click.option("--actor", help="Only entries of this actor (exact match).")
@click.option(
    "--action",
    help=f"Only entries of this action (exact match): the dashboard records {', '.join(ACTIONS)}.",
)
@_output_option
@_database_option
@_handled
def audit_list(
    limit: int, actor: str | None, action: str | None, output: str, database_url: str | None
) -> None:
    """List recorded actions, newest first.

    AT is when it happened (UTC), ACTOR who did it, ACTION what they did,
    TARGET what they did it to (job:ID, worker:ID, schedule:NAME, or a
    queue, * for every queue), DETAIL the rest, as JSON.
    """
    with _queue(database_url) as queue:
        found = queue.audit(limit, actor=actor, action=action)
    emit(
        output,
        found,
        _HEADERS,
        [
            [
                _at(e.at),
                e.actor,
                e.action,
                e.target,
                None if e.detail is None else json.dumps(e.detail, separators=(",", ":")),
            ]
            for e in found
        ],
    )

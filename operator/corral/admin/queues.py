"""Per-queue settings: `corral queues list|set`.

Registered in `corral/cli.py` (`_COMMANDS`) beside `corral jobs`, whose
options, error handling and printer it shares (`corral.admin.cli`,
`corral.admin._output`). What a queue's row holds (attempt budget, retry
back-off, whether completed jobs are kept, the retention caps) is
`corral_queues` (docs/queue.md); `Queue.set_queue_defaults` and
`Queue.list_queues` are the calls.
"""

from __future__ import annotations

from typing import Any

import click

from corral.admin._output import emit
from corral.admin.cli import (
    _CONTEXT,
    INT4_MAX,
    _at_most,
    _BadInput,
    _database_option,
    _duration_option,
    _handled,
    _list_command,
    _output_option,
    _queue,
    _queue_names,
)
from corral.queue.client import Queue
from corral.queue.records import UNCAPPED, QueueSettings

_HEADERS = [
    "QUEUE", "MAX-ATTEMPTS", "RETRY-BASE", "RETRY-MAX", "KEEP-COMPLETED", "MAX-DEAD",
    "MAX-COMPLETED", "PAUSED",
]  # fmt: skip
_NO_CAP = ("none", "unlimited")


def _cap(_ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """A count of jobs to keep, or `none` for no cap (`UNCAPPED`)."""
    if value is None:
        return None
    text = value.strip().lower()
    if text in _NO_CAP:
        return UNCAPPED
    if not text.isdigit():
        raise click.BadParameter(f"{value!r} is not a count: write 0 or more, or `none` for no cap")
    count: int = _at_most(INT4_MAX)(_ctx, param, int(text))
    return count


def _cap_text(cap: int | None) -> str:
    return "none" if cap is None else str(cap)


def _row(q: QueueSettings) -> list[Any]:
    return [
        q.queue,
        q.max_attempts if q.max_attempts is not None else "20 (default)",
        f"{q.retry_base_s:g}s",
        f"{q.retry_max_s:g}s",
        str(q.keep_completed).lower(),
        _cap_text(q.max_dead),
        _cap_text(q.max_completed),
        str(q.paused).lower(),
    ]


@click.group(context_settings=_CONTEXT)
def queues() -> None:
    """Per-queue settings: the attempt budget and retry back-off a job gets by
    default, and how many finished jobs retention keeps (docs/queue.md)."""


_list_command(
    queues,
    """List queues with settings or jobs, and their settings.

    A queue never set shows the defaults: 20 attempts, back-off from 1s
    doubling up to 3600s, completed jobs kept, at most 5000 dead jobs and no
    cap on completed ones (both beside the workers' --retention age limit).
    """,
    Queue.list_queues,
    _HEADERS,
    _row,
)


@queues.command("set")
@click.argument("queue_name", metavar="QUEUE", callback=_queue_names)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    callback=_at_most(INT4_MAX),
    help="Attempt budget of its jobs.",
)
@_duration_option("--retry-base", "First retry's back-off (it doubles, with jitter), e.g. 1s.")
@_duration_option("--retry-max", "The back-off's cap, e.g. 1h.")
@click.option(
    "--keep-completed",
    type=click.BOOL,
    metavar="true|false",
    help="false: delete completed jobs at once instead of keeping them for inspection.",
)
@click.option(
    "--max-dead",
    callback=_cap,
    metavar="N|none",
    help="Keep at most N dead jobs, deleting the oldest first; none: keep all [default: 5000].",
)
@click.option(
    "--max-completed",
    callback=_cap,
    metavar="N|none",
    help="Keep at most N completed jobs, deleting the oldest first; none: keep all "
    "[default: none].",
)
@_output_option
@_database_option
@_handled
def queues_set(
    queue_name: str,
    max_attempts: int | None,
    retry_base: float | None,
    retry_max: float | None,
    keep_completed: bool | None,
    max_dead: int | None,
    max_completed: int | None,
    output: str,
    database_url: str | None,
) -> None:
    """Change QUEUE's settings; what is not given stays as it is.

    Jobs enqueued from now on get the new attempt budget; retries use the
    new back-off; the caps apply from the workers' next retention pass
    (about a minute; one worker of the fleet at a time, in batches). A
    worker with --retention 0 runs no retention pass, so no caps either.
    """
    given = (max_attempts, retry_base, retry_max, keep_completed, max_dead, max_completed)
    if all(value is None for value in given):
        raise _BadInput(
            "nothing to set: give at least one of --max-attempts, --retry-base, --retry-max, "
            "--keep-completed, --max-dead, --max-completed"
        )
    if retry_base == 0:
        raise _BadInput("--retry-base must be longer than zero, e.g. 1s")
    with _queue(database_url) as q:
        current = {s.queue: s for s in q.list_queues()}.get(queue_name)
        base = retry_base if retry_base is not None else (current.retry_base_s if current else 1)
        cap = retry_max if retry_max is not None else (current.retry_max_s if current else 3600)
        if cap < base:
            raise _BadInput(
                f"--retry-max ({cap:g}s) must be at least --retry-base ({base:g}s) for queue "
                f"{queue_name!r}"
            )
        q.set_queue_defaults(
            queue_name, max_attempts=max_attempts, retry_base_s=retry_base,
            retry_max_s=retry_max, keep_completed=keep_completed, max_dead=max_dead,
            max_completed=max_completed,
        )  # fmt: skip
        updated = [s for s in q.list_queues() if s.queue == queue_name]
    emit(output, updated[0] if output != "table" else updated, _HEADERS, [_row(s) for s in updated])

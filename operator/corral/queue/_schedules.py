"""Recurring schedules' queue calls, written once like `_operations`: sans-IO
operations that `Queue` and `AsyncQueue` turn into methods.

The firing pass (`fire_due_schedules`) is one transaction: lock the due
schedules (`FOR UPDATE SKIP LOCKED`, with the server's clock), plan each
one's firing in Python (`corral.queue.schedules.plan_firing`), fire it
(`corral_fire_schedule_v1`: ledger row, then job), commit. Every worker runs
it every second (`corral.worker.upkeep.fire_schedules`), and so does the
operator's leader, ahead by its pools' activationLeadSeconds so that a pool
at zero wakes in time (`corral.controller.schedules`); the ledger's key
makes a second firing of the same occurrence a no-op whoever runs it.
The rest is the admin's: create (an upsert), list, get, pause, resume,
delete, run now.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from corral.queue import _operations as op
from corral.queue import _params as p
from corral.queue import records as r
from corral.queue.errors import ScheduleNotFound

if TYPE_CHECKING:
    from corral.queue.schedules import ScheduleSpec

_log = logging.getLogger("corral.queue")

# corral.queue.schedules (and cronsim under it) is imported by the functions
# that compute occurrences, not here: a worker's way to its first claim passes
# through this module (corral.queue.client) and needs neither.

_COLUMNS = ("name", "kind", "payload", "every_s", "cron", "timezone", "queue", "priority",
            "region", "max_attempts", "start_at", "end_at", "catch_up", "overlap", "jitter_s")  # fmt: skip


def _columns(spec: ScheduleSpec) -> dict[str, Any]:
    """The schedule's row as stored (payload as JSON data, queue defaulted)."""
    payload = p.payload_json(r.JobSpec(spec.kind, spec.payload))
    return {
        "name": spec.name,
        "kind": spec.kind,
        "payload": json.loads(payload),
        "every_s": spec.every_s,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "queue": spec.queue or spec.kind,
        "priority": spec.priority,
        "region": spec.region or "",
        "max_attempts": spec.max_attempts,
        "start_at": spec.start_at,
        "end_at": spec.end_at,
        "catch_up": spec.catch_up,
        "overlap": spec.overlap,
        "jitter_s": spec.jitter_s,
    }


def _not_found(name: str) -> ScheduleNotFound:
    return ScheduleNotFound(f"schedule {name!r} does not exist (see: corral schedules list)")


def _upsert(spec: ScheduleSpec, worker: r.Caller | None) -> op.Operation[bool]:
    """Write `spec` unless the stored row already says the same; True when it wrote."""
    columns = _columns(spec)
    if worker is None:
        rows = yield op.Statement("lock_schedule", {"name": spec.name})
    else:
        caller = (int(worker.worker_id), worker.credential)
        rows = yield op.Statement("worker_lock_schedule_v1", (*caller, spec.name))
    if rows:
        stored = dict(zip(_COLUMNS, rows[0][: len(_COLUMNS)], strict=True))
        anchor, now = rows[0][-2], rows[0][-1]
        if stored == columns:
            return False
    else:
        now = yield op._one("db_now")
        anchor = now
    # A new schedule starts at start_at (missed occurrences then follow its
    # catch-up policy) or now; a changed one goes on from now.
    start = spec.start_at if spec.start_at is not None and not rows else now
    from corral.queue.schedules import first_occurrence

    next_at = first_occurrence(spec, max(start, spec.start_at or start), anchor=anchor)
    params = {**columns, "payload": json.dumps(columns["payload"]), "next_at": next_at}
    if worker is None:
        yield op.Statement("upsert_schedule", params, op.Fetch.ROWCOUNT)
    else:
        params.update(worker_id=caller[0], credential=caller[1])
        yield op.Statement("worker_declare_schedule_v1", params)
    return True


@op.transactional
def create_schedule(spec: ScheduleSpec) -> op.Operation[r.Schedule]:
    """Create the schedule `spec.name`, or update it in place: a changed
    spec recomputes next_at (an interval keeps counting from when the
    schedule was first created, or start_at); an unchanged one keeps
    next_at and last_occurrence."""
    yield from _upsert(spec, None)
    return (yield from get_schedule(spec.name))


@op.transactional
def declare_schedule(spec: ScheduleSpec, *, worker: r.Caller) -> op.Operation[bool]:
    """`create_schedule` for a worker (the schedules its handlers declare,
    upserted at start-up), on one of the queues it serves; True when the
    stored schedule changed."""
    return (yield from _upsert(spec, worker))


def get_schedule(name: str) -> op.Operation[r.Schedule]:
    rows = yield op.Statement("get_schedule", {"name": name})
    if not rows:
        raise _not_found(name)
    return p.schedule_from_row(rows[0])


def list_schedules() -> op.Operation[list[r.Schedule]]:
    rows = yield op.Statement("get_schedule", {"name": None})
    return [p.schedule_from_row(row) for row in rows]


def _set_paused(name: str, paused: bool) -> op.Operation[r.Schedule]:
    rows = yield op.Statement("set_schedule_paused", {"name": name, "paused": paused})
    if not rows:
        raise _not_found(name)
    return (yield from get_schedule(name))


def pause_schedule(name: str) -> op.Operation[r.Schedule]:
    """Stop firing `name` until resumed; occurrences missed meanwhile follow
    its catch-up policy when it resumes."""
    return (yield from _set_paused(name, True))


def resume_schedule(name: str) -> op.Operation[r.Schedule]:
    return (yield from _set_paused(name, False))


def delete_schedule(name: str) -> op.Operation[None]:
    """Delete the schedule; its jobs stay (the ledger goes with them at retention)."""
    if not (yield op.Statement("delete_schedule", {"name": name})):
        raise _not_found(name)


def run_schedule_now(name: str) -> op.Operation[int]:
    """Enqueue one job of the schedule now (scheduled_for = now, in the
    ledger), outside its timetable; returns the job's id."""
    job_id = yield op._one("run_schedule_now_v1", (name,))
    if job_id is None:
        raise _not_found(name)
    return int(job_id)


def _spec_from_due(row: tuple[Any, ...]) -> ScheduleSpec:
    from corral.queue.schedules import ScheduleSpec

    (name, kind, every_s, cron, timezone, queue, start_at, end_at, catch_up, overlap,
     jitter_s) = row[:11]  # fmt: skip
    return ScheduleSpec(name, kind, None, every_s, cron, timezone, queue, 0, None, None,
                        start_at, end_at, catch_up, overlap, jitter_s)  # fmt: skip


# A schedule that cannot be planned is named in the log once in this long
# (seconds) by each process: every pass meets it again until it is fixed.
UNPLANNABLE_WARN_S = 600.0
_unplannable_warned: dict[str, float] = {}


def _warn_unplannable(name: str, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _unplannable_warned.get(name, -UNPLANNABLE_WARN_S) < UNPLANNABLE_WARN_S:
        return
    _unplannable_warned[name] = now
    _log.warning(
        "schedule %r not fired: %s (it stays due, and is passed over until it is fixed: "
        "`corral schedules create %s ...` with a valid rule, or `corral schedules delete %s`)",
        name, exc, name, name,
    )  # fmt: skip


def _plan(row: tuple[Any, ...], lead_s: float) -> tuple[ScheduleSpec, Any, list[dt.datetime]]:
    """A due row's spec, its firing plan and its jobs' run times (jittered)."""
    from corral.queue.schedules import plan_firing

    next_at, last, anchor, now = row[11], row[12], row[13], row[14]
    spec = _spec_from_due(row)
    plan = plan_firing(spec, next_at, last, now, lead_s, anchor=anchor)
    jitter = float(spec.jitter_s)
    run_at = [
        at + dt.timedelta(seconds=random.uniform(0, jitter)) if jitter else at
        for at in plan.occurrences
    ]
    return spec, plan, run_at


@op.transactional
def fire_due_schedules(
    limit: int = 100, lead_s: float = 0.0, *, worker: r.Caller | None = None
) -> op.Operation[list[r.ScheduleFiring]]:
    """One firing pass, one transaction: every schedule due within `lead_s`
    seconds (at most `limit`; rows another pass holds are skipped) enqueues
    the jobs of its due occurrences, once each, and moves on to its next
    occurrence. A worker passes itself as `worker`; without it the call
    needs an admin's rights.

    A row that cannot be planned (stored before a rule changed: a zone gone
    from tzdata, an interval over the cap; or an occurrence past year 9999)
    is left as it is and passed over: the due list is read again, wider by
    as many such rows, so that they never fill a pass and hold back the
    schedules due after them."""
    caller: tuple[int, str] | tuple[()]
    if worker is None:
        name, caller = "due_schedules_v1", ()
    else:
        name, caller = "worker_due_schedules_v1", (int(worker.worker_id), worker.credential)
    widened = 0
    while True:
        rows = yield op.Statement(name, (*caller, limit + widened, lead_s))
        planned = []
        unplannable = 0
        for row in rows:
            try:
                planned.append(_plan(row, lead_s))
            except (OverflowError, ValueError) as exc:
                # InvalidSchedule is a ValueError; OverflowError: past year 9999.
                _warn_unplannable(str(row[0]), exc)
                unplannable += 1
        if unplannable <= widened or len(rows) < limit + widened:
            break
        widened = unplannable  # rows beyond this window may be due: read them too

    fired: list[r.ScheduleFiring] = []
    for spec, plan, run_at in planned[:limit]:
        params: tuple[Any, ...] = (spec.name, plan.occurrences, run_at, plan.new_next_at)
        if worker is None:
            ids = yield op._one("fire_schedule_v1", params)
        else:
            ids = yield op._one("worker_fire_schedule_v1", (*caller, *params))
        ids = list(ids or [])
        enqueued = [int(i) for i in ids if i is not None]
        skipped = len(ids) - len(enqueued)
        fired.append(r.ScheduleFiring(spec.name, enqueued, skipped, spec.queue or spec.kind))
    return fired

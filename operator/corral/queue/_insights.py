"""What the dashboard reads, written once like `_operations`: sans-IO
operations that `Queue` and `AsyncQueue` turn into methods.

Callers: the dashboard (`corral dashboard`: the overview's charts, the
audit page, and `record_audit` for every action it takes), `corral audit
list` (`corral.admin.audit`) and the dashboard benchmark.

The charts read per-minute counters, never the finished table:
`rollup_throughput` folds the counts of the jobs finished since the last call
into them (and samples each queue's depth once a minute); the dashboard calls
it before it reads a chart. SQL: `corral_rollup_throughput_v1` (migrations
`0011_dashboard.sql` and `0015_finished_counts.sql`, whose trigger counts
each statement's finished rows as they are written) and the named blocks at
the end of `sql/queries.sql`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from corral.queue import _params as p
from corral.queue import records as r
from corral.queue._operations import Fetch, Operation, Statement, dispatch_status
from corral.queue.errors import InvalidAuditEntry
from corral.queue.records import Caller

if TYPE_CHECKING:
    from corral.queue import insight_records as ir

# The records below are built by the dashboard's reads, which import their
# module themselves: a worker's start passes through here and needs none.

# The counters and depth samples are kept this long (the rollup deletes older ones).
HISTORY_MINUTES = 7 * 24 * 60
AUDIT_MAX_LIMIT = 10_000
# Counts rows one rollup folds at most (each a statement's finished jobs in
# one queue and minute): far inside the connections' statement timeout,
# however long nobody rolled up.
ROLLUP_LIMIT = 100_000
ROLLUP_LIMIT_MAX = 1_000_000


def _minutes(minutes: int) -> int:
    if not 1 <= minutes <= HISTORY_MINUTES:
        raise ValueError(
            f"minutes must be between 1 and {HISTORY_MINUTES} (the counters are kept 7 days), "
            f"got {minutes}"
        )
    return minutes


def rollup_throughput(*, limit: int = ROLLUP_LIMIT, worker: Caller | None = None) -> Operation[int]:
    """Fold the counts of the jobs finished since the last rollup into the
    per-minute counters, and sample every queue's depth if this minute has
    no sample yet; returns how many finished jobs it folded. `limit` bounds
    the counts rows read (one per statement that finished jobs, queue and
    minute, so at least one job each): a return of `limit` or more may leave
    some, call again. Safe to call from many places at once: callers take
    turns, and no job is counted twice. A worker passes itself as `worker`
    (its upkeep; a limit of at most 100,000): it does not wait its turn, and
    gets 0 while another process rolls up."""
    if not 1 <= limit <= ROLLUP_LIMIT_MAX:
        raise ValueError(f"limit must be between 1 and {ROLLUP_LIMIT_MAX}, got {limit}")
    if worker is None:
        return int((yield Statement("rollup_throughput", {"limit": limit}, Fetch.ONE)) or 0)
    params = {"worker": int(worker.worker_id), "credential": worker.credential, "limit": limit}
    return int((yield Statement("worker_rollup_throughput", params, Fetch.ONE)) or 0)


def throughput(minutes: int = 60) -> Operation[list[ir.ThroughputMinute]]:
    """Completed, failed (retried) and dead jobs per queue and minute over the
    last `minutes` minutes (this one included), oldest first; minutes with
    nothing are left out. Reads what the last `rollup_throughput` folded."""
    from corral.queue import insight_records as ir

    rows = yield Statement("throughput", {"minutes": _minutes(minutes)})
    return [
        ir.ThroughputMinute(minute, str(queue), int(completed), int(failed), int(dead))
        for minute, queue, completed, failed, dead in rows
    ]


def depth_history(minutes: int = 60) -> Operation[list[ir.DepthMinute]]:
    """Waiting jobs per queue, one sample a minute over the last `minutes`
    minutes, oldest first; a queue with nothing waiting has no sample."""
    from corral.queue import insight_records as ir

    rows = yield Statement("depth_history", {"minutes": _minutes(minutes)})
    return [ir.DepthMinute(minute, str(queue), int(waiting)) for minute, queue, waiting in rows]


def _entries(rows: list[tuple[Any, ...]]) -> list[ir.AuditEntry]:
    from corral.queue import insight_records as ir  # once per read, not per row

    return [
        ir.AuditEntry(int(id_), at, str(actor), str(action), str(target), detail)
        for id_, at, actor, action, target, detail in rows
    ]


def record_audit(
    actor: str, action: str, target: str, detail: Mapping[str, Any] | None = None
) -> Operation[ir.AuditEntry]:
    """Record that `actor` did `action` to `target` (a job id, a queue, a
    worker...), with optional JSON `detail`; returns the stored entry.
    Never put a password or token in `detail`."""
    for field, value in (("actor", actor), ("action", action)):
        if not isinstance(value, str) or not value.strip():
            raise InvalidAuditEntry(f"audit {field} must be a non-empty string, got {value!r}")
    if not isinstance(target, str):
        raise InvalidAuditEntry(f"audit target must be a string, got {type(target).__name__}")
    text = None
    if detail is not None:
        try:
            text = json.dumps(dict(detail))
        except (TypeError, ValueError) as exc:
            raise InvalidAuditEntry(
                f"audit detail must be a JSON object of JSON values: {exc}"
            ) from None
    rows = yield Statement("record_audit", (actor, action, target, text))
    return _entries(rows)[0]


def audit(
    limit: int = 100, *, actor: str | None = None, action: str | None = None
) -> Operation[list[ir.AuditEntry]]:
    """The newest `limit` audit entries, newest first, of one actor and/or
    one action if given."""
    if not 1 <= limit <= AUDIT_MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {AUDIT_MAX_LIMIT}, got {limit}")
    rows = yield Statement("audit", {"limit": limit, "actor": actor, "action": action})
    return _entries(rows)


# -- the job browser and the Overview's counts --------------------------------


def browse_jobs(
    *,
    queue: str | None = None,
    kind: str | None = None,
    state: r.JobState | str | None = None,
    region: str | None = None,
    error: str | None = None,
    before: int | None = None,
    limit: int = 50,
) -> Operation[list[r.Job]]:
    """Jobs newest first, filtered (an empty filter is no filter; `error`: text
    anywhere in the last error, any case), the page of ids below `before`."""
    state = None if not state else r.JobState(state)
    params = {
        "queue": queue or None,
        "kind": kind or None,
        "state": state and str(state),
        "region": region or None,
        "error": error or None,
        "before": before,
        "limit": limit,
    }
    return [p.job_from_row(row) for row in (yield Statement("browse_jobs", params))]


def requeue_dead(
    *,
    queue: str | None = None,
    kind: str | None = None,
    region: str | None = None,
    error: str | None = None,
    limit: int = 10_000,
) -> Operation[int]:
    """Requeue up to `limit` dead jobs matching the filters (as `requeue`
    does one), in one statement; how many went back."""
    params = {
        "queue": queue or None,
        "kind": kind or None,
        "region": region or None,
        "error": error or None,
        "limit": limit,
    }
    row = (yield Statement("requeue_dead_jobs", params))[0]
    return int(row[0])


def recent_stats(minutes: int = 24 * 60) -> Operation[list[r.QueueStats]]:
    """`stats` for a page that must stay cheap at any size (the dashboard's
    Overview): unfinished jobs counted exactly, completed and dead ones over
    the last `minutes` from the per-minute counters (as of the last
    `rollup_throughput`); cancelled and expired ones are not counted."""
    hot = yield Statement("stats_hot")
    finished = yield Statement("stats_finished_recent", {"minutes": minutes})
    dispatch = yield from dispatch_status()
    return p.stats_from_rows(hot, finished, dispatch)

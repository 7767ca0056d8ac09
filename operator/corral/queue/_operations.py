"""Every queue call, written once: sans-IO generators that yield the
statements to run and return the records.

`Queue` (`corral.queue.client`) and `AsyncQueue` (`corral.queue.client_async`)
turn each of these (and those of `_registry` and `_fleet`) into a method of the same name, signature and docstring:
the sync client sends each yielded `Statement` through `conn.execute`, the
async one through `await conn.execute`, and each sends the result back in.
So the SQL (named blocks of `sql/queries.sql`), the parameters, the row
handling and the follow-up lookups (cancel a job, then read it back) exist
once for both. A call that must be one transaction is in `TRANSACTIONAL`, and
the client opens it. Nothing here touches a connection.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from corral.queue import _params as p
from corral.queue import records as r
from corral.queue.errors import EmptyRegion, JobNotFound, JobStateError

T = TypeVar("T")


class Fetch(enum.Enum):
    ONE = "one"  # first column of the first row (None: no row)
    ALL = "all"  # every row
    ROWCOUNT = "rowcount"  # rows affected


@dataclass(frozen=True, slots=True)
class Statement:
    """One statement of queries.sql to run, and what to send back."""

    name: str
    params: Any = None
    fetch: Fetch = Fetch.ALL
    prepare: bool | None = None  # True on the hot path: prepared once per connection
    binary: bool = False  # binary rows (claims: cheaper to decode)
    # Rows Python cannot load whole are loaded value by value (`_rows.reload`).
    lenient: bool = False


# An operation yields Statements, is sent each one's result, returns a record.
Operation = Generator[Statement, Any, T]


# Calls whose statements land together or not at all (the client opens a
# transaction for them): a pause, its clearing and the wake-up; enrollment
# (one statement today) stays atomic by contract.
TRANSACTIONAL: set[Callable[..., Any]] = set()
F = TypeVar("F", bound=Callable[..., Any])


def transactional(operation: F) -> F:
    """Mark `operation` as one that lands whole or not at all."""
    TRANSACTIONAL.add(operation)
    return operation


def result(stmt: Statement, rows: list[tuple[Any, ...]] | None, rowcount: int) -> Any:
    """What an executor sends back for `stmt`, from its rows (None for a
    ROWCOUNT statement, which may return none) and its row count."""
    if stmt.fetch is Fetch.ALL:
        return rows
    if stmt.fetch is Fetch.ONE:
        return rows[0][0] if rows else None
    return rowcount


def _one(name: str, params: Any = None, *, prepare: bool | None = None) -> Statement:
    return Statement(name, params, Fetch.ONE, prepare)


# -- enqueue -------------------------------------------------------------------


def enqueue(
    kind: str,
    payload: Any = None,
    *,
    queue: str | None = None,
    priority: int = 0,
    region: str | None = None,
    run_at: dt.datetime | None = None,
    expires_at: dt.datetime | None = None,
    max_attempts: int | None = None,
    dedupe_key: str | None = None,
    allow_empty_region: bool = False,
    result_queue: str | None = None,
) -> Operation[int]:
    """Enqueue one job and return its id (or, for a dedupe_key already held by
    an unfinished job, that job's id). A job for a `region` where no worker
    heartbeats (and no pool can start one) is refused with EmptyRegion, which
    names the regions that have workers, unless `allow_empty_region`. With
    `result_queue`, the job's result is enqueued there when it completes,
    exactly once."""
    spec = r.JobSpec(
        kind,
        payload,
        queue,
        priority,
        region,
        run_at,
        expires_at,
        max_attempts,
        dedupe_key,
        result_queue,
    )
    return (yield from enqueue_many([spec], allow_empty_region=allow_empty_region))[0]


def enqueue_many(
    specs: Iterable[r.JobSpec], *, allow_empty_region: bool = True
) -> Operation[list[int]]:
    """Enqueue many jobs in ONE round trip (one statement over arrays); ids in
    input order. The region check of `enqueue` is off by default here (bulk
    loads, jobs queued ahead of their workers); `allow_empty_region=False`
    refuses the whole batch if one job's region has no worker."""
    specs = list(specs)
    if not specs:
        return []
    if not allow_empty_region:
        yield from require_served([(s.region, s.queue or s.kind) for s in specs if s.region])
    rows = yield Statement(*p.enqueue_params(specs))
    return [int(row[0]) for row in rows]


def require_served(lanes: Sequence[tuple[str, str]]) -> Operation[None]:
    """EmptyRegion unless every (region, queue) of `lanes` has a live worker
    there serving that queue, or a pool there that can start one for it (its
    token admits the queue): a job no worker would ever claim is refused,
    whether its region has no worker at all or only workers of other
    queues (see `served_lanes` in queries.sql)."""
    if not lanes:
        return
    rows = yield Statement("served_lanes", (p.LIVE_WORKER_S,))
    by_region: dict[str, list[list[str] | None]] = {}
    for region, queues in rows:
        by_region.setdefault(str(region), []).append(None if queues is None else list(queues))
    empty = sorted({region for region, _ in lanes} - set(by_region))
    if empty:
        raise EmptyRegion(
            f"no worker heartbeats in region {', '.join(map(repr, empty))} and no pool there can "
            f"start one, so nothing would run the job; regions with workers: "
            f"{', '.join(sorted(by_region)) or 'none'}. Check the region's name, start a worker "
            "there, or enqueue anyway with --allow-empty-region (Python: allow_empty_region=True)"
        )
    for region, queue in sorted(set(lanes)):
        served = by_region[region]
        if any(queues is None or queue in queues for queues in served):
            continue
        there = sorted({q for queues in served for q in queues or ()})
        raise EmptyRegion(
            f"no worker in region {region!r} serves queue {queue!r} and no pool there can "
            f"start one for it, so nothing would run the job; region {region} serves: "
            f"{', '.join(there)}. Check the queue's name, add it to a pool's spec.queues "
            "there, or enqueue anyway with --allow-empty-region (Python: "
            "allow_empty_region=True)"
        )


# -- the worker's hot path -------------------------------------------------------


def claim(
    worker_id: int,
    credential: str,
    queues: Sequence[str],
    *,
    batch: int = 100,
    lease_s: float = p.DEFAULT_LEASE_S,
) -> Operation[list[r.ClaimedJob]]:
    """Claim up to `batch` ready jobs from `queues` (corral_claim_v5: v2's
    rows plus each job's schedule occurrence, `scheduled_for`):
    only queues the worker enrolled for (others are not served, and the
    server says so in a WARNING), in its region; the server caps `batch` at
    1,000 and `lease_s` at 1 s to 1 h."""
    rows = yield Statement(
        "claim_v5",
        (worker_id, credential, list(queues), batch, lease_s),
        prepare=True,
        binary=True,
        lenient=True,
    )
    if isinstance(rows, p.Reloaded):  # a value could not be loaded: claimed all the same
        return [p.claimed_leniently(row) for row in rows]
    return [p.claimed_from_row(row) for row in rows]


def complete_many(
    jobs: Iterable[r.Leased],
    results: Mapping[int, Any] | None = None,
    *,
    worker: r.Caller | None = None,
) -> Operation[list[int]]:
    """Mark jobs completed in one statement; returns the ids REJECTED because
    their lease was lost (reaped, released or claimed again) or, with
    `worker`, is not that worker's. `results` maps a job id to what its
    handler returned (JSON-able), kept with the finished job; jobs without an
    entry (or None) keep no result. A worker passes itself as `worker` (its
    id and credential, checked once per batch); without it the call needs
    an admin's rights."""
    jobs = list(jobs)
    if not jobs:
        return []
    name, params = p.complete_params(jobs, results, worker)
    return list((yield _one(name, params, prepare=True)))


def _as(worker: r.Caller | None) -> tuple[Any, ...]:
    return () if worker is None else (int(worker.worker_id), worker.credential)


def fail_many(
    failures: Iterable[r.Failure], *, worker: r.Caller | None = None
) -> Operation[list[int]]:
    """Record failed attempts in one statement (retry with back-off, or dead);
    returns the ids rejected because their lease was lost (or, with
    `worker`, is not that worker's)."""
    failures = list(failures)
    if not failures:
        return []
    name = "fail_v1" if worker is None else "fail_v2"
    return list((yield _one(name, (*_as(worker), *p.fail_params(failures)), prepare=True)))


def release_many(
    jobs: Iterable[r.Leased], *, worker: r.Caller | None = None
) -> Operation[list[int]]:
    """Hand held jobs back untouched (shutdown); the attempt is not counted.
    Returns the ids rejected (lease lost, or with `worker`: not its)."""
    ids, tokens = p.lease_params(jobs)
    if not ids:
        return []
    name = "release_v1" if worker is None else "release_v2"
    return list((yield _one(name, (*_as(worker), ids, tokens), prepare=True)))


def heartbeat(
    worker_id: int,
    credential: str,
    *,
    in_flight: int,
    lease_s: float = p.DEFAULT_LEASE_S,
    held: Sequence[int] | None = None,
    renew_below_s: float | None = None,
) -> Operation[r.WorkerState]:
    """Record liveness, extend the leases of the jobs the worker holds to
    `lease_s` from now, return the state the fleet wants it in (draining
    means stop claiming; restarting: drain, then exit for the supervisor to
    start it again). With `held` (the ids it knows it holds) only those
    leases are extended, so a claim the worker never saw lapses; without it,
    every lease leased to the worker. With `renew_below_s`, only the leases
    with less than that left are extended (the others keep their row
    untouched); without it, every one. Raises CredentialError when the
    credential is not known or expired; renews it for a day. The server caps
    `lease_s` at 1 s to 1 h."""
    ids = None if held is None else list(held)
    params = (worker_id, credential, in_flight, lease_s, ids, renew_below_s)
    return r.WorkerState((yield _one("heartbeat_v4", params, prepare=True)))


def reap(limit: int = 1000) -> Operation[int | None]:
    """Retry jobs whose lease lapsed; None if another reaper holds the lock."""
    value = yield _one("reap_v1", (limit,))
    return None if value is None else int(value)


def promote_due(limit: int = 1000) -> Operation[int]:
    """Move due scheduled jobs to pending (claims do this themselves)."""
    return int((yield _one("promote_due_v1", (limit,))))


def purge_finished_batch(older_than_s: float, *, batch: int = 1000) -> Operation[int | None]:
    """One batch of retention, one process at a time fleet-wide: delete up to
    `batch` jobs that finished more than `older_than_s` seconds ago and
    return how many; None when another process is purging right now."""
    value = yield _one("purge_finished_v1", (older_than_s, batch))
    return None if value is None else int(value)


def retention_batch(
    worker_id: int, credential: str, older_than_s: float, *, batch: int = 1000
) -> Operation[int | None]:
    """A worker's retention batch (`purge_finished_batch` for the worker
    role): the server never deletes jobs finished less than a day ago and
    caps `batch` at 10,000; None when another process is purging."""
    value = yield _one("purge_finished_v2", (worker_id, credential, older_than_s, batch))
    return None if value is None else int(value)


def purge_finished(older_than_s: float, *, batch: int = 10_000) -> Operation[int]:
    """Retention: delete finished jobs older than `older_than_s` seconds, in
    batches of `batch` rows; returns how many were deleted."""
    total = 0
    while True:
        deleted: int = yield Statement("purge_finished", (older_than_s, batch), Fetch.ROWCOUNT)
        total += deleted
        if deleted < batch:
            return total


def purge_registry(older_than_s: float, *, batch: int = 1000) -> Operation[r.RegistryPurge]:
    """Registry retention: delete workers removed, or silent (no heartbeat),
    for more than `older_than_s` seconds, and enrollment tokens revoked,
    expired or used up for as long; in batches of `batch` rows."""
    counts = []
    for statement in ("purge_workers", "purge_tokens"):
        total = 0
        while True:
            deleted: int = yield Statement(statement, (older_than_s, batch), Fetch.ROWCOUNT)
            total += deleted
            if deleted < batch:
                break
        counts.append(total)
    return r.RegistryPurge(workers=counts[0], tokens=counts[1])


# -- jobs, dispatch and stats (admin) ----------------------------------------------


def get_job(job_id: int) -> Operation[r.Job]:
    rows = yield Statement("get_job", {"id": job_id})
    if not rows:
        raise JobNotFound(f"job {job_id} does not exist (or retention already deleted it)")
    return p.job_from_row(rows[0])


def list_jobs(
    *, queue: str | None = None, state: r.JobState | str | None = None, limit: int = 50
) -> Operation[list[r.Job]]:
    """The newest jobs, of one queue and/or state (`corral jobs list`): the
    dashboard's browser (`browse_jobs`) with no other filter."""
    state = None if state is None else r.JobState(state)
    params = dict.fromkeys(("kind", "region", "error", "before"))
    params.update(queue=queue, state=state and str(state), limit=limit)
    return [p.job_from_row(row) for row in (yield Statement("browse_jobs", params))]


def _transition(job_id: int, statement: str, allowed: str) -> Operation[r.Job]:
    """Run `statement` on one job and read the job back; a job in another
    state is left alone and named in the error (`allowed` says which may)."""
    if (yield _one(statement, (job_id,))) is None:
        job = yield from get_job(job_id)
        raise JobStateError(f"job {job_id} is {job.state}: {allowed}")
    return (yield from get_job(job_id))


def cancel(job_id: int) -> Operation[r.Job]:
    """Cancel a scheduled or pending job; raises JobStateError for any other."""
    only = "only scheduled or pending jobs can be cancelled"
    return (yield from _transition(job_id, "cancel_job", only))


def requeue(job_id: int) -> Operation[r.Job]:
    """Put a dead, cancelled or expired job back as pending with a fresh budget."""
    only = "only dead, cancelled or expired jobs can be requeued"
    return (yield from _transition(job_id, "requeue_job", only))


def pause(queue: str | None = None, reason: str | None = None) -> Operation[r.DispatchState]:
    """Stop claims from `queue` (None: every queue) until resume; durable.
    Enqueues keep landing and running jobs finish."""
    params = {"queue": queue or p.ALL_QUEUES, "paused": True, "reason": reason}
    return r.DispatchState(*(yield Statement("set_paused", params))[0])


@transactional
def resume(queue: str | None = None) -> Operation[r.DispatchState]:
    """Let claims from `queue` (None: every queue, clearing each pause) resume."""
    params = {"queue": queue or p.ALL_QUEUES, "paused": False, "reason": None}
    row = (yield Statement("set_paused", params))[0]
    if queue is None:
        yield Statement("resume_all", None, Fetch.ROWCOUNT)
    yield Statement("wake_queue", (queue or p.ALL_QUEUES,))
    return r.DispatchState(*row)


def dispatch_status(queue: str | None = None) -> Operation[list[r.DispatchState]]:
    return [r.DispatchState(*row) for row in (yield Statement("dispatch_status", {"queue": queue}))]


def set_queue_defaults(
    queue: str,
    *,
    max_attempts: int | None = None,
    retry_base_s: float | None = None,
    retry_max_s: float | None = None,
    keep_completed: bool | None = None,
    max_dead: int | None = None,
    max_completed: int | None = None,
) -> Operation[None]:
    """Per-queue settings (None leaves one unchanged): default attempt budget,
    retry back-off base and cap (seconds), whether completed jobs are
    kept for inspection until retention (dead ones always are), and how
    many dead / completed jobs retention keeps at most (`r.UNCAPPED`: all)."""
    for name, cap in (("max_dead", max_dead), ("max_completed", max_completed)):
        if cap is not None and cap < 0 and cap != r.UNCAPPED:
            raise ValueError(f"{name} {cap} must be 0 or more (or UNCAPPED: no cap)")
    settings = {
        "queue": queue,
        "max_attempts": max_attempts,
        "retry_base_s": retry_base_s,
        "retry_max_s": retry_max_s,
        "keep_completed": keep_completed,
        "max_dead": max_dead,
        "max_completed": max_completed,
    }
    yield Statement("set_queue_defaults", settings, Fetch.ROWCOUNT)


def list_queues() -> Operation[list[r.QueueSettings]]:
    """Every queue with settings or jobs (finished ones included), by name,
    with its settings (the defaults for one never set)."""
    return [r.QueueSettings(*row) for row in (yield Statement("list_queues"))]


def stats(*, finished: bool = True) -> Operation[list[r.QueueStats]]:
    """Per queue: job counts by state (finished ones until retention), oldest wait.
    `finished=False` counts unfinished jobs only and never reads the finished
    table, whatever its size (the dashboard's overview; its per-minute
    counters say what finished)."""
    hot = yield Statement("stats_hot")
    done = (yield Statement("stats_finished")) if finished else []
    dispatch = yield from dispatch_status()
    return p.stats_from_rows(hot, done, dispatch)


def depth(
    queues: Sequence[str], region: str | None = None, *, cap: int = p.DEFAULT_DEPTH_CAP
) -> Operation[r.Depth]:
    """Ready and running jobs that workers of `region` on `queues` could see,
    each count stopping at `cap` (cheap; the autoscaler calls it every second)."""
    params = {"queues": list(queues), "region": region or "", "cap": cap}
    pending, running = (yield Statement("depth", params, prepare=True))[0]
    return r.Depth(min(int(pending), cap), int(running), capped=pending >= cap or running >= cap)

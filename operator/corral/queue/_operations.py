"""Every queue call, written once: sans-IO generators that yield the
statements to run and return the records.

`Queue` and `AsyncQueue` (`corral.queue.client`) drive these: the sync client
sends each yielded `Statement` through `conn.execute`, the async client
through `await conn.execute`, and each sends the result back in. So the SQL
(named blocks of `sql/queries.sql`), the parameters, the row handling and the
follow-up lookups (cancel a job, then read it back) exist once for both; a
call that must be one transaction says so (`TRANSACTIONAL`), and the client
opens it. Nothing here touches a connection.
"""

from __future__ import annotations

import enum
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from corral.queue import _params as p
from corral.queue.errors import (
    JobNotFound,
    JobStateError,
    TokenNotFound,
    WorkerNotFound,
    WorkerRemoved,
)
from corral.queue.records import (
    ClaimedJob,
    Depth,
    DispatchState,
    Enrollment,
    Failure,
    Job,
    JobSpec,
    JobState,
    Leased,
    NewToken,
    QueueStats,
    TokenInfo,
    Worker,
    WorkerState,
)

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


# An operation yields Statements, is sent each one's result, returns a record.
Operation = Generator[Statement, Any, T]


def _one(name: str, params: Any = None, *, prepare: bool | None = None) -> Statement:
    return Statement(name, params, Fetch.ONE, prepare)


# -- enqueue -------------------------------------------------------------------


def enqueue_many(specs: Sequence[JobSpec]) -> Operation[list[int]]:
    if not specs:
        return []
    rows = yield Statement("enqueue_v1", p.enqueue_params(specs))
    return [int(r[0]) for r in rows]


# -- the worker's hot path -------------------------------------------------------


def claim(
    worker_id: int, credential: str, queues: Sequence[str], batch: int, lease_s: float
) -> Operation[list[ClaimedJob]]:
    rows = yield Statement(
        "claim_v1",
        (worker_id, credential, list(queues), batch, lease_s),
        prepare=True,
        binary=True,
    )
    return [p.claimed_from_row(r) for r in rows]


def complete_many(
    jobs: Iterable[Leased], results: Mapping[int, Any] | None
) -> Operation[list[int]]:
    name, params = p.complete_params(jobs, results)
    if not params[0]:
        return []
    return list((yield _one(name, params, prepare=True)))


def fail_many(failures: Iterable[Failure]) -> Operation[list[int]]:
    failures = list(failures)
    if not failures:
        return []
    return list((yield _one("fail_v1", p.fail_params(failures), prepare=True)))


def release_many(jobs: Iterable[Leased]) -> Operation[list[int]]:
    ids, tokens = p.lease_params(jobs)
    if not ids:
        return []
    return list((yield _one("release_v1", (ids, tokens), prepare=True)))


def heartbeat(
    worker_id: int, credential: str, in_flight: int, lease_s: float
) -> Operation[WorkerState]:
    params = (worker_id, credential, in_flight, lease_s)
    return WorkerState((yield _one("heartbeat_v1", params, prepare=True)))


def reap(limit: int) -> Operation[int | None]:
    value = yield _one("reap_v1", (limit,))
    return None if value is None else int(value)


def promote_due(limit: int) -> Operation[int]:
    return int((yield _one("promote_due_v1", (limit,))))


def purge_finished_batch(older_than_s: float, batch: int) -> Operation[int | None]:
    value = yield _one("purge_finished_v1", (older_than_s, batch))
    return None if value is None else int(value)


def purge_finished(older_than_s: float, batch: int) -> Operation[int]:
    total = 0
    while True:
        deleted: int = yield Statement("purge_finished", (older_than_s, batch), Fetch.ROWCOUNT)
        total += deleted
        if deleted < batch:
            return total


# -- jobs, dispatch and stats (admin) ----------------------------------------------


def get_job(job_id: int) -> Operation[Job]:
    rows = yield Statement("get_job", {"id": job_id})
    if not rows:
        raise JobNotFound(f"job {job_id} does not exist (or retention already deleted it)")
    return p.job_from_row(rows[0])


def list_jobs(queue: str | None, state: JobState | str | None, limit: int) -> Operation[list[Job]]:
    state = None if state is None else JobState(state)
    params = {"queue": queue, "state": state and str(state), "limit": limit}
    return [p.job_from_row(r) for r in (yield Statement("list_jobs", params))]


def cancel(job_id: int) -> Operation[Job]:
    if (yield _one("cancel_job", (job_id,))) is None:
        job = yield from get_job(job_id)
        raise JobStateError(
            f"job {job_id} is {job.state}: only scheduled or pending jobs can be cancelled"
        )
    return (yield from get_job(job_id))


def requeue(job_id: int) -> Operation[Job]:
    if (yield _one("requeue_job", (job_id,))) is None:
        job = yield from get_job(job_id)
        raise JobStateError(
            f"job {job_id} is {job.state}: only dead, cancelled or expired jobs can be requeued"
        )
    return (yield from get_job(job_id))


def pause(queue: str | None, reason: str | None) -> Operation[DispatchState]:
    params = {"queue": queue or p.ALL_QUEUES, "paused": True, "reason": reason}
    return DispatchState(*(yield Statement("set_paused", params))[0])


def resume(queue: str | None) -> Operation[DispatchState]:
    """TRANSACTIONAL: the pause, the clearing and the wake-up land together."""
    params = {"queue": queue or p.ALL_QUEUES, "paused": False, "reason": None}
    row = (yield Statement("set_paused", params))[0]
    if queue is None:
        yield Statement("resume_all", None, Fetch.ROWCOUNT)
    yield Statement("wake_queue", (queue or p.ALL_QUEUES,))
    return DispatchState(*row)


def dispatch_status(queue: str | None) -> Operation[list[DispatchState]]:
    return [DispatchState(*r) for r in (yield Statement("dispatch_status", {"queue": queue}))]


def set_queue_defaults(queue: str, settings: Mapping[str, Any]) -> Operation[None]:
    yield Statement("set_queue_defaults", {"queue": queue, **settings}, Fetch.ROWCOUNT)


def stats() -> Operation[list[QueueStats]]:
    hot = yield Statement("stats_hot")
    finished = yield Statement("stats_finished")
    dispatch = yield from dispatch_status(None)
    return p.stats_from_rows(hot, finished, dispatch)


def depth(queues: Sequence[str], region: str | None, cap: int) -> Operation[Depth]:
    params = {"queues": list(queues), "region": region or "", "cap": cap}
    pending, running = (yield Statement("depth", params, prepare=True))[0]
    return Depth(min(int(pending), cap), int(running), capped=pending >= cap or running >= cap)


# -- enrollment tokens -----------------------------------------------------------


def create_token(region: str, pool: str | None, ttl_s: float, uses: int) -> Operation[NewToken]:
    secret, params = p.token_params(region, pool, ttl_s, uses)
    return NewToken(secret, p.token_from_row((yield Statement("insert_token", params))[0]))


def list_tokens(include_unusable: bool) -> Operation[list[TokenInfo]]:
    rows = yield Statement("list_tokens", {"all": include_unusable})
    return [p.token_from_row(r) for r in rows]


def revoke_token(token: int | str) -> Operation[int]:
    ident = int(token) if isinstance(token, int) or str(token).isdigit() else -1
    row = yield _one("revoke_token", (ident, str(token)))
    if row is None:
        raise TokenNotFound(
            f"no enrollment token with id or prefix {token!r} (see: corral tokens list)"
        )
    return int(row)


# -- the workers registry ----------------------------------------------------------


def enroll(
    token: str, name: str, queues: Sequence[str], concurrency: int, version: str | None
) -> Operation[Enrollment]:
    """TRANSACTIONAL (the token's use and the new row land together)."""
    credential = p.new_secret(p.CREDENTIAL_PREFIX)
    params = (token.strip(), name, list(queues), concurrency, version, p.hash_secret(credential))
    worker_id, region, pool = (yield Statement("enroll_v1", params))[0]
    return Enrollment(int(worker_id), credential, region, pool)


def about(
    name: str | None, queues: Sequence[str] | None, concurrency: int | None, version: str | None
) -> dict[str, Any]:
    """What a re-authenticating worker says about itself (None: unchanged)."""
    return {
        "name": name,
        "version": version,
        "queues": None if queues is None else list(queues),
        "concurrency": concurrency,
    }


def authenticate(
    worker_id: int, credential: str, about: Mapping[str, Any]
) -> Operation[WorkerState]:
    """TRANSACTIONAL: check the credential, then refresh what the worker says
    about itself (`about`: name, version, queues, concurrency; None keeps one)."""
    state = WorkerState((yield _one("authenticate_v1", (worker_id, credential))))
    if state is WorkerState.REMOVED:
        raise WorkerRemoved(f"worker {worker_id} was removed from the fleet")
    return WorkerState((yield _one("update_worker", {"id": worker_id, **about})))


def get_worker(worker_id: int) -> Operation[Worker]:
    rows = yield Statement("get_worker", (worker_id,))
    if not rows:
        raise WorkerNotFound(f"worker {worker_id} does not exist (see: corral workers list)")
    return p.worker_from_row(rows[0])


def list_workers(include_removed: bool) -> Operation[list[Worker]]:
    return [p.worker_from_row(r) for r in (yield Statement("list_workers", (include_removed,)))]


def request_drain(worker_id: int) -> Operation[Worker]:
    yield Statement("request_drain", (worker_id,), Fetch.ROWCOUNT)
    return (yield from get_worker(worker_id))


def drain_self(worker_id: int, credential: str) -> Operation[WorkerState]:
    return WorkerState((yield _one("drain_self_v1", (worker_id, credential))))


def mark_drained(worker_id: int, credential: str) -> Operation[WorkerState]:
    state = yield _one("mark_drained", (worker_id, credential))
    if state is None:
        current = yield from get_worker(worker_id)
        raise JobStateError(f"worker {worker_id} is {current.state}, not draining")
    return WorkerState(state)


def remove_worker(worker_id: int) -> Operation[Worker]:
    yield from get_worker(worker_id)
    yield Statement("remove_worker", {"id": worker_id})
    return (yield from get_worker(worker_id))

"""Queue: every PostgreSQL call corral makes about jobs, queues, workers and
enrollment tokens, on a synchronous connection (`AsyncQueue`, beside it in
`corral.queue.client_async`, is the same on asyncio).

Callers: the admin CLI (`corral jobs|dispatch|stats|tokens|workers`), the
operator (depth, drain, tokens), tests and user code that enqueues; the
worker runtime uses AsyncQueue.

Each client wraps one psycopg connection. On an autocommit connection (what
`connect` gives) every call is its own transaction and is durable when it
returns; on a connection inside the caller's transaction an enqueue is part
of that transaction and lands (or not) with it. Statements are named blocks
in `sql/queries.sql`; the hot ones call the versioned `corral_*_v1` database
functions and run as prepared statements.

Both clients share one body: each method hands an operation of
`corral.queue._operations` (the statements, parameters and row handling) to
its client's executor, `_run`, the only code that differs between sync and
asyncio.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar

import psycopg

from corral.queue import _operations as op
from corral.queue import _sql
from corral.queue._connect import connect
from corral.queue._params import (
    ALL_QUEUES,
    CREDENTIAL_PREFIX,
    DEFAULT_DEPTH_CAP,
    DEFAULT_LEASE_S,
    NOTIFY_CHANNEL,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TOKEN_PREFIX,
    hash_secret,
    new_secret,
)
from corral.queue.errors import translated
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

__all__ = [
    "ALL_QUEUES",
    "CREDENTIAL_PREFIX",
    "DEFAULT_DEPTH_CAP",
    "DEFAULT_LEASE_S",
    "NOTIFY_CHANNEL",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "TOKEN_PREFIX",
    "Queue",
    "hash_secret",
    "new_secret",
]

T = TypeVar("T")


class Queue:
    """Synchronous access (CLI, operator, tests, user code that enqueues)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    @classmethod
    def connect(cls, dsn: str) -> Self:
        """Open an autocommit connection: every call is durable when it returns."""
        return cls(connect(dsn))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, stmt: op.Statement) -> Any:
        with translated():
            if stmt.binary:
                cur = self.conn.cursor(binary=True)
                cur.execute(_sql.query(stmt.name), stmt.params, prepare=stmt.prepare)
            else:
                cur = self.conn.execute(_sql.query(stmt.name), stmt.params, prepare=stmt.prepare)
            if stmt.fetch is op.Fetch.ALL:
                return cur.fetchall()
            if stmt.fetch is op.Fetch.ONE:
                row = cur.fetchone()
                return None if row is None else row[0]
            return cur.rowcount

    def _drive(self, operation: op.Operation[T]) -> T:
        try:
            stmt = next(operation)
            while True:
                stmt = operation.send(self._execute(stmt))
        except StopIteration as done:
            result: T = done.value
            return result

    def _run(self, operation: op.Operation[T], *, transaction: bool = False) -> T:
        if not transaction:
            return self._drive(operation)
        with self.conn.transaction():
            return self._drive(operation)

    # -- enqueue --------------------------------------------------------------

    def enqueue(
        self,
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
    ) -> int:
        """Enqueue one job and return its id (or, for a dedupe_key already held by
        an unfinished job, that job's id)."""
        spec = JobSpec(
            kind, payload, queue, priority, region, run_at, expires_at, max_attempts, dedupe_key
        )
        return self.enqueue_many([spec])[0]

    def enqueue_many(self, specs: Iterable[JobSpec]) -> list[int]:
        """Enqueue many jobs in ONE round trip (one statement over arrays); ids in input order."""
        return self._run(op.enqueue_many(list(specs)))

    # -- the worker's hot path ------------------------------------------------

    def claim(
        self,
        worker_id: int,
        credential: str,
        queues: Sequence[str],
        *,
        batch: int = 100,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> list[ClaimedJob]:
        """Claim up to `batch` ready jobs from `queues` (see corral_claim_v1)."""
        return self._run(op.claim(worker_id, credential, queues, batch, lease_s))

    def complete_many(
        self, jobs: Iterable[Leased], results: Mapping[int, Any] | None = None
    ) -> list[int]:
        """Mark jobs completed in one statement; returns the ids REJECTED because
        their lease was lost (reaped, released or claimed again). `results`
        maps a job id to what its handler returned (JSON-able), kept with the
        finished job; jobs without an entry (or None) keep no result."""
        return self._run(op.complete_many(jobs, results))

    def fail_many(self, failures: Iterable[Failure]) -> list[int]:
        """Record failed attempts in one statement (retry with back-off, or dead);
        returns the ids rejected because their lease was lost."""
        return self._run(op.fail_many(failures))

    def release_many(self, jobs: Iterable[Leased]) -> list[int]:
        """Hand held jobs back untouched (shutdown); the attempt is not counted."""
        return self._run(op.release_many(jobs))

    def heartbeat(
        self, worker_id: int, credential: str, *, in_flight: int, lease_s: float = DEFAULT_LEASE_S
    ) -> WorkerState:
        """Record liveness, extend every lease the worker holds, return the state
        the fleet wants it in (draining means stop claiming). Raises
        CredentialError when the credential is not known."""
        return self._run(op.heartbeat(worker_id, credential, in_flight, lease_s))

    def reap(self, limit: int = 1000) -> int | None:
        """Retry jobs whose lease lapsed; None if another reaper holds the lock."""
        return self._run(op.reap(limit))

    def promote_due(self, limit: int = 1000) -> int:
        """Move due scheduled jobs to pending (claims do this themselves)."""
        return self._run(op.promote_due(limit))

    def purge_finished_batch(self, older_than_s: float, *, batch: int = 1000) -> int | None:
        """One batch of retention, one process at a time fleet-wide: delete up to
        `batch` jobs that finished more than `older_than_s` seconds ago and
        return how many; None when another process is purging right now."""
        return self._run(op.purge_finished_batch(older_than_s, batch))

    def purge_finished(self, older_than_s: float, *, batch: int = 10_000) -> int:
        """Retention: delete finished jobs older than `older_than_s` seconds, in
        batches of `batch` rows; returns how many were deleted."""
        return self._run(op.purge_finished(older_than_s, batch))

    # -- inspection and admin --------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        return self._run(op.get_job(job_id))

    def list_jobs(
        self, *, queue: str | None = None, state: JobState | str | None = None, limit: int = 50
    ) -> list[Job]:
        return self._run(op.list_jobs(queue, state, limit))

    def cancel(self, job_id: int) -> Job:
        """Cancel a scheduled or pending job; raises JobStateError for any other."""
        return self._run(op.cancel(job_id))

    def requeue(self, job_id: int) -> Job:
        """Put a dead, cancelled or expired job back as pending with a fresh budget."""
        return self._run(op.requeue(job_id))

    def pause(self, queue: str | None = None, reason: str | None = None) -> DispatchState:
        """Stop claims from `queue` (None: every queue) until resume; durable.
        Enqueues keep landing and running jobs finish."""
        return self._run(op.pause(queue, reason))

    def resume(self, queue: str | None = None) -> DispatchState:
        """Let claims from `queue` (None: every queue, clearing each pause) resume."""
        return self._run(op.resume(queue), transaction=True)

    def dispatch_status(self, queue: str | None = None) -> list[DispatchState]:
        return self._run(op.dispatch_status(queue))

    def set_queue_defaults(
        self,
        queue: str,
        *,
        max_attempts: int | None = None,
        retry_base_s: float | None = None,
        retry_max_s: float | None = None,
        keep_completed: bool | None = None,
    ) -> None:
        """Per-queue settings (None leaves one unchanged): default attempt budget,
        retry back-off base and cap (seconds), and whether completed jobs are
        kept for inspection until retention (dead ones always are)."""
        settings = {
            "max_attempts": max_attempts,
            "retry_base_s": retry_base_s,
            "retry_max_s": retry_max_s,
            "keep_completed": keep_completed,
        }
        self._run(op.set_queue_defaults(queue, settings))

    def stats(self) -> list[QueueStats]:
        """Per queue: job counts by state (finished ones until retention), oldest wait."""
        return self._run(op.stats())

    def depth(
        self, queues: Sequence[str], region: str | None = None, *, cap: int = DEFAULT_DEPTH_CAP
    ) -> Depth:
        """Ready and running jobs that workers of `region` on `queues` could see,
        each count stopping at `cap` (cheap; the autoscaler calls it every second)."""
        return self._run(op.depth(queues, region, cap))

    # -- enrollment tokens -------------------------------------------------------

    def create_token(
        self, region: str, *, pool: str | None = None, ttl_s: float = 900, uses: int = 1
    ) -> NewToken:
        """Mint an enrollment token; only its SHA-256 hash is stored."""
        return self._run(op.create_token(region, pool, ttl_s, uses))

    def list_tokens(self, *, include_unusable: bool = False) -> list[TokenInfo]:
        return self._run(op.list_tokens(include_unusable))

    def revoke_token(self, token: int | str) -> int:
        """Revoke a token by id or display prefix; returns its id."""
        return self._run(op.revoke_token(token))

    # -- workers registry --------------------------------------------------------

    def enroll(
        self,
        token: str,
        *,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        version: str | None = None,
    ) -> Enrollment:
        """Trade an enrollment token for a worker id and a long-lived credential
        (returned once; the database keeps its hash)."""
        return self._run(op.enroll(token, name, queues, concurrency, version), transaction=True)

    def authenticate(
        self,
        worker_id: int,
        credential: str,
        *,
        name: str | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        version: str | None = None,
    ) -> WorkerState:
        """Re-authenticate a restarted worker with its stored credential, refresh
        what it says about itself, return its state. Raises CredentialError, or
        WorkerRemoved for a removed worker. A drain the worker asked for
        itself ends here (the row is active again); an admin's drain stays."""
        about = op.about(name, queues, concurrency, version)
        return self._run(op.authenticate(worker_id, credential, about), transaction=True)

    def request_drain(self, worker_id: int) -> Worker:
        """Ask a worker to stop claiming and finish what it holds (idempotent)."""
        return self._run(op.request_drain(worker_id))

    def drain_self(self, worker_id: int, credential: str) -> WorkerState:
        """The worker drains itself (SIGTERM, POST /drain, preStop): its row goes
        from active to draining; returns the row's state. Raises CredentialError
        or WorkerRemoved."""
        return self._run(op.drain_self(worker_id, credential))

    def mark_drained(self, worker_id: int, credential: str) -> WorkerState:
        """The worker reports it holds nothing after a drain."""
        return self._run(op.mark_drained(worker_id, credential))

    def remove_worker(self, worker_id: int) -> Worker:
        """Remove a worker: its credential stops working at its next call and its
        running jobs go back through the retry path."""
        return self._run(op.remove_worker(worker_id))

    def get_worker(self, worker_id: int) -> Worker:
        return self._run(op.get_worker(worker_id))

    def list_workers(self, *, include_removed: bool = False) -> list[Worker]:
        return self._run(op.list_workers(include_removed))

"""Queue and AsyncQueue: every PostgreSQL call corral makes about jobs,
queues, workers and enrollment tokens.

Callers: the admin CLI (`corral jobs|dispatch|stats|tokens|workers`), the
worker runtime (`corral.worker`, through AsyncQueue), the operator (depth,
drain, tokens) and user code that enqueues.

Each class wraps one psycopg connection. On an autocommit connection (what
`connect` gives) every call is its own transaction and is durable when it
returns; on a connection inside the caller's transaction an enqueue is part
of that transaction and lands (or not) with it. Statements are named blocks
in `sql/queries.sql`; the hot ones call the versioned `corral_*_v1` database
functions and run as prepared statements.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from corral.queue import _sql
from corral.queue._connect import aconnect, connect
from corral.queue.errors import (
    CredentialError,
    EnrollmentError,
    InvalidJob,
    JobNotFound,
    JobStateError,
    TokenNotFound,
    WorkerNotFound,
    WorkerRemoved,
)
from corral.queue.records import (
    Backlog,
    ClaimedJob,
    Depth,
    DispatchState,
    Enrollment,
    Failure,
    Flow,
    Interruption,
    InterruptionReason,
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

NOTIFY_CHANNEL = "corral_jobs"
ALL_QUEUES = "*"
TOKEN_PREFIX = "crl_et_"
CREDENTIAL_PREFIX = "crl_wc_"
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
DEFAULT_LEASE_S = 60.0  # seconds a claim holds a job without a heartbeat
DEFAULT_DEPTH_CAP = 100_000


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a token or credential: the only form the database keeps
    (same as the SQL function corral_hash_secret_v1)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    """A random secret of 256 bits, prefixed so a leaked one is recognisable."""
    return prefix + secrets.token_urlsafe(32)


@contextmanager
def _translated() -> Iterator[None]:
    """Turn corral's custom SQLSTATEs into the matching Python errors."""
    try:
        yield
    except psycopg.Error as exc:
        state = exc.sqlstate or ""
        message = exc.diag.message_primary or str(exc)
        hint = exc.diag.message_hint
        text = f"{message} ({hint})" if hint else message
        if state == "CR401":
            raise CredentialError(text) from None
        if state == "CR410":
            raise WorkerRemoved(text) from None
        if state == "CR403":
            raise EnrollmentError(text) from None
        if state == "23514":  # check_violation: name the constraint, it says what is wrong
            raise InvalidJob(
                f"rejected by constraint {exc.diag.constraint_name}: {message}"
            ) from None
        raise


# ---------------------------------------------------------------------------
# Pure helpers shared by the sync and async classes: parameters in, records out.
# ---------------------------------------------------------------------------


def _validate(spec: JobSpec) -> None:
    if not spec.kind:
        raise InvalidJob("job kind is empty: name the handler that runs it")
    if spec.queue is not None and (spec.queue == "" or spec.queue == ALL_QUEUES):
        raise InvalidJob(f"queue name {spec.queue!r} is reserved or empty: pick another")
    if not PRIORITY_MIN <= spec.priority <= PRIORITY_MAX:
        raise InvalidJob(
            f"priority {spec.priority} is out of range: use {PRIORITY_MIN}..{PRIORITY_MAX}"
        )
    if spec.max_attempts is not None and spec.max_attempts < 1:
        raise InvalidJob(f"max_attempts {spec.max_attempts} must be at least 1")
    for name in ("run_at", "expires_at"):
        value = getattr(spec, name)
        if value is not None and value.tzinfo is None:
            raise InvalidJob(f"{name} must be timezone-aware (got {value.isoformat()})")


def _payload_json(spec: JobSpec) -> str:
    try:
        return json.dumps(spec.payload if spec.payload is not None else {})
    except (TypeError, ValueError) as exc:
        raise InvalidJob(
            f"payload of a {spec.kind!r} job is not JSON ({exc}): pass dicts, lists, "
            "strings, numbers, booleans and None only"
        ) from None


def _enqueue_params(specs: Sequence[JobSpec]) -> tuple[Any, ...]:
    for spec in specs:
        _validate(spec)
    return (
        [s.kind for s in specs],
        [s.queue for s in specs],
        [_payload_json(s) for s in specs],
        [s.priority for s in specs],
        [s.region or None for s in specs],
        [s.run_at for s in specs],
        [s.expires_at for s in specs],
        [s.max_attempts for s in specs],
        [s.dedupe_key for s in specs],
    )


def _claimed(row: tuple[Any, ...]) -> ClaimedJob:
    return ClaimedJob(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5] or None,
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
    )


def _job(row: tuple[Any, ...]) -> Job:
    values = list(row)
    values[5] = values[5] or None
    values[6] = JobState(values[6])
    return Job(*values)


def _worker(row: tuple[Any, ...]) -> Worker:
    values = list(row)
    values[6] = WorkerState(values[6])
    return Worker(*values)


def _token(row: tuple[Any, ...]) -> TokenInfo:
    return TokenInfo(*row)


def _lease_params(jobs: Iterable[Leased]) -> tuple[list[int], list[Any]]:
    ids: list[int] = []
    tokens: list[int] = []
    for job in jobs:
        ids.append(job.id)
        tokens.append(job.lease_token)
    return ids, tokens


def _complete_params(
    jobs: Iterable[Leased], results: Mapping[int, Any] | None
) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters of one completion batch: `complete_v1`
    when no job has a result (the common, cheapest path), else `complete_v2`
    with one JSON text (or NULL) per job."""
    ids, tokens = _lease_params(jobs)
    if not results:
        return "complete_v1", (ids, tokens)
    texts: list[str | None] = []
    for job_id in ids:
        value = results.get(job_id)
        if value is None:
            texts.append(None)
            continue
        try:
            texts.append(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidJob(
                f"result of job {job_id} is not JSON ({exc}): return dicts, lists, strings, "
                "finite numbers, booleans or None"
            ) from None
    return "complete_v2", (ids, tokens, texts)


def _fail_params(failures: Sequence[Failure]) -> tuple[Any, ...]:
    return (
        [f.job.id for f in failures],
        [f.job.lease_token for f in failures],
        [f.error for f in failures],
        [str(f.reason) for f in failures],
        [f.retry for f in failures],
    )


def _stats(
    hot: list[tuple[Any, ...]], finished: list[tuple[Any, ...]], dispatch: list[DispatchState]
) -> list[QueueStats]:
    paused = {d.queue for d in dispatch if d.paused}
    counts: dict[str, dict[JobState, int]] = {}
    oldest: dict[str, float | None] = {}
    for queue, state, count, age in hot:
        counts.setdefault(queue, {})[JobState(state)] = int(count)
        if age is not None:  # one row per state: keep the longest wait
            oldest[queue] = max(float(age), 0.0, oldest.get(queue) or 0.0)
    for queue, state, count in finished:
        counts.setdefault(queue, {})[JobState(state)] = int(count)
    return [
        QueueStats(
            queue=queue,
            counts=counts[queue],
            oldest_pending_age_s=oldest.get(queue),
            paused=queue in paused or ALL_QUEUES in paused,
        )
        for queue in sorted(counts)
    ]


def _token_params(
    region: str, pool: str | None, ttl_s: float, uses: int
) -> tuple[str, tuple[Any, ...]]:
    if not region:
        raise InvalidJob("an enrollment token needs a region (--region)")
    if ttl_s <= 0:
        raise InvalidJob(f"token ttl must be positive (got {ttl_s} s)")
    if uses < 1:
        raise InvalidJob(f"token uses must be at least 1 (got {uses})")
    secret = new_secret(TOKEN_PREFIX)
    prefix = secret[: len(TOKEN_PREFIX) + 6]
    return secret, (hash_secret(secret), prefix, region, pool, ttl_s, uses)


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

    def _one(self, name: str, params: Any = None, *, prepare: bool | None = None) -> Any:
        with _translated():
            row = self.conn.execute(_sql.query(name), params, prepare=prepare).fetchone()
        return None if row is None else row[0]

    def _all(
        self, name: str, params: Any = None, *, prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        with _translated():
            return self.conn.execute(_sql.query(name), params, prepare=prepare).fetchall()

    def _exec(self, name: str, params: Any = None) -> int:
        """Run a statement for its effect; return the row count."""
        with _translated():
            return self.conn.execute(_sql.query(name), params).rowcount

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
        specs = list(specs)
        if not specs:
            return []
        rows = self._all("enqueue_v1", _enqueue_params(specs))
        return [int(r[0]) for r in rows]

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
        with _translated():
            cur = self.conn.cursor(binary=True)
            cur.execute(
                _sql.query("claim_v1"),
                (worker_id, credential, list(queues), batch, lease_s),
                prepare=True,
            )
            return [_claimed(r) for r in cur.fetchall()]

    def complete_many(
        self, jobs: Iterable[Leased], results: Mapping[int, Any] | None = None
    ) -> list[int]:
        """Mark jobs completed in one statement; returns the ids REJECTED because
        their lease was lost (reaped, released or claimed again). `results`
        maps a job id to what its handler returned (JSON-able), kept with the
        finished job; jobs without an entry (or None) keep no result."""
        name, params = _complete_params(jobs, results)
        if not params[0]:
            return []
        return list(self._one(name, params, prepare=True))

    def fail_many(self, failures: Iterable[Failure]) -> list[int]:
        """Record failed attempts in one statement (retry with back-off, or dead);
        returns the ids rejected because their lease was lost."""
        failures = list(failures)
        if not failures:
            return []
        return list(self._one("fail_v1", _fail_params(failures), prepare=True))

    def release_many(self, jobs: Iterable[Leased]) -> list[int]:
        """Hand held jobs back untouched (shutdown); the attempt is not counted."""
        ids, tokens = _lease_params(jobs)
        if not ids:
            return []
        return list(self._one("release_v1", (ids, tokens), prepare=True))

    def heartbeat(
        self, worker_id: int, credential: str, *, in_flight: int, lease_s: float = DEFAULT_LEASE_S
    ) -> WorkerState:
        """Record liveness, extend every lease the worker holds, return the state
        the fleet wants it in (draining means stop claiming). Raises
        CredentialError when the credential is not known."""
        return WorkerState(
            self._one("heartbeat_v1", (worker_id, credential, in_flight, lease_s), prepare=True)
        )

    def reap(self, limit: int = 1000) -> int | None:
        """Retry jobs whose lease lapsed; None if another reaper holds the lock."""
        value = self._one("reap_v1", (limit,))
        return None if value is None else int(value)

    def promote_due(self, limit: int = 1000) -> int:
        """Move due scheduled jobs to pending (claims do this themselves)."""
        return int(self._one("promote_due_v1", (limit,)))

    def purge_finished_batch(self, older_than_s: float, *, batch: int = 1000) -> int | None:
        """One batch of retention, one process at a time fleet-wide: delete up to
        `batch` jobs that finished more than `older_than_s` seconds ago and
        return how many; None when another process is purging right now."""
        value = self._one("purge_finished_v1", (older_than_s, batch))
        return None if value is None else int(value)

    def purge_finished(self, older_than_s: float, *, batch: int = 10_000) -> int:
        """Retention: delete finished jobs older than `older_than_s` seconds, in
        batches of `batch` rows; returns how many were deleted."""
        total = 0
        while True:
            with _translated():
                deleted = self.conn.execute(
                    _sql.query("purge_finished"), (older_than_s, batch)
                ).rowcount
            total += deleted
            if deleted < batch:
                return total

    # -- inspection and admin --------------------------------------------------

    def get_job(self, job_id: int) -> Job:
        rows = self._all("get_job", {"id": job_id})
        if not rows:
            raise JobNotFound(f"job {job_id} does not exist (or retention already deleted it)")
        return _job(rows[0])

    def list_jobs(
        self, *, queue: str | None = None, state: JobState | str | None = None, limit: int = 50
    ) -> list[Job]:
        state = None if state is None else JobState(state)
        rows = self._all(
            "list_jobs", {"queue": queue, "state": state and str(state), "limit": limit}
        )
        return [_job(r) for r in rows]

    def cancel(self, job_id: int) -> Job:
        """Cancel a scheduled or pending job; raises JobStateError for any other."""
        if self._one("cancel_job", (job_id,)) is None:
            job = self.get_job(job_id)
            raise JobStateError(
                f"job {job_id} is {job.state}: only scheduled or pending jobs can be cancelled"
            )
        return self.get_job(job_id)

    def requeue(self, job_id: int) -> Job:
        """Put a dead, cancelled or expired job back as pending with a fresh budget."""
        if self._one("requeue_job", (job_id,)) is None:
            job = self.get_job(job_id)
            raise JobStateError(
                f"job {job_id} is {job.state}: only dead, cancelled or expired jobs can be requeued"
            )
        return self.get_job(job_id)

    def pause(self, queue: str | None = None, reason: str | None = None) -> DispatchState:
        """Stop claims from `queue` (None: every queue) until resume; durable.
        Enqueues keep landing and running jobs finish."""
        row = self._all(
            "set_paused", {"queue": queue or ALL_QUEUES, "paused": True, "reason": reason}
        )[0]
        return DispatchState(*row)

    def resume(self, queue: str | None = None) -> DispatchState:
        """Let claims from `queue` (None: every queue, clearing each pause) resume."""
        with self.conn.transaction():
            row = self._all(
                "set_paused", {"queue": queue or ALL_QUEUES, "paused": False, "reason": None}
            )[0]
            if queue is None:
                self._exec("resume_all")
            self._all("wake_queue", (queue or ALL_QUEUES,))
        return DispatchState(*row)

    def dispatch_status(self, queue: str | None = None) -> list[DispatchState]:
        return [DispatchState(*r) for r in self._all("dispatch_status", {"queue": queue})]

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
        self._exec(
            "set_queue_defaults",
            {
                "queue": queue,
                "max_attempts": max_attempts,
                "retry_base_s": retry_base_s,
                "retry_max_s": retry_max_s,
                "keep_completed": keep_completed,
            },
        )

    def stats(self) -> list[QueueStats]:
        """Per queue: job counts by state (finished ones until retention), oldest wait."""
        return _stats(self._all("stats_hot"), self._all("stats_finished"), self.dispatch_status())

    def depth(
        self, queues: Sequence[str], region: str | None = None, *, cap: int = DEFAULT_DEPTH_CAP
    ) -> Depth:
        """Ready and running jobs that workers of `region` on `queues` could see,
        each count stopping at `cap` (cheap; the autoscaler calls it every second)."""
        rows = self._all(
            "depth", {"queues": list(queues), "region": region or "", "cap": cap}, prepare=True
        )
        pending, running = rows[0]
        return Depth(min(int(pending), cap), int(running), capped=pending >= cap or running >= cap)

    # -- enrollment tokens -------------------------------------------------------

    def create_token(
        self, region: str, *, pool: str | None = None, ttl_s: float = 900, uses: int = 1
    ) -> NewToken:
        """Mint an enrollment token; only its SHA-256 hash is stored."""
        secret, params = _token_params(region, pool, ttl_s, uses)
        return NewToken(secret, _token(self._all("insert_token", params)[0]))

    def list_tokens(self, *, include_unusable: bool = False) -> list[TokenInfo]:
        return [_token(r) for r in self._all("list_tokens", {"all": include_unusable})]

    def revoke_token(self, token: int | str) -> int:
        """Revoke a token by id or display prefix; returns its id."""
        ident = int(token) if isinstance(token, int) or str(token).isdigit() else -1
        row = self._one("revoke_token", (ident, str(token)))
        if row is None:
            raise TokenNotFound(
                f"no enrollment token with id or prefix {token!r} (see: corral tokens list)"
            )
        return int(row)

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
        credential = new_secret(CREDENTIAL_PREFIX)
        with self.conn.transaction():
            rows = self._all(
                "enroll_v1",
                (token.strip(), name, list(queues), concurrency, version, hash_secret(credential)),
            )
        worker_id, region, pool = rows[0]
        return Enrollment(int(worker_id), credential, region, pool)

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
        with self.conn.transaction():
            state = WorkerState(self._one("authenticate_v1", (worker_id, credential)))
            if state is WorkerState.REMOVED:
                raise WorkerRemoved(f"worker {worker_id} was removed from the fleet")
            state = WorkerState(
                self._one(
                    "update_worker",
                    {
                        "id": worker_id,
                        "name": name,
                        "version": version,
                        "queues": None if queues is None else list(queues),
                        "concurrency": concurrency,
                    },
                )
            )
        return state

    def request_drain(self, worker_id: int) -> Worker:
        """Ask a worker to stop claiming and finish what it holds (idempotent)."""
        self._exec("request_drain", (worker_id,))
        return self.get_worker(worker_id)

    def drain_self(self, worker_id: int, credential: str) -> WorkerState:
        """The worker drains itself (SIGTERM, POST /drain, preStop): its row goes
        from active to draining; returns the row's state. Raises CredentialError
        or WorkerRemoved."""
        return WorkerState(self._one("drain_self_v1", (worker_id, credential)))

    def mark_drained(self, worker_id: int, credential: str) -> WorkerState:
        """The worker reports it holds nothing after a drain."""
        state = self._one("mark_drained", (worker_id, credential))
        if state is None:
            current = self.get_worker(worker_id)
            raise JobStateError(f"worker {worker_id} is {current.state}, not draining")
        return WorkerState(state)

    def remove_worker(self, worker_id: int) -> Worker:
        """Remove a worker: its credential stops working at its next call and its
        running jobs go back through the retry path."""
        self.get_worker(worker_id)
        self._all("remove_worker", {"id": worker_id})
        return self.get_worker(worker_id)

    def get_worker(self, worker_id: int) -> Worker:
        rows = self._all("get_worker", (worker_id,))
        if not rows:
            raise WorkerNotFound(f"worker {worker_id} does not exist (see: corral workers list)")
        return _worker(rows[0])

    def list_workers(self, *, include_removed: bool = False) -> list[Worker]:
        return [_worker(r) for r in self._all("list_workers", (include_removed,))]

    # -- for the operator's autoscaler -------------------------------------------

    def backlog(
        self, queues: Sequence[str], region: str | None = None, *, cap: int = DEFAULT_DEPTH_CAP
    ) -> Backlog:
        """Jobs ready for workers of `region` on `queues`: in all of them and in
        those not paused; each count stops at `cap` (cheap at any backlog)."""
        rows = self._all(
            "backlog", {"queues": list(queues), "region": region or "", "cap": cap}, prepare=True
        )
        waiting, dispatchable = (int(v) for v in rows[0])
        return Backlog(waiting, dispatchable, capped=waiting >= cap)

    def flow(
        self, queues: Sequence[str], region: str | None = None, *, window_s: float = 60.0
    ) -> Flow:
        """Arrivals, completions and mean run time on `queues` over the last `window_s`."""
        rows = self._all(
            "flow", {"queues": list(queues), "region": region or "", "window": window_s}
        )
        arrivals, completed, mean = rows[0]
        return Flow(window_s, int(arrivals), int(completed), None if mean is None else float(mean))

    def pool_workers(self, pool: str) -> list[Worker]:
        """The registry rows of one pool's workers (removed ones left out)."""
        return [_worker(r) for r in self._all("pool_workers", (pool,), prepare=True)]

    def scaler_drain(self, worker_ids: Sequence[int]) -> list[int]:
        """The operator asks active workers to drain before it removes them;
        returns the ids that moved to draining."""
        if not worker_ids:
            return []
        return [int(r[0]) for r in self._all("scaler_drain", (list(worker_ids),))]

    def scaler_undrain(self, worker_ids: Sequence[int]) -> list[int]:
        """Cancel drains the operator asked for (demand needs the workers again);
        returns the ids that are active again."""
        if not worker_ids:
            return []
        return [int(r[0]) for r in self._all("scaler_undrain", (list(worker_ids),))]

    def interruptions(self, job_id: int | None = None) -> list[Interruption]:
        """Running jobs taken from their worker unfinished (of one job, or all)."""
        return [
            Interruption(int(j), w, int(a), InterruptionReason(r), at)
            for j, w, a, r, at in self._all("interruptions", {"job": job_id})
        ]

    def listen(self) -> None:
        """LISTEN for wake-ups (the operator's autoscaler; needs its own connection)."""
        with _translated():
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))

    def wait_for_jobs(self, timeout_s: float) -> set[str]:
        """Wait up to `timeout_s` for wake-ups; the queues named (empty on timeout).
        Notifications already waiting are drained in one call."""
        queues: set[str] = set()
        with _translated():
            for note in self.conn.notifies(timeout=timeout_s, stop_after=1):
                queues.add(note.payload)
            # Whatever else arrived meanwhile, without waiting again.
            for note in self.conn.notifies(timeout=0):
                queues.add(note.payload)
        return queues


class AsyncQueue:
    """asyncio access for the worker runtime (Queue's hot path) and the operator
    (depth, tokens, drain, remove).

    Use one AsyncQueue for claims/completions and a separate one for
    `listen`/`wait_for_jobs` (a connection waiting for notifications is busy).
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, dsn: str) -> Self:
        return cls(await aconnect(dsn))

    async def close(self) -> None:
        await self.conn.close()

    def decode_json_with(self, loads: Callable[[str | bytes], Any]) -> None:
        """Decode json/jsonb values read on this connection with `loads` (the
        worker gives its claim connection a cheaper decoder for payloads)."""
        set_json_loads(loads, self.conn)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _one(self, name: str, params: Any = None, *, prepare: bool | None = None) -> Any:
        with _translated():
            cur = await self.conn.execute(_sql.query(name), params, prepare=prepare)
            row = await cur.fetchone()
        return None if row is None else row[0]

    async def _all(
        self, name: str, params: Any = None, *, prepare: bool | None = None
    ) -> list[tuple[Any, ...]]:
        with _translated():
            cur = await self.conn.execute(_sql.query(name), params, prepare=prepare)
            return await cur.fetchall()

    async def enqueue(
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
        spec = JobSpec(
            kind, payload, queue, priority, region, run_at, expires_at, max_attempts, dedupe_key
        )
        return (await self.enqueue_many([spec]))[0]

    async def enqueue_many(self, specs: Iterable[JobSpec]) -> list[int]:
        specs = list(specs)
        if not specs:
            return []
        return [int(r[0]) for r in await self._all("enqueue_v1", _enqueue_params(specs))]

    async def claim(
        self,
        worker_id: int,
        credential: str,
        queues: Sequence[str],
        *,
        batch: int = 100,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> list[ClaimedJob]:
        with _translated():
            cur = self.conn.cursor(binary=True)
            await cur.execute(
                _sql.query("claim_v1"),
                (worker_id, credential, list(queues), batch, lease_s),
                prepare=True,
            )
            return [_claimed(r) for r in await cur.fetchall()]

    async def complete_many(
        self, jobs: Iterable[Leased], results: Mapping[int, Any] | None = None
    ) -> list[int]:
        """See Queue.complete_many."""
        name, params = _complete_params(jobs, results)
        if not params[0]:
            return []
        return list(await self._one(name, params, prepare=True))

    async def fail_many(self, failures: Iterable[Failure]) -> list[int]:
        failures = list(failures)
        if not failures:
            return []
        return list(await self._one("fail_v1", _fail_params(failures), prepare=True))

    async def release_many(self, jobs: Iterable[Leased]) -> list[int]:
        ids, tokens = _lease_params(jobs)
        if not ids:
            return []
        return list(await self._one("release_v1", (ids, tokens), prepare=True))

    async def heartbeat(
        self, worker_id: int, credential: str, *, in_flight: int, lease_s: float = DEFAULT_LEASE_S
    ) -> WorkerState:
        return WorkerState(
            await self._one(
                "heartbeat_v1", (worker_id, credential, in_flight, lease_s), prepare=True
            )
        )

    async def reap(self, limit: int = 1000) -> int | None:
        value = await self._one("reap_v1", (limit,))
        return None if value is None else int(value)

    async def purge_finished_batch(self, older_than_s: float, *, batch: int = 1000) -> int | None:
        """See Queue.purge_finished_batch."""
        value = await self._one("purge_finished_v1", (older_than_s, batch))
        return None if value is None else int(value)

    async def purge_finished(self, older_than_s: float, *, batch: int = 10_000) -> int:
        total = 0
        while True:
            with _translated():
                cur = await self.conn.execute(_sql.query("purge_finished"), (older_than_s, batch))
            total += cur.rowcount
            if cur.rowcount < batch:
                return total

    async def enroll(
        self,
        token: str,
        *,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        version: str | None = None,
    ) -> Enrollment:
        credential = new_secret(CREDENTIAL_PREFIX)
        async with self.conn.transaction():
            rows = await self._all(
                "enroll_v1",
                (token.strip(), name, list(queues), concurrency, version, hash_secret(credential)),
            )
        worker_id, region, pool = rows[0]
        return Enrollment(int(worker_id), credential, region, pool)

    async def authenticate(
        self,
        worker_id: int,
        credential: str,
        *,
        name: str | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        version: str | None = None,
    ) -> WorkerState:
        async with self.conn.transaction():
            state = WorkerState(await self._one("authenticate_v1", (worker_id, credential)))
            if state is WorkerState.REMOVED:
                raise WorkerRemoved(f"worker {worker_id} was removed from the fleet")
            state = WorkerState(
                await self._one(
                    "update_worker",
                    {
                        "id": worker_id,
                        "name": name,
                        "version": version,
                        "queues": None if queues is None else list(queues),
                        "concurrency": concurrency,
                    },
                )
            )
        return state

    async def drain_self(self, worker_id: int, credential: str) -> WorkerState:
        """See Queue.drain_self."""
        return WorkerState(await self._one("drain_self_v1", (worker_id, credential)))

    async def mark_drained(self, worker_id: int, credential: str) -> WorkerState:
        state = await self._one("mark_drained", (worker_id, credential))
        if state is None:
            raise JobStateError(f"worker {worker_id} is not draining")
        return WorkerState(state)

    # -- for the operator (kopf runs on asyncio) -------------------------------

    async def depth(
        self, queues: Sequence[str], region: str | None = None, *, cap: int = DEFAULT_DEPTH_CAP
    ) -> Depth:
        """See Queue.depth."""
        rows = await self._all(
            "depth", {"queues": list(queues), "region": region or "", "cap": cap}, prepare=True
        )
        pending, running = rows[0]
        return Depth(min(int(pending), cap), int(running), capped=pending >= cap or running >= cap)

    async def create_token(
        self, region: str, *, pool: str | None = None, ttl_s: float = 900, uses: int = 1
    ) -> NewToken:
        """See Queue.create_token."""
        secret, params = _token_params(region, pool, ttl_s, uses)
        return NewToken(secret, _token((await self._all("insert_token", params))[0]))

    async def get_worker(self, worker_id: int) -> Worker:
        rows = await self._all("get_worker", (worker_id,))
        if not rows:
            raise WorkerNotFound(f"worker {worker_id} does not exist (see: corral workers list)")
        return _worker(rows[0])

    async def list_workers(self, *, include_removed: bool = False) -> list[Worker]:
        return [_worker(r) for r in await self._all("list_workers", (include_removed,))]

    async def request_drain(self, worker_id: int) -> Worker:
        """See Queue.request_drain."""
        with _translated():
            await self.conn.execute(_sql.query("request_drain"), (worker_id,))
        return await self.get_worker(worker_id)

    async def remove_worker(self, worker_id: int) -> Worker:
        """See Queue.remove_worker."""
        await self.get_worker(worker_id)
        await self._all("remove_worker", {"id": worker_id})
        return await self.get_worker(worker_id)

    async def listen(self) -> None:
        """LISTEN on the wake-up channel (payload: the queue name, or * for all)."""
        await self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))

    async def wait_for_jobs(self, timeout_s: float) -> set[str]:
        """Wait up to `timeout_s` seconds for wake-ups; return the queues named
        (empty on timeout: poll anyway, a notification can be lost)."""
        queues: set[str] = set()
        async for note in self.conn.notifies(timeout=timeout_s, stop_after=1):
            queues.add(note.payload)
        return queues

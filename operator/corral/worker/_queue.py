"""The worker's session with the queue: its connections and its identity.

The runtime's parts call these methods (`claims`, `jobs`, `completions`,
`heartbeat`, `upkeep`; `enrollment` at start); they call `corral.queue`'s
`AsyncQueue` (the only code that talks to PostgreSQL). A worker holds four
connections so that no kind of traffic waits behind another: claims,
completions, control (enrollment, heartbeat, failures, release, reaper) and
LISTEN.

A connection that breaks (a database restart or failover, a terminated
backend, a network cut) is opened again by the next call that needs it; while
the server is away that call raises `ConnectionLost` at once, and its caller
waits `QueueSession.backoff()` (jittered, doubling up to a few seconds) before
trying again. `outage_s()` says how long the database has been away, which the
heartbeat compares with the lease: a worker exits only once the leases of the
jobs it holds would already have lapsed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from json import loads as _json_loads
from typing import Any, TypeVar

from corral._version import __version__
from corral.queue import (
    AsyncQueue,
    ClaimedJob,
    ConnectionLost,
    CredentialError,
    Credentials,
    Failure,
    FailureReason,
    JobStateError,
    ScheduleFiring,
    WorkerRemoved,
    WorkerState,
)
from corral.queue import EnrollmentError as TokenRefused
from corral.queue.schedules import ScheduleSpec
from corral.worker.config import WorkerSettings
from corral.worker.drain import Directive, Lifecycle
from corral.worker.enrollment import EnrollmentError, Identity

__all__ = ["ClaimedJob", "QueueSession", "RemovedError", "Undecodable", "open_session"]

log = logging.getLogger("corral.worker")

T = TypeVar("T")

_BACKOFF_FIRST_S = 0.25  # the first retry after a connection broke
_BACKOFF_MAX_S = 5.0  # doubling up to this; each wait is jittered by +-50 %


class RemovedError(RuntimeError):
    """The registry no longer accepts this worker (removed, or unknown credential)."""


class _Refused:
    """The registry refused this worker (removed, or its credential unknown):
    turn the queue's error into RemovedError, which makes the worker exit."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, WorkerRemoved | CredentialError):
            raise RemovedError(str(exc)) from None


_refused = _Refused()


class _Link:
    """One of the worker's connections, opened again when it broke."""

    def __init__(self, name: str, queue: AsyncQueue, reopen: Callable[[], Awaitable[AsyncQueue]]):
        self.name = name
        self.queue = queue
        self._reopen = reopen

    async def ready(self) -> AsyncQueue:
        """The open connection; a new one in place of a broken one (raises
        ConnectionLost while the server cannot be reached)."""
        if not self.queue.conn.closed:
            return self.queue
        try:
            fresh = await self._reopen()
        except Exception as exc:
            raise ConnectionLost(f"{self.name} connection: {exc}") from None
        with contextlib.suppress(Exception):
            await self.queue.close()
        self.queue = fresh
        log.info("%s connection to the database open again", self.name)
        return fresh

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.queue.close()


class QueueSession:
    def __init__(self, settings: WorkerSettings, queues: Sequence[AsyncQueue]) -> None:
        self.settings = settings
        claimer, completer, control, listener = queues
        url = settings.database_url
        self._claimer = _Link("claim", claimer, lambda: _claim_connection(url))
        self._completer = _Link("completion", completer, lambda: AsyncQueue.connect(url))
        self._control = _Link("control", control, lambda: AsyncQueue.connect(url))
        self._listener = _Link("LISTEN", listener, lambda: _listen_connection(url))
        self._control_lock = asyncio.Lock()
        self.identity: Identity | None = None
        self._worker_id = 0
        self._credential = ""
        self._caller = Credentials(0, "")
        self._queues = list(settings.queues)
        self._down_since: float | None = None  # monotonic; None while the database answers
        self._failures = 0  # calls lost in a row, for the back-off

    async def close(self) -> None:
        for link in (self._claimer, self._completer, self._control, self._listener):
            await link.close()

    def _use(self, identity: Identity) -> None:
        self.identity = identity
        self._worker_id = int(identity.worker_id)
        self._credential = identity.credential
        # Every acknowledgement names its caller: the database checks the
        # credential once per batch and touches only jobs this worker holds.
        self._caller = Credentials(self._worker_id, identity.credential)

    # ----------------------------------------------------------- connections
    async def _on(self, link: _Link, call: Callable[[AsyncQueue], Awaitable[T]]) -> T:
        """`call` on `link`'s connection; notes an outage when it is lost."""
        try:
            result = await call(await link.ready())
        except ConnectionLost:
            if link.queue.conn.closed:  # not a cancelled statement: the line is gone
                self._lost()
            raise
        if self._down_since is not None:
            log.warning(
                "the database answers again after %.1fs away", time.monotonic() - self._down_since
            )
        self._down_since, self._failures = None, 0
        return result

    def _lost(self) -> None:
        self._failures += 1
        if self._down_since is None:
            self._down_since = time.monotonic()

    def outage_s(self) -> float:
        """How long calls have been failing for a lost connection (0 if none is)."""
        return 0.0 if self._down_since is None else time.monotonic() - self._down_since

    def leases_lapsed(self) -> bool:
        """Calls have failed for longer than the lease: held jobs are due elsewhere."""
        return self.outage_s() > self.settings.lease_s

    def backoff(self) -> float:
        """How long to wait before the next try after a lost connection:
        doubling from 0.25 s up to 5 s, jittered so that a fleet does not
        reconnect in step after a failover."""
        base = min(_BACKOFF_MAX_S, _BACKOFF_FIRST_S * 2.0 ** max(0, self._failures - 1))
        return base * random.uniform(0.5, 1.5)

    # -------------------------------------------------------------- identity
    async def enroll(self, token: str) -> Identity:
        try:
            async with self._control_lock:
                enrolled = await self._on(
                    self._control,
                    lambda q: q.enroll(
                        token,
                        name=self.settings.name,
                        queues=self._queues,
                        concurrency=self.settings.concurrency,
                        version=__version__,
                    ),
                )
        except TokenRefused as exc:
            raise EnrollmentError(f"enrollment refused: {exc}") from None
        if self.settings.region and self.settings.region != enrolled.region:
            raise EnrollmentError(
                f"--region / CORRAL_REGION is {self.settings.region!r} but the enrollment token "
                f"is for region {enrolled.region!r}: use a token minted for {self.settings.region!r}"
            )
        identity = Identity(str(enrolled.worker_id), enrolled.credential)
        self._use(identity)
        return identity

    async def authenticate(self, identity: Identity) -> str:
        self._use(identity)
        with _refused:
            async with self._control_lock:
                state = await self._on(
                    self._control,
                    lambda q: q.authenticate(
                        self._worker_id,
                        identity.credential,
                        name=self.settings.name,
                        queues=self._queues,
                        concurrency=self.settings.concurrency,
                        version=__version__,
                    ),
                )
        return str(state)

    # ------------------------------------------------------------------ jobs
    async def claim(self, limit: int) -> list[ClaimedJob]:
        with _refused:
            return await self._on(
                self._claimer,
                lambda q: q.claim(
                    self._worker_id,
                    self._credential,
                    self._queues,
                    batch=limit,
                    lease_s=self.settings.lease_s,
                ),
            )

    async def complete_many(
        self, jobs: list[ClaimedJob], results: dict[int, Any] | None = None
    ) -> list[int]:
        """Complete `jobs` in one statement, keeping `results` (job id -> JSON
        data) with them. Returns the ids whose lease was lost (their
        completion was refused)."""
        with _refused:
            return await self._on(
                self._completer,
                lambda q: q.complete_many(jobs, results or None, worker=self._caller),
            )

    async def fail(
        self, job: ClaimedJob, reason: FailureReason, error: str, *, retry: bool = True
    ) -> None:
        """Record a failed attempt: retried with back-off, or dead when
        `retry` is False (or the attempts are used up)."""
        with _refused:
            async with self._control_lock:
                await self._on(
                    self._control,
                    lambda q: q.fail_many(
                        [Failure(job, error, reason, retry=retry)], worker=self._caller
                    ),
                )

    async def release(self, jobs: list[ClaimedJob]) -> None:
        with _refused:
            async with self._control_lock:
                await self._on(self._control, lambda q: q.release_many(jobs, worker=self._caller))

    async def heartbeat(
        self, in_flight: int, lifecycle: Lifecycle, held: Sequence[int] = ()
    ) -> Directive:
        """Beat for a worker in `lifecycle`'s state; return what the registry
        asks of it. What to write first and what the answer means is the drain
        state machine's (corral.worker.drain): a drain the worker began itself
        (SIGTERM, POST /drain) is written to the registry first, so the row
        says `draining` and then `drained` whoever asked."""
        reported = lifecycle.reported()
        calls = lifecycle.registry_calls(reported)
        with _refused:
            async with self._control_lock:
                if calls.drain_self:
                    await self._on(
                        self._control, lambda q: q.drain_self(self._worker_id, self._credential)
                    )
                    lifecycle.drain_written()
                if calls.mark_drained:
                    with contextlib.suppress(JobStateError):
                        await self._on(
                            self._control,
                            lambda q: q.mark_drained(self._worker_id, self._credential),
                        )
                registry_state = await self._on(
                    self._control,
                    lambda q: q.heartbeat(
                        self._worker_id,
                        self._credential,
                        in_flight=in_flight,
                        lease_s=self.settings.lease_s,
                        held=list(held),
                    ),
                )
        if registry_state is WorkerState.REMOVED:
            raise RemovedError("the registry marks it removed")
        return lifecycle.heard(registry_state, reported)

    async def reap(self) -> int:
        async with self._control_lock:
            return await self._on(self._control, lambda q: q.reap()) or 0

    async def purge_finished_batch(self, older_than_s: float, batch: int) -> int | None:
        """One retention batch; None when another worker is purging."""
        async with self._control_lock:
            return await self._on(
                self._control,
                lambda q: q.retention_batch(
                    self._worker_id, self._credential, older_than_s, batch=batch
                ),
            )

    async def rollup_throughput(self, limit: int) -> int:
        """Fold up to `limit` finished jobs into the dashboard's per-minute
        counters and sample depth (0 when another process is rolling up)."""
        async with self._control_lock:
            return await self._on(
                self._control, lambda q: q.rollup_throughput(limit=limit, worker=self._caller)
            )

    async def fire_schedules(self, limit: int, lead_s: float) -> list[ScheduleFiring]:
        """One firing pass (one transaction on the control connection): the
        due schedules' occurrences become jobs, once each fleet-wide."""
        with _refused:
            async with self._control_lock:
                return await self._on(
                    self._control,
                    lambda q: q.fire_due_schedules(limit, lead_s, worker=self._caller),
                )

    async def declare_schedule(self, spec: ScheduleSpec) -> bool:
        """Upsert a schedule this worker's handlers declare (on a queue it
        serves); True when the stored schedule changed."""
        with _refused:
            async with self._control_lock:
                return await self._on(
                    self._control, lambda q: q.declare_schedule(spec, worker=self._caller)
                )

    async def wait_for_jobs(self, timeout_s: float) -> bool:
        """True when a NOTIFY named one of our queues (or all) within `timeout_s`."""
        named = await (await self._listener.ready()).wait_for_jobs(timeout_s)
        return bool(named) and ("*" in named or not named.isdisjoint(self._queues))

    async def listen(self) -> None:
        await self._listener.queue.listen()

    async def reconnect_listener(self) -> None:
        """A fresh LISTEN connection after the old one broke (it listens
        from the start: `_listen_connection`)."""
        if not self._listener.queue.conn.closed:
            # Broken without psycopg noticing yet (a wait that timed out on a
            # dead line): close it so that ready() opens a new one.
            with contextlib.suppress(Exception):
                await self._listener.queue.close()
        await self._listener.ready()


class Undecodable:
    """A claimed payload Python could not decode (nested deeper than its
    parser goes, for one: PostgreSQL's jsonb allows more). It stands in for
    the payload so that the rest of the batch runs; the job fails as
    `payload`, straight to dead, with `error` in its message."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _loads(data: str | bytes) -> Any:
    """JSON payload decoder for claimed rows: `{}` (most jobs) without the
    decoder's encoding detection and regex passes, always a new object so
    that no two jobs share a payload; anything else through `json.loads`.
    One payload that cannot be decoded never fails the claim (its batch is
    leased already): it becomes `Undecodable`."""
    text = data if isinstance(data, str) else bytes(data).decode()
    if text == "{}":
        return {}
    if text == "null":
        return None
    try:
        return _json_loads(text)
    except (RecursionError, ValueError) as exc:
        return Undecodable(f"{type(exc).__name__}: {exc}"[:300])


async def _claim_connection(url: str) -> AsyncQueue:
    # The claim connection decodes every claimed row. Its session runs in UTC
    # (unless the DSN's options name a TimeZone): psycopg then reads each of
    # a row's four timestamps as a datetime in `datetime.UTC` instead of
    # converting it to the server's zone through zoneinfo (about 2 µs a job),
    # and a handler sees `enqueued_at` and `scheduled_for` in UTC whatever
    # the server's zone. The claim functions do no local-time arithmetic.
    queue = await AsyncQueue.connect(url, session={"TimeZone": "UTC"})
    # It also decodes every payload: give it the cheap decoder (a
    # per-connection adapter setting, no SQL involved).
    queue.decode_json_with(_loads)
    return queue


async def _listen_connection(url: str) -> AsyncQueue:
    queue = await AsyncQueue.connect(url)
    await queue.listen()
    return queue


async def open_session(settings: WorkerSettings) -> QueueSession:
    """The worker's four connections (claim, completion, control, LISTEN),
    opened at once: each costs a few round trips and a password exchange, and
    the first claim waits for them. If one fails, the others are closed and
    the first failure, in that order, is raised (as when they were opened one
    after the other)."""
    url = settings.database_url
    opened = await asyncio.gather(
        _claim_connection(url), *(AsyncQueue.connect(url) for _ in range(3)), return_exceptions=True
    )
    queues = [q for q in opened if not isinstance(q, BaseException)]
    failures = [e for e in opened if isinstance(e, BaseException)]
    if failures:
        for queue in queues:
            with contextlib.suppress(Exception):
                await queue.close()
        raise failures[0]
    return QueueSession(settings, queues)

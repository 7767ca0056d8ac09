"""The worker's session with the queue: its connections and its identity.

The runtime's parts call these methods (`claims`, `jobs`, `completions`,
`heartbeat`, `upkeep`; `enrollment` at start); they call `corral.queue`'s
`AsyncQueue` (the only code that talks to PostgreSQL). A worker holds four
connections so that no kind of traffic waits behind another: claims,
completions, control (heartbeat, failures, release, reaper) and LISTEN.

Only the claim connection is open before the first claim: the worker's
enrollment and its first claim run on it. Each of the other three opens when
a call first needs it, or once the first claim is sent
(`open_connections`), whichever comes first. Each opening costs round trips,
a backend started on the server and a password exchange on both sides; four
opened together took 30 ms of a worker's start where one takes 12, and
opened behind the enrollment they slowed it down as much (`make bench-start`).

A connection that breaks (a database restart or failover, a terminated
backend, a network cut), or whose first opening failed, is opened again by
the next call that needs it (`corral.worker.connections.Link`); while the
server is away that call raises `ConnectionLost` at once, and its caller waits
`QueueSession.backoff()` (jittered, doubling up to a few seconds) before
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
from typing import TYPE_CHECKING, Any, TypeVar

from corral._version import __version__
from corral.queue import (
    AsyncQueue,
    ClaimedJob,
    ConnectionLost,
    CredentialError,
    CredentialRetired,
    Credentials,
    Failure,
    FailureReason,
    JobStateError,
    ScheduleFiring,
    WorkerRemoved,
    WorkerState,
)
from corral.queue import EnrollmentError as TokenRefused
from corral.worker.config import WorkerSettings
from corral.worker.connections import Link, Undecodable, claim_connection, listen_connection
from corral.worker.drain import Directive, Lifecycle
from corral.worker.enrollment import EnrollmentError, Identity, Retired

if TYPE_CHECKING:
    from corral.queue.schedules import ScheduleSpec

__all__ = [
    "ClaimedJob",
    "QueueSession",
    "RemovedError",
    "Undecodable",
    "lease_grant_s",
    "open_session",
]

# A claim or a renewing beat grants --lease plus this share of it (at most
# LEASE_SLACK_MAX_S), and a beat renews only the leases with less than
# --lease left (corral_heartbeat_v4, migration 0016).
LEASE_SLACK_SHARE = 0.25
LEASE_SLACK_MAX_S = 60.0
LEASE_MAX_S = 3600.0  # the database's cap on any lease


def lease_grant_s(lease_s: float) -> float:
    """The lease a claim or a renewing beat asks for: `lease_s` (--lease) and
    a slack on top. Beats renew a lease once less than `lease_s` is left, so
    right after each beat every held job has at least `lease_s` left (an
    outage shorter than --lease costs no job a second run), while a held
    job's row is rewritten once per slack instead of once per beat. The
    price: a dead worker's jobs run again up to the slack later. Within the
    database's cap of an hour (near it, every beat renews)."""
    return min(lease_s + min(lease_s * LEASE_SLACK_SHARE, LEASE_SLACK_MAX_S), LEASE_MAX_S)


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


class _Retired:
    """A pool worker's own drain finished (CR409): `enrollment.Retired`,
    which makes it enroll afresh with its pool's token."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, CredentialRetired):
            raise Retired(str(exc)) from None


_retired = _Retired()


class QueueSession:
    def __init__(self, settings: WorkerSettings, claimer: AsyncQueue) -> None:
        """`claimer`: the open claim connection; the other three open when
        first needed, or at `open_connections()`."""
        self.settings = settings
        url = settings.database_url
        self._claimer = Link("claim", lambda: claim_connection(url), claimer)
        self._completer = Link("completion", lambda: AsyncQueue.connect(url))
        self._control = Link("control", lambda: AsyncQueue.connect(url))
        self._listener = Link("LISTEN", lambda: listen_connection(url))
        self._control_lock = asyncio.Lock()
        self.identity: Identity | None = None
        self._worker_id = 0
        self._credential = ""
        self._caller = Credentials(0, "")
        self._queues = list(settings.queues)
        self._down_since: float | None = None  # monotonic; None while the database answers
        self._failures = 0  # calls lost in a row, for the back-off

    def open_connections(self) -> None:
        """Start opening the connections no call has needed yet (the worker
        runtime calls this once its first claim is sent)."""
        for link in (self._completer, self._control, self._listener):
            link.open()

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
    async def _on(self, link: Link, call: Callable[[AsyncQueue], Awaitable[T]]) -> T:
        """`call` on `link`'s connection; notes an outage when it is lost."""
        try:
            result = await call(await link.ready())
        except ConnectionLost:
            if not link.usable():  # not a cancelled statement: the line is gone
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
    # Enrollment runs once, at start, before the first claim: on the claim
    # connection, the one open by then (the dispatcher is not running yet).
    async def enroll(self, token: str) -> Identity:
        try:
            enrolled = await self._on(
                self._claimer,
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
        identity = Identity(str(enrolled.worker_id), enrolled.credential, enrolled.region)
        self._use(identity)
        return identity

    async def authenticate(self, identity: Identity) -> str:
        self._use(identity)
        with _refused, _retired:
            state = await self._on(
                self._claimer,
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
                    lease_s=lease_grant_s(self.settings.lease_s),
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
                        lease_s=lease_grant_s(self.settings.lease_s),
                        held=list(held),
                        renew_below_s=self.settings.lease_s,
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
        """Wait until the LISTEN connection listens (it does from its opening:
        `_listen_connection`)."""
        await self._listener.ready()

    async def reconnect_listener(self) -> None:
        """A fresh LISTEN connection after the old one broke (it listens
        from the start: `_listen_connection`)."""
        queue = self._listener.queue
        if queue is not None and not queue.conn.closed:
            # Broken without psycopg noticing yet (a wait that timed out on a
            # dead line): close it so that ready() opens a new one.
            with contextlib.suppress(Exception):
                await queue.close()
        await self._listener.ready()


async def open_session(settings: WorkerSettings) -> QueueSession:
    """The worker's session, once its claim connection is open (its failure
    is raised: the worker cannot start). The completion, control and LISTEN
    connections open later (see the module's docstring); one whose opening
    fails is opened again by the next call that needs it, as after a break."""
    return QueueSession(settings, await claim_connection(settings.database_url))

"""The data corral.queue hands out and takes in: plain frozen dataclasses.

Nothing here talks to PostgreSQL; `corral.queue._params` builds these from
rows for the operations both clients run, and the admin CLI, the worker
runtime and the operator read them.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Protocol


class JobState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waiting for run_at (a delay or a retry back-off)
    PENDING = "pending"  # ready to be claimed
    RUNNING = "running"  # claimed under a lease
    COMPLETED = "completed"
    DEAD = "dead"  # out of attempts (or not retryable); last error kept
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # found past expires_at before it ran

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = {JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED, JobState.EXPIRED}


class FailureReason(enum.StrEnum):
    EXCEPTION = "exception"  # the handler raised
    TIMEOUT = "timeout"  # the handler ran past the job's timeout
    PAYLOAD = "payload"  # the payload could not be decoded for the handler
    UNKNOWN_KIND = "unknown_kind"  # no handler registered under the job's kind
    LEASE_EXPIRED = "lease_expired"  # the reaper found the lease lapsed
    RESULT = "result"  # the database refused to store what the handler returned


class WorkerState(enum.StrEnum):
    ACTIVE = "active"
    DRAINING = "draining"  # stop claiming, finish what is held
    DRAINED = "drained"  # holds nothing; waiting to be terminated
    REMOVED = "removed"  # must stop; its credential no longer works
    # A heartbeat's answer only (the row says draining or drained, by
    # 'restart'): drain, then exit for the supervisor to start it again.
    RESTARTING = "restarting"


class Leased(Protocol):
    """Anything that names a claimed job and the lease it was claimed under."""

    @property
    def id(self) -> int: ...

    @property
    def lease_token(self) -> int: ...


class Caller(Protocol):
    """A worker proving who it is: its id and credential (an `Enrollment`, or
    `Credentials`). The worker functions check it once per call."""

    @property
    def worker_id(self) -> int: ...

    @property
    def credential(self) -> str: ...


@dataclass(frozen=True, slots=True)
class Credentials:
    worker_id: int
    credential: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class Lease:
    id: int
    lease_token: int


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One job to enqueue. `queue` defaults to `kind`; None fields take defaults:
    priority 0, any region, run now, never expire, the queue's max_attempts (20
    when the queue sets none), no result forwarding."""

    kind: str
    payload: Any = None
    queue: str | None = None
    priority: int = 0
    region: str | None = None
    run_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    max_attempts: int | None = None
    dedupe_key: str | None = None
    # When the job completes, its result is enqueued on this queue as a job
    # of kind "result" (docs/queue.md, "Result forwarding"); None: nowhere.
    result_queue: str | None = None


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker holds. `(id, attempt)` is the handler's idempotency key:
    delivery is at-least-once. Complete or fail it with its lease token."""

    id: int
    kind: str
    queue: str
    payload: Any
    priority: int
    region: str | None
    attempt: int
    max_attempts: int
    lease_token: int
    lease_expires_at: dt.datetime
    enqueued_at: dt.datetime
    run_at: dt.datetime
    # The occurrence of the schedule that enqueued it (None: not a schedule's job).
    scheduled_for: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to report with `fail_many`. `retry=False` sends the job
    straight to dead (for failures a retry cannot fix)."""

    job: Leased
    error: str
    reason: FailureReason = FailureReason.EXCEPTION
    retry: bool = True


@dataclass(frozen=True, slots=True)
class Job:
    """A job as `get_job` / `list_jobs` show it, finished or not."""

    id: int
    kind: str
    queue: str
    payload: Any
    priority: int
    region: str | None
    state: JobState
    run_at: dt.datetime
    expires_at: dt.datetime | None
    attempt: int
    max_attempts: int
    dedupe_key: str | None
    worker_id: int | None
    lease_expires_at: dt.datetime | None
    last_error: str | None
    last_error_reason: str | None
    enqueued_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    # What the handler returned, for completed jobs (None: nothing).
    result: Any = None
    # The occurrence of the schedule that enqueued it (None: not a schedule's job).
    scheduled_for: dt.datetime | None = None
    # Where its result goes on completion (`get_job` only; None: nowhere).
    result_queue: str | None = None


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Counts for one queue; `oldest_pending_age_s` is how long its oldest
    ready job has waited (seconds since it became due), None when none waits."""

    queue: str
    counts: dict[JobState, int] = field(default_factory=dict)
    oldest_pending_age_s: float | None = None
    paused: bool = False


@dataclass(frozen=True, slots=True)
class Depth:
    """Work visible to workers of one region on a set of queues. Counts stop
    at the cap given to `depth` (then `capped` is True) so the call stays cheap
    at any backlog."""

    pending: int
    running: int
    capped: bool


@dataclass(frozen=True, slots=True)
class Backlog:
    """Jobs ready for the workers of one region on a set of queues: in all of
    them (`waiting`) and in those not paused (`dispatchable`, what an
    autoscaler scales on). Counts stop at the cap (then `capped` is True)."""

    waiting: int
    dispatchable: int
    capped: bool


@dataclass(frozen=True, slots=True)
class Flow:
    """Jobs through a set of queues over the last `window_s` seconds: how many
    became ready, how many completed and their mean run time (None: none)."""

    window_s: float
    arrivals: int
    completed: int
    mean_duration_s: float | None

    @property
    def arrivals_per_s(self) -> float:
        return self.arrivals / self.window_s if self.window_s > 0 else 0.0


class InterruptionReason(enum.StrEnum):
    HANDED_BACK = "handed_back"  # released unfinished at shutdown; the attempt is not counted
    LEASE_EXPIRED = "lease_expired"  # the worker stopped heartbeating; the job is retried


@dataclass(frozen=True, slots=True)
class Interruption:
    """A running job taken from its worker without finishing."""

    job_id: int
    worker_id: int | None
    attempt: int
    reason: InterruptionReason
    at: dt.datetime


@dataclass(frozen=True, slots=True)
class DispatchState:
    """Pause state of one queue (or `*`, every queue)."""

    queue: str
    paused: bool
    reason: str | None
    since: dt.datetime | None


UNCAPPED = -1  # `set_queue_defaults(max_dead=UNCAPPED)`: keep every dead (or completed) job


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """One queue's settings (`Queue.list_queues`): what a job enqueued on it
    gets by default, and how many finished jobs retention keeps."""

    queue: str
    configured: bool  # has a corral_queues row (False: every value is the default)
    max_attempts: int | None  # None: jobs get the enqueue default (20)
    retry_base_s: float  # first retry's back-off (it doubles, with jitter)
    retry_max_s: float  # the back-off's cap
    keep_completed: bool  # False: completed jobs are deleted at once
    max_dead: int | None  # dead jobs kept at most (oldest deleted first); None: no cap
    max_completed: int | None  # completed jobs kept at most; None: no cap
    paused: bool


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    display_prefix: str
    region: str
    pool: str | None
    expires_at: dt.datetime
    uses_remaining: int
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None

    @property
    def usable(self) -> bool:
        return (
            self.revoked_at is None
            and self.uses_remaining > 0
            and self.expires_at > dt.datetime.now(dt.UTC)
        )


@dataclass(frozen=True, slots=True)
class NewToken:
    """A freshly minted enrollment token: `secret` is shown once, never stored."""

    secret: str
    info: TokenInfo


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What a worker keeps after enrolling (under CORRAL_STATE_DIR)."""

    worker_id: int
    credential: str
    region: str
    pool: str | None


@dataclass(frozen=True, slots=True)
class RegistryPurge:
    """What one registry retention pass deleted (`Queue.purge_registry`)."""

    workers: int  # removed, or silent (no heartbeat), for longer than the age
    tokens: int  # revoked, expired or used up for longer than the age


@dataclass(frozen=True, slots=True)
class Worker:
    id: int
    name: str
    region: str
    pool: str | None
    queues: list[str]
    concurrency: int
    state: WorkerState
    in_flight: int
    last_heartbeat: dt.datetime | None
    version: str | None
    enrolled_at: dt.datetime
    drain_requested_at: dt.datetime | None
    drained_at: dt.datetime | None
    removed_at: dt.datetime | None
    # "admin" (corral workers drain), "scaler" (the operator), "restart"
    # (corral workers restart) or "self" (the worker on SIGTERM, POST /drain
    # or its preStop hook); None when not drained.
    drain_requested_by: str | None = None

    @property
    def shown_state(self) -> str:
        """The state `corral workers list` shows: `restarting` for a drain
        that ends in a restart, else the row's state."""
        if self.drain_requested_by == "restart" and self.state in (
            WorkerState.DRAINING,
            WorkerState.DRAINED,
        ):
            return "restarting"
        return str(self.state)


@dataclass(frozen=True, slots=True)
class Schedule:
    """A recurring schedule as `get_schedule` / `list_schedules` show it:
    its spec, where it is (next_at: the next occurrence to fire, None once
    it is over), and the last job it enqueued and that job's state."""

    name: str
    kind: str
    payload: Any
    every_s: float | None
    cron: str | None
    timezone: str
    queue: str
    priority: int
    region: str | None
    max_attempts: int | None
    start_at: dt.datetime | None
    end_at: dt.datetime | None
    catch_up: str
    overlap: str
    jitter_s: float
    paused: bool
    next_at: dt.datetime | None
    last_occurrence: dt.datetime | None
    last_job_id: int | None
    last_job_state: JobState | None
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True, slots=True)
class ScheduleFiring:
    """What a firing pass did for one schedule: the jobs it enqueued, how
    many occurrences it recorded as skipped (overlap=skip), and the queue
    its jobs go to (so that whoever fired can wake that queue's pools)."""

    schedule: str
    job_ids: list[int]
    skipped: int
    queue: str


@dataclass(frozen=True, slots=True)
class RegionInfo:
    """A region as `list_regions` sees it in the database: its live workers
    (a heartbeat, or an enrollment, within `LIVE_WORKER_S`), the pools of its
    workers and of its pools' enrollment tokens, and its depth (jobs for that
    region not yet running: pending, or scheduled and due)."""

    name: str
    workers: int
    pools: list[str]
    depth: int
    # A pool of this region holds a usable enrollment token: it can start a
    # worker when jobs arrive (autoscaling from zero).
    pool_can_start: bool

    @property
    def accepts_jobs(self) -> bool:
        """Enqueueing for it is allowed without `allow_empty_region`."""
        return self.workers > 0 or self.pool_can_start


@dataclass(frozen=True, slots=True)
class GroupJob:
    """One region's job of a group; `state` None: purged by retention."""

    region: str
    job_id: int
    state: JobState | None
    attempt: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class JobGroup:
    """Jobs fanned out over regions (`enqueue_group`), with the status the
    group's rule rolls them up to (`corral.queue.groups.rollup`)."""

    id: int
    kind: str
    rule: str
    created_at: dt.datetime
    status: str
    jobs: list[GroupJob]

    @property
    def name(self) -> str:
        """How the CLI writes the id: `g-<id>` (job ids are plain numbers)."""
        return f"g-{self.id}"

"""The records corral.queue's reads show: a job as `get_job` and `list_jobs`
show it, queue stats, depth, backlog and flow, dispatch state, queue
settings, tokens, workers, schedules, regions and fan-out groups.

The admin CLI, the operator and the dashboard read them; a worker's start
does not, so they live apart from `corral.queue.records` (which re-exports
each by name, importing this module on first use): dataclasses compiles
every record's methods at import, and that is kept off a worker's way to its
first claim (`make bench-start`, `tests/unit/test_worker_start_imports.py`).
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any

from corral.queue.records import JobState, WorkerState

__all__ = [
    "Backlog",
    "Depth",
    "DispatchState",
    "Flow",
    "GroupJob",
    "Interruption",
    "InterruptionReason",
    "Job",
    "JobGroup",
    "NewToken",
    "QueueSettings",
    "QueueStats",
    "RegionInfo",
    "RegistryPurge",
    "Schedule",
    "TokenInfo",
    "Worker",
]


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
    # The enrollment token it enrolled with (None: purged since, or enrolled
    # before the registry kept it): `corral tokens revoke --remove-workers`.
    token_id: int | None = None

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

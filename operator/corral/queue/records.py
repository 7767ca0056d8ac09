"""The data corral.queue hands out and takes in: plain frozen dataclasses.

Nothing here talks to PostgreSQL; `corral.queue._params` builds these from
rows for the operations both clients run, and the admin CLI, the worker
runtime and the operator read them.

This module holds what a worker's start and its jobs use (job and worker
states, claims, failures, enrollment, schedule firings, `JobSpec`); the
records only reads show (a job as `get_job` shows it, stats, workers,
tokens, schedules, regions, groups) are `corral.queue.view_records`'s,
imported the first time one is named here (`records.Worker`): dataclasses
compiles each record's methods at import, and a worker's way to its first
claim (`make bench-start`) does not pay for the admin's records.
"""

from __future__ import annotations

import datetime as dt
import enum
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from corral.queue.view_records import Backlog as Backlog
    from corral.queue.view_records import Depth as Depth
    from corral.queue.view_records import DispatchState as DispatchState
    from corral.queue.view_records import Flow as Flow
    from corral.queue.view_records import GroupJob as GroupJob
    from corral.queue.view_records import Interruption as Interruption
    from corral.queue.view_records import InterruptionReason as InterruptionReason
    from corral.queue.view_records import Job as Job
    from corral.queue.view_records import JobGroup as JobGroup
    from corral.queue.view_records import NewToken as NewToken
    from corral.queue.view_records import QueueSettings as QueueSettings
    from corral.queue.view_records import QueueStats as QueueStats
    from corral.queue.view_records import RegionInfo as RegionInfo
    from corral.queue.view_records import RegistryPurge as RegistryPurge
    from corral.queue.view_records import Schedule as Schedule
    from corral.queue.view_records import TokenInfo as TokenInfo
    from corral.queue.view_records import Worker as Worker


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


class Unloadable:
    """A value of a claimed row that Python cannot load: a timestamp outside
    `datetime`'s years 1-9999 ('-infinity', written past corral's client),
    or a payload its JSON parser refuses. It stands in for the job's payload
    so that the rest of the batch runs; the worker fails that job as
    `payload`, straight to dead, with `error` in its message."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt to report with `fail_many`. `retry=False` sends the job
    straight to dead (for failures a retry cannot fix)."""

    job: Leased
    error: str
    reason: FailureReason = FailureReason.EXCEPTION
    retry: bool = True


UNCAPPED = -1  # `set_queue_defaults(max_dead=UNCAPPED)`: keep every dead (or completed) job


@dataclass(frozen=True, slots=True)
class Enrollment:
    """What a worker keeps after enrolling (under CORRAL_STATE_DIR)."""

    worker_id: int
    credential: str
    region: str
    pool: str | None


@dataclass(frozen=True, slots=True)
class ScheduleFiring:
    """What a firing pass did for one schedule: the jobs it enqueued, how
    many occurrences it recorded as skipped (overlap=skip), and the queue
    its jobs go to (so that whoever fired can wake that queue's pools)."""

    schedule: str
    job_ids: list[int]
    skipped: int
    queue: str


def __getattr__(name: str) -> Any:
    """A view record by name, its module imported on first use (PEP 562)."""
    value = view_record(name)
    if value is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def view_record(name: str) -> Any:
    """The record `corral.queue.view_records` exports as `name` (None for any
    other name), importing that module on first use. A dunder name (a probe
    such as `__path__`) never imports it."""
    if name.startswith("__"):
        return None
    views = importlib.import_module("corral.queue.view_records")
    return getattr(views, name) if name in views.__all__ else None

"""corral.queue: the PostgreSQL job queue. The ONLY package that talks to PostgreSQL.

Who calls it: the admin CLI (`corral db|jobs|schedules|stats|dispatch|tokens|
workers`, in `corral.admin`), the worker runtime (`corral.worker`, through
`AsyncQueue`), the operator (depth, drain, tokens) and user code that enqueues.

Guarantees (each has an integration test named after it):
* enqueue is durable when it returns on an autocommit connection
  (`Queue.connect(dsn)`), or part of the caller's transaction on theirs
  (`Queue(conn)`); `enqueue_many` is one round trip;
* claims are `FOR UPDATE SKIP LOCKED` batches over a partial index, O(batch)
  at any backlog: higher priority first, FIFO within a priority, due jobs
  only, region-targeted (a job with a region goes only to that region's
  workers), expired jobs marked `expired` instead of run, paused queues
  skipped;
* every claim carries a lease token: completing or failing a job whose lease
  was lost (reaped, released, re-claimed) is rejected;
* the heartbeat extends, in one statement, the leases of the jobs a worker
  names as held that run low; one reaper at a time (advisory lock) sends
  lapsed leases through the retry path;
* retries back off exponentially with jitter up to `max_attempts`, then the
  job is `dead` with its last error kept; `requeue` restores a fresh budget;
* delivery is AT-LEAST-ONCE: handlers should use `(job.id, job.attempt)` as
  their idempotency key;
* a schedule's occurrence becomes at most one job, whoever fires it (the
  ledger `corral_schedule_occurrences` is keyed by schedule and occurrence).

Worker hot path, in order: `claim` -> run -> `complete_many` (with the
handlers' results) / `fail_many` (batched), `heartbeat` every few seconds,
`drain_self` + `mark_drained` when it drains, `release_many` on shutdown,
`reap` + `purge_finished_batch` now and then, `listen` + `wait_for_jobs` to
wake up.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from corral.queue._params import LIVE_WORKER_S, PAYLOAD_MAX_BYTES
from corral.queue.client import (
    ALL_QUEUES,
    DEFAULT_DEPTH_CAP,
    DEFAULT_LEASE_S,
    NOTIFY_CHANNEL,
    Queue,
    hash_secret,
)
from corral.queue.client_async import AsyncQueue
from corral.queue.dsn import DsnError, check_dsn, dsn_user, mask_dsn
from corral.queue.errors import (
    ConnectionLost,
    CredentialError,
    CredentialRetired,
    DataRefused,
    EmptyRegion,
    EnrollmentError,
    GroupNotFound,
    InvalidAuditEntry,
    InvalidJob,
    JobNotFound,
    JobStateError,
    MigrationError,
    PermissionDenied,
    QueueError,
    ScheduleNotFound,
    SchemaMissing,
    TokenNotFound,
    WorkerNotFound,
    WorkerRemoved,
    WorkerStateError,
)
from corral.queue.migrations import MigrationStatus, migrate, status
from corral.queue.records import (
    UNCAPPED,
    Caller,
    ClaimedJob,
    Credentials,
    Enrollment,
    Failure,
    FailureReason,
    JobSpec,
    JobState,
    Lease,
    Leased,
    ScheduleFiring,
    WorkerState,
)

if TYPE_CHECKING:
    from corral.queue.insight_records import AuditEntry, DepthMinute, ThroughputMinute
    from corral.queue.schedules import InvalidSchedule, ScheduleSpec
    from corral.queue.view_records import (
        Backlog,
        Depth,
        DispatchState,
        Flow,
        GroupJob,
        Interruption,
        InterruptionReason,
        Job,
        JobGroup,
        NewToken,
        QueueSettings,
        QueueStats,
        RegionInfo,
        RegistryPurge,
        Schedule,
        TokenInfo,
        Worker,
    )

__all__ = [
    "ALL_QUEUES",
    "DEFAULT_DEPTH_CAP",
    "DEFAULT_LEASE_S",
    "LIVE_WORKER_S",
    "NOTIFY_CHANNEL",
    "PAYLOAD_MAX_BYTES",
    "UNCAPPED",
    "AsyncQueue",
    "AuditEntry",
    "Backlog",
    "Caller",
    "ClaimedJob",
    "ConnectionLost",
    "CredentialError",
    "CredentialRetired",
    "Credentials",
    "DataRefused",
    "Depth",
    "DepthMinute",
    "DispatchState",
    "DsnError",
    "EmptyRegion",
    "Enrollment",
    "EnrollmentError",
    "Failure",
    "FailureReason",
    "Flow",
    "GroupJob",
    "GroupNotFound",
    "Interruption",
    "InterruptionReason",
    "InvalidAuditEntry",
    "InvalidJob",
    "InvalidSchedule",
    "Job",
    "JobGroup",
    "JobNotFound",
    "JobSpec",
    "JobState",
    "JobStateError",
    "Lease",
    "Leased",
    "MigrationError",
    "MigrationStatus",
    "NewToken",
    "PermissionDenied",
    "Queue",
    "QueueError",
    "QueueSettings",
    "QueueStats",
    "RegionInfo",
    "RegistryPurge",
    "Schedule",
    "ScheduleFiring",
    "ScheduleNotFound",
    "ScheduleSpec",
    "SchemaMissing",
    "ThroughputMinute",
    "TokenInfo",
    "TokenNotFound",
    "Worker",
    "WorkerNotFound",
    "WorkerRemoved",
    "WorkerState",
    "WorkerStateError",
    "check_dsn",
    "dsn_user",
    "hash_secret",
    "mask_dsn",
    "migrate",
    "status",
]


# Names whose modules a worker's way to its first claim does not need:
# schedules (and cronsim under them) and the dashboard's records.
_LAZY = {
    "InvalidSchedule": "corral.queue.schedules",
    "ScheduleSpec": "corral.queue.schedules",
    "AuditEntry": "corral.queue.insight_records",
    "DepthMinute": "corral.queue.insight_records",
    "ThroughputMinute": "corral.queue.insight_records",
}


def __getattr__(name: str) -> Any:
    """The names above, and the records only reads show
    (`corral.queue.view_records`), imported on first use so that a worker's
    start does not build them (PEP 562)."""
    from corral.queue.records import view_record

    module = _LAZY.get(name)
    value = getattr(importlib.import_module(module), name) if module else view_record(name)
    if value is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value

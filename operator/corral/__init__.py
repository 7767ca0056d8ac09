"""corral: run fleets of PostgreSQL-queue workers on Kubernetes.

The public surface re-exported here is what users import; everything else is
internal and may change between releases:

- enqueueing: `connect(url)` (a `Queue`), `await connect_async(url)` (an
  `AsyncQueue`), `JobSpec` for `enqueue_many`, `JobState`;
- handlers: `@handler("kind")` (whose result has `.defer(queue_or_conn,
  payload, ...)`), `Job`, `HandlerError`, `PayloadError`;
- recurring schedules: `@handler("kind", schedule=every("5m"))`,
  `schedule(name, kind, cron=...)`, `ScheduleSpec` (for
  `Queue.create_schedule`), `InvalidSchedule`.

Both halves are loaded on first use (PEP 562): `import corral` loads neither
psycopg nor the worker package, so the operator's pure deciders and the CRD
generator import `corral.*` modules without those side effects.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from corral._version import __version__

if TYPE_CHECKING:
    from corral.queue import AsyncQueue, JobSpec, JobState, Queue, QueueError
    from corral.queue.schedules import InvalidSchedule, ScheduleSpec
    from corral.worker.handlers import (
        HandlerError,
        HandlerFunction,
        Job,
        PayloadError,
        every,
        handler,
        schedule,
    )

__all__ = [
    "AsyncQueue",
    "HandlerError",
    "HandlerFunction",
    "InvalidSchedule",
    "Job",
    "JobSpec",
    "JobState",
    "PayloadError",
    "Queue",
    "QueueError",
    "ScheduleSpec",
    "__version__",
    "connect",
    "connect_async",
    "every",
    "handler",
    "schedule",
]

# Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "HandlerError": "corral.worker.handlers",
    "HandlerFunction": "corral.worker.handlers",
    "Job": "corral.worker.handlers",
    "PayloadError": "corral.worker.handlers",
    "handler": "corral.worker.handlers",
    "every": "corral.worker.handlers",
    "schedule": "corral.worker.handlers",
    "InvalidSchedule": "corral.queue",
    "ScheduleSpec": "corral.queue",
    "AsyncQueue": "corral.queue",
    "JobSpec": "corral.queue",
    "JobState": "corral.queue",
    "Queue": "corral.queue",
    "QueueError": "corral.queue",
}


def connect(url: str) -> Queue:
    """Open the queue at `url` (postgresql://user:password@host:5432/db) on an
    autocommit connection: every call is durable when it returns. Close it
    with `.close()`, or use it as a context manager.

        with corral.connect(url) as queue:
            queue.enqueue("send-email", {"to": "ada@example.com"})
    """
    from corral.queue import Queue

    return Queue.connect(url)


async def connect_async(url: str) -> AsyncQueue:
    """`connect` on asyncio: `queue = await corral.connect_async(url)`, then
    `await queue.enqueue(...)`; `async with queue:` closes it."""
    from corral.queue import AsyncQueue

    return await AsyncQueue.connect(url)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'corral' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))

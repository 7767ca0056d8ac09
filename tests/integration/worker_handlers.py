"""Handlers the worker integration tests load into real `corral worker`
processes with `--handlers tests.integration.worker_handlers`.

`record` writes (job id, attempt, worker name) into `handled` — the crash
test's ledger of what ran where; the others fail in each way a job can fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import time
from contextvars import ContextVar
from typing import Any, LiteralString

import psycopg
from pydantic import BaseModel

import corral

_conn: psycopg.AsyncConnection[Any] | None = None
_lock = asyncio.Lock()


async def _db() -> psycopg.AsyncConnection[Any]:
    global _conn
    async with _lock:
        if _conn is None:
            _conn = await psycopg.AsyncConnection.connect(
                os.environ["CORRAL_DATABASE_URL"], autocommit=True
            )
    return _conn


async def _note(job: corral.Job[Any], insert: LiteralString, value: Any) -> None:
    """Insert (the job's id, `value`, this worker's name) with `insert`, then
    take the payload's `sleep_s` (default 10 ms) to finish."""
    conn = await _db()
    async with _lock:
        await conn.execute(insert, (job.id, value, os.environ.get("CORRAL_NAME", "?")))
    await asyncio.sleep(float((job.payload or {}).get("sleep_s", 0.01)))


@corral.handler("record")
async def record(job: corral.Job[Any]) -> None:
    """Record this delivery, then take `sleep_s` (default 10 ms) to finish."""
    await _note(
        job, "INSERT INTO handled (job_id, attempt, worker) VALUES (%s, %s, %s)", job.attempt
    )


@corral.handler("collector")
async def collector(job: corral.Job[Any]) -> dict[str, bool]:
    """Whether this worker's garbage collector runs (paused only until the
    first claim is sent: corral.entry)."""
    return {"gc_enabled": gc.isenabled()}


@corral.handler("explode")
async def explode(job: corral.Job[Any]) -> None:
    raise RuntimeError(f"kaboom in job {job.id}")


@corral.handler("sleepy", timeout=0.3)
async def sleepy(job: corral.Job[Any]) -> None:
    await asyncio.sleep(30)


@corral.handler("wraps_cancel")
async def wraps_cancel(job: corral.Job[Any]) -> None:
    # As a client library may: its cancellation comes out as an error of its own.
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        raise RuntimeError("request aborted") from None


@corral.handler("own_deadline")
async def own_deadline(job: corral.Job[Any]) -> None:
    # Its own deadline, entered before it first waits: asyncio.timeout binds
    # to the task that runs it.
    async with asyncio.timeout(float(job.payload.get("within_s", 0.2))):
        await asyncio.sleep(30)


_seen: ContextVar[int | None] = ContextVar("corral_tests_seen", default=None)


@corral.handler("context")
async def context(job: corral.Job[Any]) -> dict[str, int | None]:
    # What an earlier job left in a context variable (None: nothing).
    seen = _seen.get()
    _seen.set(job.id)
    return {"seen": seen}


class Resize(BaseModel):
    width: int
    height: int


@corral.handler("resize", payload=Resize)
def resize(job: corral.Job[Resize]) -> int:
    """A sync handler (runs in a thread) with a typed payload."""
    return job.payload.width * job.payload.height


@corral.handler("hold")
async def hold(job: corral.Job[Any]) -> None:
    """Runs until cancelled (drain and SIGTERM tests)."""
    await asyncio.sleep(float((job.payload or {}).get("sleep_s", 3600)))


@corral.handler("blocking")
def blocking(job: corral.Job[Any]) -> None:
    time.sleep(float((job.payload or {}).get("sleep_s", 0.5)))


@corral.handler("block_loop")
async def block_loop(job: corral.Job[Any]) -> None:
    """An async handler that blocks its event loop (what not to do)."""
    time.sleep(float((job.payload or {}).get("sleep_s", 2)))


@corral.handler("wedged", timeout=1)
def wedged(job: corral.Job[Any]) -> None:
    """A sync handler that outlives its 1 s timeout by far (its thread cannot be stopped)."""
    time.sleep(float((job.payload or {}).get("sleep_s", 3600)))


@corral.handler("poison")
async def poison(job: corral.Job[Any]) -> Any:
    """Results and errors PostgreSQL cannot store as they are (NUL, a lone surrogate)."""
    if (job.payload or {}).get("raise"):
        raise RuntimeError("bad \x00 byte and half a \ud800 pair")
    return {"text": "nul \x00 here", "half": "\udc80"}


@corral.handler("scheduled")
async def scheduled(job: corral.Job[Any]) -> None:
    """Record the occurrence a schedule enqueued this job for, then take
    `sleep_s` (default 10 ms)."""
    await _note(
        job,
        "INSERT INTO seen (job_id, scheduled_for, worker) VALUES (%s, %s, %s)",
        job.scheduled_for,
    )


@corral.handler("clock")
async def clock(job: corral.Job[Any]) -> dict[str, Any]:
    """What a handler sees of the job's enqueue time: its zone and instant."""
    assert job.enqueued_at is not None
    return {"zone": job.enqueued_at.tzname(), "epoch": job.enqueued_at.timestamp()}


class _Detached:
    """An object whose repr fails, as a detached ORM instance's may."""

    def __repr__(self) -> str:
        raise AttributeError("instance is detached")


@corral.handler("unconvertible")
async def unconvertible(job: corral.Job[Any]) -> Any:
    """A result neither JSON nor repr() can show: an object whose repr raises,
    or (`{"big_int": true}`) an int over Python's 4,300-digit str limit."""
    if (job.payload or {}).get("big_int"):
        return 10**5000
    return _Detached()


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() of this exception fails")


@corral.handler("unprintable_error")
async def unprintable_error(job: corral.Job[Any]) -> None:
    """Raises an exception whose str() raises too."""
    raise _Unprintable()


@corral.handler("stubborn")
async def stubborn(job: corral.Job[Any]) -> None:
    """Swallows every cancellation for `sleep_s` (default an hour), as a
    client library's cleanup that outlives its task's cancellation may."""
    until = time.monotonic() + float((job.payload or {}).get("sleep_s", 3600))
    while time.monotonic() < until:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.5)

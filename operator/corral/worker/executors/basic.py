"""The kinds that touch no network (`noop`, `sleep`) and the limit every
network executor's `timeout` field shares. Registered by
`corral.worker.executors.builtin_registry`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.worker.handlers import Job

__all__ = ["MAX_TIMEOUT_S", "Sleep", "elapsed_ms", "noop", "sleep"]

MAX_TIMEOUT_S = 60.0  # the most any check may wait (seconds); the job timeout also applies


class Sleep(BaseModel):
    """Payload of a `sleep` job: hold a slot for a while (a stand-in for real
    work in demos, drain tests and the scaling benchmark)."""

    model_config = ConfigDict(extra="forbid")

    seconds: float = Field(default=1.0, ge=0, le=86_400, description="how long to sleep")


async def noop(job: Job[Any]) -> None:
    """Does nothing; used for benchmarks and smoke tests."""
    return None


async def sleep(job: Job[Sleep]) -> dict[str, Any]:
    """Sleeps `seconds` and says how long it slept (and on which attempt)."""
    started = time.monotonic()
    await asyncio.sleep(job.payload.seconds)
    return {"slept_s": round(time.monotonic() - started, 3), "attempt": job.attempt}


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a `time.perf_counter()` reading)."""
    return round((time.perf_counter() - started) * 1000, 2)

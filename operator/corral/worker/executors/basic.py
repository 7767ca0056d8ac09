"""The kinds that touch no network (`noop`, `sleep`), and what every
network executor shares: the limit of its `timeout` field, its latency
figure and, for those on plain sockets (`tcp`, `dns`), `socket_errors`.
Registered by `corral.worker.executors.builtin_registry`."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from corral.worker.handlers import HandlerError, Job

if TYPE_CHECKING:
    from corral.worker.executors.payloads import Sleep

__all__ = ["MAX_TIMEOUT_S", "elapsed_ms", "noop", "sleep", "socket_errors"]

MAX_TIMEOUT_S = 60.0  # the most any check may wait (seconds); the job timeout also applies


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


@contextlib.asynccontextmanager
async def socket_errors(where: str, timeout: float, awaited: str) -> AsyncIterator[None]:
    """Run a socket exchange within `timeout` seconds; running out becomes a
    `HandlerError` "WHERE: no AWAITED within Ns", an `OSError` one naming
    `where` and the system's reason."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise HandlerError(f"{where}: no {awaited} within {timeout}s") from None
    except OSError as exc:
        raise HandlerError(f"{where}: {exc.strerror or exc}") from None

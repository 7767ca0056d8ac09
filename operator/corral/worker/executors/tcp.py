"""The `tcp` executor: can the worker open a connection to host:port? The
target is resolved and judged once by the executor guard, then connected to
by address (`connect_judged`, also used by nothing that resolves again)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from corral.worker.egress import Guard
from corral.worker.executors.basic import elapsed_ms, socket_errors
from corral.worker.handlers import Job

if TYPE_CHECKING:
    from corral.worker.executors.payloads import TcpCheck

__all__ = ["connect_judged", "tcp_executor"]


def tcp_executor(guard: Guard) -> Any:
    """The `tcp` handler, bound to the worker's guard."""

    async def tcp(job: Job[TcpCheck]) -> dict[str, Any]:
        check = job.payload
        started = time.perf_counter()
        async with socket_errors(f"tcp {check.host}:{check.port}", check.timeout, "connection"):
            addresses = await guard.resolve(check.host, check.port)
            _, writer = await connect_judged(addresses, check.port)
            writer.close()
        return {"latency_ms": elapsed_ms(started)}

    return tcp


async def connect_judged(
    addresses: list[tuple[int, Any]], port: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first of the judged addresses that answers. Each is an
    address literal: nothing is resolved again."""
    last: OSError = OSError(f"no address to connect to on port {port}")
    for _, address in addresses:
        try:
            return await asyncio.open_connection(str(address), port)
        except OSError as exc:
            last = exc
    raise last

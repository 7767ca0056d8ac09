"""The `tcp` executor: can the worker open a connection to host:port? The
target is resolved and judged once by the executor guard, then connected to
by address (`connect_judged`, also used by nothing that resolves again)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from corral.worker.egress import Guard
from corral.worker.executors.basic import MAX_TIMEOUT_S, elapsed_ms, socket_errors
from corral.worker.handlers import Job

__all__ = ["TcpCheck", "connect_judged", "tcp_executor"]


class TcpCheck(BaseModel):
    """Payload of a `tcp` job: can we connect?"""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1, max_length=253, pattern=r"^[^\x00-\x20\x7f]+$")
    port: int = Field(ge=1, le=65535)
    timeout: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, description="seconds")


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

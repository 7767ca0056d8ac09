"""AsyncQueuePool: AsyncQueue calls on a pool of connections (psycopg_pool),
for a long-running asyncio server that serves many short requests: the
dashboard (`corral.dashboard`), where a connection per request would cost
more than the queries it runs.

Connections get the same settings as `AsyncQueue.connect` (autocommit, the
keepalives and timeouts of `_connect.hardened`) and are checked before each
use, so a server restart costs one failed check, not a failed page. When no
connection comes within `timeout`, the error says why in the words
`AsyncQueue.connect` would use (a direct connection attempt names the cause:
refused, wrong password, unknown database), never with the password.

Not imported by `corral.queue` itself (`from corral.queue.pool import
AsyncQueuePool`), so the worker's start-up never loads psycopg_pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg_pool import AsyncConnectionPool, PoolTimeout

from corral.queue._connect import CONNECT_TIMEOUT_S, aconnect, hardened
from corral.queue.client_async import AsyncQueue
from corral.queue.dsn import check_dsn
from corral.queue.errors import ConnectionLost

__all__ = ["AsyncQueuePool"]


class AsyncQueuePool:
    """`async with pool.queue() as q:` an AsyncQueue on a pooled connection."""

    def __init__(
        self, dsn: str, *, min_size: int = 1, max_size: int = 8, timeout_s: float = 5.0
    ) -> None:
        check_dsn(dsn)
        self._dsn = dsn
        self._timeout_s = timeout_s
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": CONNECT_TIMEOUT_S,
            **hardened(dsn),
        }
        self._pool = AsyncConnectionPool(
            dsn,
            kwargs=kwargs,
            min_size=min_size,
            max_size=max_size,
            open=False,
            check=AsyncConnectionPool.check_connection,
            timeout=timeout_s,
            name="corral",
        )

    async def open(self) -> None:
        """Start the pool (connections are made in the background)."""
        await self._pool.open(wait=False)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def queue(self) -> AsyncIterator[AsyncQueue]:
        try:
            async with self._pool.connection() as conn:
                yield AsyncQueue(conn)
        except PoolTimeout:
            # Say why: a direct attempt raises the same clear error as connect().
            direct = await aconnect(self._dsn)
            await direct.close()
            raise ConnectionLost(
                f"no database connection was free within {self._timeout_s:g} s "
                "(every pooled connection is busy): try again"
            ) from None

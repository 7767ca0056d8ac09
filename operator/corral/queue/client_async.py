"""AsyncQueue: `corral.queue.client.Queue` on asyncio, for the worker runtime
(its whole hot path) and the operator (kopf runs on asyncio: depth, tokens,
drain, remove).

Each method is the same operation of `corral.queue._operations` as Queue's
method of the same name (same signature and docstring); only the executor
(`_run`) awaits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from corral.queue import _operations as op
from corral.queue import _sql
from corral.queue._connect import aconnect
from corral.queue._methods import ClientMethods, client_of
from corral.queue._params import NOTIFY_CHANNEL
from corral.queue._rows import reload
from corral.queue.errors import log_notices, translated

__all__ = ["AsyncQueue"]

P = ParamSpec("P")
T = TypeVar("T")


def _method(
    operation: Callable[P, op.Operation[T]],
) -> Callable[Concatenate[AsyncQueue, P], Coroutine[Any, Any, T]]:
    """`operation` as an AsyncQueue coroutine method: same name, signature and docstring."""
    transaction = operation in op.TRANSACTIONAL

    async def method(self: AsyncQueue, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(operation(*args, **kwargs), transaction=transaction)

    functools.update_wrapper(method, operation)
    method.__qualname__ = f"AsyncQueue.{operation.__name__}"
    return method


class AsyncQueue(ClientMethods, bind=_method):
    """asyncio access for the worker runtime (Queue's hot path) and the operator
    (depth, tokens, drain, remove).

    Use one AsyncQueue for claims/completions and a separate one for
    `listen`/`wait_for_jobs` (a connection waiting for notifications is busy).
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if isinstance(conn, str | bytes):
            raise TypeError(
                "AsyncQueue(conn) wraps an open psycopg AsyncConnection, not a URL; "
                "open one from a URL with await corral.connect_async(url) "
                "(or AsyncQueue.connect(url))"
            )
        self.conn = conn
        log_notices(conn)

    @classmethod
    async def connect(cls, dsn: str, *, session: Mapping[str, str] | None = None) -> Self:
        """Open an autocommit connection: every call is durable when it returns.
        `session`: server settings for it (`{"TimeZone": "UTC"}`), unless the
        DSN's `options` set them."""
        return cls(await aconnect(dsn, session=session))

    @classmethod
    def of(cls, target: AsyncQueue | psycopg.AsyncConnection[Any]) -> AsyncQueue:
        """`target` itself when it is an AsyncQueue, else one on that connection
        (calls run inside the caller's open transaction, if any)."""
        how = "await corral.connect_async(url)"
        return client_of(AsyncQueue, target, psycopg.AsyncConnection, how, cls)

    async def close(self) -> None:
        await self.conn.close()

    def decode_json_with(self, loads: Callable[[str | bytes], Any]) -> None:
        """Decode json/jsonb values read on this connection with `loads` (the
        worker gives its claim connection a cheaper decoder for payloads)."""
        set_json_loads(loads, self.conn)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _execute(self, stmt: op.Statement) -> Any:
        with translated():
            cur = await self.conn.execute(
                _sql.query(stmt.name), stmt.params, prepare=stmt.prepare, binary=stmt.binary
            )
            rows = None
            if stmt.fetch is not op.Fetch.ROWCOUNT:
                try:
                    rows = await cur.fetchall()
                except psycopg.DataError:
                    if not stmt.lenient:
                        raise
                    rows = reload(cur)  # a value Python cannot load: the rest still count
            return op.result(stmt, rows, cur.rowcount)

    async def _drive(self, operation: op.Operation[T]) -> T:
        try:
            stmt = next(operation)
            while True:
                stmt = operation.send(await self._execute(stmt))
        except StopIteration as done:
            result: T = done.value
            return result

    async def _run(self, operation: op.Operation[T], *, transaction: bool = False) -> T:
        if not transaction:
            return await self._drive(operation)
        async with self.conn.transaction():
            return await self._drive(operation)

    async def listen(self) -> None:
        """LISTEN on the wake-up channel (payload: the queue name, or * for all)."""
        await self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))

    async def wait_for_jobs(self, timeout_s: float) -> set[str]:
        """Wait up to `timeout_s` seconds for wake-ups; return the queues named
        (empty on timeout: poll anyway, a notification can be lost)."""
        queues: set[str] = set()
        async for note in self.conn.notifies(timeout=timeout_s, stop_after=1):
            queues.add(note.payload)
        return queues

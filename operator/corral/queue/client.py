"""Queue: every PostgreSQL call corral makes about jobs, queues, workers and
enrollment tokens, on a synchronous connection (`AsyncQueue`, beside it in
`corral.queue.client_async`, is the same on asyncio).

Callers: the admin CLI (`corral jobs|dispatch|stats|tokens|workers`), the
operator (depth, drain, tokens), tests and user code that enqueues; the
worker runtime uses AsyncQueue.

Each client wraps one psycopg connection. On an autocommit connection (what
`connect` gives) every call is its own transaction and is durable when it
returns; on a connection inside the caller's transaction an enqueue is part
of that transaction and lands (or not) with it. Statements are named blocks
in `sql/queries.sql`; the hot ones call the versioned `corral_*_v1` database
functions and run as prepared statements.

Both clients share one body: each method is an operation of
`corral.queue._operations` (its signature, docstring, statements, parameters
and row handling) run by its client's executor, `_run`, the only code that
differs between sync and asyncio.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

import psycopg
from psycopg import sql

from corral.queue import _fleet as fleet
from corral.queue import _operations as op
from corral.queue import _registry as reg
from corral.queue import _sql
from corral.queue._connect import connect
from corral.queue._methods import ClientMethods, client_of
from corral.queue._params import (
    ALL_QUEUES,
    DEFAULT_DEPTH_CAP,
    DEFAULT_LEASE_S,
    NOTIFY_CHANNEL,
    hash_secret,
)
from corral.queue._rows import reload
from corral.queue.errors import log_notices, translated

# The constants were always importable from here; the package re-exports them.
__all__ = [
    "ALL_QUEUES",
    "DEFAULT_DEPTH_CAP",
    "DEFAULT_LEASE_S",
    "NOTIFY_CHANNEL",
    "Queue",
    "hash_secret",
]

P = ParamSpec("P")
T = TypeVar("T")


def _method(operation: Callable[P, op.Operation[T]]) -> Callable[Concatenate[Queue, P], T]:
    """`operation` as a Queue method: same name, signature and docstring."""
    transaction = operation in op.TRANSACTIONAL

    def method(self: Queue, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(operation(*args, **kwargs), transaction=transaction)

    functools.update_wrapper(method, operation)
    method.__qualname__ = f"Queue.{operation.__name__}"
    return method


class Queue(ClientMethods, bind=_method):
    """Synchronous access (CLI, operator, tests, user code that enqueues)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        if isinstance(conn, str | bytes):
            # The URL would otherwise fail later as "'str' object has no attribute 'execute'".
            raise TypeError(
                "Queue(conn) wraps an open psycopg connection, not a URL; "
                "open one from a URL with corral.connect(url) (or Queue.connect(url))"
            )
        self.conn = conn
        log_notices(conn)

    @classmethod
    def connect(cls, dsn: str) -> Self:
        """Open an autocommit connection: every call is durable when it returns."""
        return cls(connect(dsn))

    @classmethod
    def of(cls, target: Queue | psycopg.Connection[Any]) -> Queue:
        """`target` itself when it is a Queue, else a Queue on that connection:
        calls then run inside whatever transaction the caller has open on it
        (`handler.defer(conn, ...)` enqueues with the caller's own writes)."""
        return client_of(Queue, target, psycopg.Connection, "corral.connect(url)", cls)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, stmt: op.Statement) -> Any:
        with translated():
            cur = self.conn.execute(
                _sql.query(stmt.name), stmt.params, prepare=stmt.prepare, binary=stmt.binary
            )
            rows = None
            if stmt.fetch is not op.Fetch.ROWCOUNT:
                try:
                    rows = cur.fetchall()
                except psycopg.DataError:
                    if not stmt.lenient:
                        raise
                    rows = reload(cur)  # a value Python cannot load: the rest still count
            return op.result(stmt, rows, cur.rowcount)

    def _drive(self, operation: op.Operation[T]) -> T:
        try:
            stmt = next(operation)
            while True:
                stmt = operation.send(self._execute(stmt))
        except StopIteration as done:
            result: T = done.value
            return result

    def _run(self, operation: op.Operation[T], *, transaction: bool = False) -> T:
        if not transaction:
            return self._drive(operation)
        with self.conn.transaction():
            return self._drive(operation)

    # What only Queue offers; the calls both clients have are listed once in
    # `_methods.ClientMethods`. Jobs and queues (the admin CLI).
    promote_due = _method(op.promote_due)
    list_jobs = _method(op.list_jobs)
    set_queue_defaults = _method(op.set_queue_defaults)
    list_queues = _method(op.list_queues)
    # Enrollment tokens.
    list_tokens = _method(reg.list_tokens)
    get_token = _method(reg.get_token)
    revoke_token = _method(reg.revoke_token)
    remove_token_workers = _method(reg.remove_token_workers)
    # The operator's check of the URL it hands to workers.
    worker_role_rights = _method(reg.worker_role_rights)
    # The operator's autoscaler.
    backlog = _method(fleet.backlog)
    flow = _method(fleet.flow)
    pool_workers = _method(fleet.pool_workers)
    scaler_drain = _method(fleet.scaler_drain)
    scaler_undrain = _method(fleet.scaler_undrain)
    interruptions = _method(fleet.interruptions)

    def listen(self) -> None:
        """LISTEN for wake-ups (the operator's autoscaler; needs its own connection)."""
        with translated():
            self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))

    def wait_for_jobs(self, timeout_s: float) -> set[str]:
        """Wait up to `timeout_s` for wake-ups; the queues named (empty on
        timeout). Notifications already waiting are drained in the same call."""
        queues: set[str] = set()
        with translated():
            for note in self.conn.notifies(timeout=timeout_s, stop_after=1):
                queues.add(note.payload)
            for note in self.conn.notifies(timeout=0):
                queues.add(note.payload)
        return queues

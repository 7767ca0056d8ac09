"""AsyncQueue: `corral.queue.client.Queue` on asyncio, for the worker runtime
(its whole hot path) and the operator (kopf runs on asyncio: depth, tokens,
drain, remove).

Each method runs the same operation of `corral.queue._operations` as Queue's
method of the same name; only the executor (`_run`) awaits.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self, TypeVar, Unpack

import psycopg
from psycopg import sql
from psycopg.types.json import set_json_loads

from corral.queue import _operations as op
from corral.queue import _sql
from corral.queue._connect import aconnect
from corral.queue._params import DEFAULT_DEPTH_CAP, DEFAULT_LEASE_S, NOTIFY_CHANNEL
from corral.queue.errors import translated
from corral.queue.records import (
    ClaimedJob,
    Depth,
    EnqueueOptions,
    Enrollment,
    Failure,
    JobSpec,
    Leased,
    NewToken,
    Worker,
    WorkerState,
)

__all__ = ["AsyncQueue"]

T = TypeVar("T")


class AsyncQueue:
    """asyncio access for the worker runtime (Queue's hot path) and the operator
    (depth, tokens, drain, remove). Each method does what Queue's of the same
    name does (the same operation runs underneath).

    Use one AsyncQueue for claims/completions and a separate one for
    `listen`/`wait_for_jobs` (a connection waiting for notifications is busy).
    """

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, dsn: str) -> Self:
        return cls(await aconnect(dsn))

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
            if stmt.binary:
                cur = self.conn.cursor(binary=True)
                await cur.execute(_sql.query(stmt.name), stmt.params, prepare=stmt.prepare)
            else:
                cur = await self.conn.execute(
                    _sql.query(stmt.name), stmt.params, prepare=stmt.prepare
                )
            if stmt.fetch is op.Fetch.ALL:
                return await cur.fetchall()
            if stmt.fetch is op.Fetch.ONE:
                row = await cur.fetchone()
                return None if row is None else row[0]
            return cur.rowcount

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

    async def enqueue(
        self, kind: str, payload: Any = None, **options: Unpack[EnqueueOptions]
    ) -> int:
        """See Queue.enqueue (the same keyword options)."""
        return (await self.enqueue_many([JobSpec(kind, payload, **options)]))[0]

    async def enqueue_many(self, specs: Iterable[JobSpec]) -> list[int]:
        return await self._run(op.enqueue_many(list(specs)))

    async def claim(
        self,
        worker_id: int,
        credential: str,
        queues: Sequence[str],
        *,
        batch: int = 100,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> list[ClaimedJob]:
        return await self._run(op.claim(worker_id, credential, queues, batch, lease_s))

    async def complete_many(
        self, jobs: Iterable[Leased], results: Mapping[int, Any] | None = None
    ) -> list[int]:
        return await self._run(op.complete_many(jobs, results))

    async def fail_many(self, failures: Iterable[Failure]) -> list[int]:
        return await self._run(op.fail_many(failures))

    async def release_many(self, jobs: Iterable[Leased]) -> list[int]:
        return await self._run(op.release_many(jobs))

    async def heartbeat(
        self, worker_id: int, credential: str, *, in_flight: int, lease_s: float = DEFAULT_LEASE_S
    ) -> WorkerState:
        return await self._run(op.heartbeat(worker_id, credential, in_flight, lease_s))

    async def reap(self, limit: int = 1000) -> int | None:
        return await self._run(op.reap(limit))

    async def purge_finished_batch(self, older_than_s: float, *, batch: int = 1000) -> int | None:
        return await self._run(op.purge_finished_batch(older_than_s, batch))

    async def purge_finished(self, older_than_s: float, *, batch: int = 10_000) -> int:
        return await self._run(op.purge_finished(older_than_s, batch))

    async def enroll(
        self,
        token: str,
        *,
        name: str,
        queues: Sequence[str],
        concurrency: int,
        version: str | None = None,
    ) -> Enrollment:
        operation = op.enroll(token, name, queues, concurrency, version)
        return await self._run(operation, transaction=True)

    async def authenticate(
        self,
        worker_id: int,
        credential: str,
        *,
        name: str | None = None,
        queues: Sequence[str] | None = None,
        concurrency: int | None = None,
        version: str | None = None,
    ) -> WorkerState:
        about = op.about(name, queues, concurrency, version)
        return await self._run(op.authenticate(worker_id, credential, about), transaction=True)

    async def drain_self(self, worker_id: int, credential: str) -> WorkerState:
        return await self._run(op.drain_self(worker_id, credential))

    async def mark_drained(self, worker_id: int, credential: str) -> WorkerState:
        return await self._run(op.mark_drained(worker_id, credential))

    # -- for the operator (kopf runs on asyncio) -------------------------------

    async def depth(
        self, queues: Sequence[str], region: str | None = None, *, cap: int = DEFAULT_DEPTH_CAP
    ) -> Depth:
        return await self._run(op.depth(queues, region, cap))

    async def create_token(
        self, region: str, *, pool: str | None = None, ttl_s: float = 900, uses: int = 1
    ) -> NewToken:
        return await self._run(op.create_token(region, pool, ttl_s, uses))

    async def get_worker(self, worker_id: int) -> Worker:
        return await self._run(op.get_worker(worker_id))

    async def list_workers(self, *, include_removed: bool = False) -> list[Worker]:
        return await self._run(op.list_workers(include_removed))

    async def request_drain(self, worker_id: int) -> Worker:
        return await self._run(op.request_drain(worker_id))

    async def remove_worker(self, worker_id: int) -> Worker:
        return await self._run(op.remove_worker(worker_id))

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

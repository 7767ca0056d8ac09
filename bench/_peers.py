"""The peer queues' side of `make bench-queue`: runs inside the peers' own
virtualenv (~/.cache/corral/bench-venv), never imports corral.

    python -m bench._peers pgqueuer-enqueue DSN N [KIND]   (KIND: noop, or hold)
    python -m bench._peers pgqueuer-trickle DSN N RATE   (N single enqueues, RATE a second)
    python -m bench._peers procrastinate-enqueue DSN N
    pgq run bench._peers:pgqueuer_factory --batch-size 100     (PGDSN set)
    pgq run bench._peers:pgqueuer_hold_factory                 (PGDSN set)
    procrastinate --app bench._peers.procrastinate_app worker  (PROCRASTINATE_DSN set)

Each defines a no-op job, as corral's `noop` kind, so the three queues do
the same (no) work per job. PgQueuer's `hold` job (its own factory) sleeps
(BENCH_HOLD_S, default 600 s), as corral's `sleep` kind, for `make
bench-leases`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

# -- pgqueuer -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def _pgqueuer(kind: str, handler: Callable[[Any], Awaitable[None]]) -> AsyncIterator[Any]:
    """PgQueuer on PGDSN with one entrypoint, `kind`, running `handler`."""
    import asyncpg
    from pgqueuer import PgQueuer
    from pgqueuer.db import AsyncpgDriver

    connection = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))
    pgq.entrypoint(kind)(handler)
    try:
        yield pgq
    finally:
        await connection.close()


async def _noop(job: Any) -> None:
    return None


async def _hold(job: Any) -> None:
    await asyncio.sleep(float(os.environ.get("BENCH_HOLD_S", "600")))


def pgqueuer_factory() -> contextlib.AbstractAsyncContextManager[Any]:
    """The drain benchmarks' PgQueuer: the `noop` entrypoint alone."""
    return _pgqueuer("noop", _noop)


def pgqueuer_hold_factory() -> contextlib.AbstractAsyncContextManager[Any]:
    """`make bench-leases`' PgQueuer: the `hold` entrypoint alone (the drain
    benchmarks' factory keeps its one entrypoint, as measured before)."""
    return _pgqueuer("hold", _hold)


async def _pgqueuer_enqueue(dsn: str, n: int, kind: str = "noop") -> float:
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(connection))
    started = time.perf_counter()
    chunk = 10_000
    for i in range(0, n, chunk):
        size = min(chunk, n - i)
        await queries.enqueue([kind] * size, [None] * size, [0] * size)
    took = time.perf_counter() - started
    await connection.close()
    return took


async def _pgqueuer_trickle(dsn: str, n: int, rate: float) -> float:
    """`n` enqueue calls of one job each, paced at `rate` a second."""
    import asyncpg
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(dsn)
    queries = Queries(AsyncpgDriver(connection))
    started = time.perf_counter()
    for sent in range(n):
        pause = started + sent / rate - time.perf_counter()
        if pause > 0:
            await asyncio.sleep(pause)
        await queries.enqueue("noop", None, 0)
    took = time.perf_counter() - started
    await connection.close()
    return took


# -- procrastinate ------------------------------------------------------------


def _procrastinate() -> Any:
    import procrastinate

    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=os.environ.get("PROCRASTINATE_DSN", ""))
    )

    @app.task(name="noop")
    def noop() -> None:
        return None

    return app


procrastinate_app = (
    _procrastinate()
    if "procrastinate" in " ".join(sys.argv) or os.environ.get("PROCRASTINATE_DSN")
    else None
)


async def _procrastinate_enqueue(dsn: str, n: int) -> float:
    os.environ["PROCRASTINATE_DSN"] = dsn
    app = _procrastinate()
    async with app.open_async():
        task = app.tasks["noop"]
        started = time.perf_counter()
        chunk = 5_000
        for i in range(0, n, chunk):
            await task.batch_defer_async(*({} for _ in range(min(chunk, n - i))))
        return time.perf_counter() - started


def main(argv: list[str]) -> None:
    what, dsn, n = argv[0], argv[1], int(argv[2])
    if what == "pgqueuer-enqueue":
        took = asyncio.run(_pgqueuer_enqueue(dsn, n, *argv[3:4]))
    elif what == "pgqueuer-trickle":
        took = asyncio.run(_pgqueuer_trickle(dsn, n, float(argv[3])))
    elif what == "procrastinate-enqueue":
        took = asyncio.run(_procrastinate_enqueue(dsn, n))
    else:
        raise SystemExit(f"unknown command {what!r}")
    print(f"{took:.6f}")


if __name__ == "__main__":
    main(sys.argv[1:])

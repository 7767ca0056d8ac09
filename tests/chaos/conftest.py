"""Fixtures for the chaos drills: a PostgreSQL server of the drill's own (the
drills restart, freeze and cut it), a migrated database on it, and a fleet of
real `corral worker` processes stopped after the drill."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from corral import queue
from corral_local.postgres import PostgresServer
from tests._postgres import restartable_server
from tests.chaos._audit import audit
from tests.integration._workers import WorkerProcess, mint_token


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    """A server of the drill's own, which it restarts, freezes and cuts."""
    with restartable_server("corral-chaos-pg-") as pg:
        yield pg


@pytest.fixture
def url(server: PostgresServer) -> str:
    """The queue's database on the drill's server, migrated."""
    dsn = server.create_database("corral")
    queue.migrate(dsn)
    return dsn


class Fleet:
    """Real worker processes on one queue; `alive()` counts those still running."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.workers: list[WorkerProcess] = []

    def start(self, dsn: str, count: int, *args: str, queues: str = "chaos") -> list[WorkerProcess]:
        started = []
        for _ in range(count):
            name = f"w{len(self.workers) + 1}"
            w = WorkerProcess(
                dsn, self.tmp_path / name, name=name, token=mint_token(dsn), queues=queues,
                args=args,
            )  # fmt: skip
            self.workers.append(w)
            started.append(w)
        for w in started:
            w.wait_ready(60)
        return started

    def alive(self) -> int:
        return sum(w.proc.poll() is None for w in self.workers)

    def output(self) -> str:
        return "\n".join(f"--- {w.name} ---\n{w.output()}" for w in self.workers)

    def audit(
        self, drill: str, injected: str, dsn: str, ids: list[int], *, dead: Iterable[int] = ()
    ) -> dict[str, int]:
        """`_audit.audit` of a drill this fleet ran: every worker it started
        should still be alive, and its output shows when the audit fails."""
        return audit(
            drill, injected, dsn, ids,
            alive=self.alive(), fleet_size=len(self.workers), output=self.output(), dead=dead,
        )  # fmt: skip

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    f = Fleet(tmp_path)
    yield f
    f.stop()

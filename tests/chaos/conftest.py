"""Fixtures for the chaos drills: a PostgreSQL server of the drill's own (the
drills restart, freeze and cut it), a migrated database on it, and a fleet of
real `corral worker` processes stopped after the drill."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import psycopg
import pytest

from corral import queue
from corral_local.postgres import PostgresServer
from tests._postgres import restartable_server
from tests.chaos._audit import audit, finished_states
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
    """Real worker processes on one queue of the drill's database `dsn`, and
    the jobs the drill gives them (`ids`, which the audit checks);
    `alive()` counts the workers still running, `done()` the jobs finished."""

    def __init__(self, tmp_path: Path, dsn: str) -> None:
        self.tmp_path, self.dsn = tmp_path, dsn
        self.workers: list[WorkerProcess] = []
        self.ids: list[int] = []

    def enqueue(self, count: int, *, sleep_s: float = 0.01) -> None:
        """`count` more `hold` jobs on the fleet's queue, `sleep_s` each."""
        with queue.Queue.connect(self.dsn) as q:
            for start in range(0, count, 1000):
                self.ids += q.enqueue_many(
                    [
                        queue.JobSpec("hold", {"sleep_s": sleep_s}, queue="chaos")
                        for _ in range(min(1000, count - start))
                    ]
                )

    def done(self) -> int:
        return sum(finished_states(self.dsn, self.ids).values())

    def running(self) -> int:
        """The fleet's jobs held by a worker now: a fault that found none
        would test nothing of what workers do with the jobs they hold."""
        with psycopg.connect(self.dsn) as conn:
            row = conn.execute(
                "SELECT count(*) FROM corral_jobs WHERE id = ANY(%s) AND state = 'running'",
                (self.ids,),
            ).fetchone()
        return int(row[0]) if row else 0

    def start(
        self, count: int, *args: str, queues: str = "chaos", dsn: str = ""
    ) -> list[WorkerProcess]:
        """`count` more workers on the fleet's database, reaching it (and
        enrolled) through `dsn`: the fleet's URL unless a drill gives another."""
        url = dsn or self.dsn
        started = []
        for _ in range(count):
            name = f"w{len(self.workers) + 1}"
            w = WorkerProcess(
                url, self.tmp_path / name, name=name, token=mint_token(url), queues=queues,
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

    def audit(self, drill: str, injected: str, *, dead: Iterable[int] = ()) -> dict[str, int]:
        """`_audit.audit` of a drill this fleet ran, over the jobs it was
        given: every worker it started should still be alive, and its output
        shows when the audit fails."""
        return audit(
            drill, injected, self.dsn, self.ids,
            alive=self.alive(), fleet_size=len(self.workers), output=self.output(), dead=dead,
        )  # fmt: skip

    def stop(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture
def fleet(tmp_path: Path, url: str) -> Iterator[Fleet]:
    f = Fleet(tmp_path, url)
    yield f
    f.stop()

"""Integration tier: real PostgreSQL, no Kubernetes.

The fixtures `pg_server`, `database_url` and `empty_database_url` come from
`tests/_postgres.py` (loaded by the top-level conftest); `seeded` and `url`
(the dashboard serving a seeded queue) from `tests/_dashboard.py`, shared
with the browser tier.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral.queue import Queue
from tests._dashboard import seeded, url  # noqa: F401 (fixtures, shared with tests/browser)
from tests.integration._clients import BlockingAsyncQueue, Client, Connect
from tests.integration._workers import WorkerProcess


@pytest.fixture(params=["Queue", "AsyncQueue"])
def connect(request: pytest.FixtureRequest) -> Connect:
    """`Queue.connect`, or the same calls through AsyncQueue: the conformance
    suite (claims, leases, registry, tokens) runs once per client."""
    return Queue.connect if request.param == "Queue" else BlockingAsyncQueue


@pytest.fixture
def queue(connect: Connect, database_url: str) -> Iterator[Client]:
    """A client of each kind (see `connect`) on the test's database."""
    with connect(database_url) as client:
        yield client


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """The `corral worker` processes a test started (it appends them), killed
    at its end."""
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()

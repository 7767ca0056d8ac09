"""Integration tier: real PostgreSQL, no Kubernetes.

The fixtures `pg_server`, `database_url` and `empty_database_url` come from
`tests/_postgres.py` (loaded by the top-level conftest).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from corral.queue import Queue
from tests.integration._clients import BlockingAsyncQueue, Client


@pytest.fixture(params=["Queue", "AsyncQueue"])
def connect(request: pytest.FixtureRequest) -> Callable[[str], Any]:
    """`Queue.connect`, or the same calls through AsyncQueue: the conformance
    suite (claims, leases, registry, tokens) runs once per client."""
    return Queue.connect if request.param == "Queue" else BlockingAsyncQueue


@pytest.fixture
def queue(connect: Callable[[str], Any], database_url: str) -> Iterator[Client]:
    """A client of each kind (see `connect`) on the test's database."""
    with connect(database_url) as client:
        yield client

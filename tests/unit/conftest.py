"""Unit tier guard: no network, no cluster, no database.

Any attempt to open or connect a socket (other than the AF_UNIX socketpairs
asyncio uses internally) fails the test with a message saying which tier the
test belongs in.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

_MESSAGE = (
    "unit tests must not use the network (tried {what} {args!r}); "
    "move this test to tests/integration (Postgres) or tests/e2e (Kubernetes)"
)


class _GuardedSocket(socket.socket):
    def connect(self, *args: Any) -> None:
        raise RuntimeError(_MESSAGE.format(what="connect", args=args))

    def connect_ex(self, *args: Any) -> int:
        raise RuntimeError(_MESSAGE.format(what="connect_ex", args=args))

    def bind(self, *args: Any) -> None:
        if self.family != socket.AF_UNIX:
            raise RuntimeError(_MESSAGE.format(what="bind", args=args))
        super().bind(*args)


def _guarded_create_connection(*args: Any, **kwargs: Any) -> socket.socket:
    raise RuntimeError(_MESSAGE.format(what="create_connection", args=args))


def _guarded_getaddrinfo(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(_MESSAGE.format(what="getaddrinfo", args=args))


def _guarded_db_connect(*args: Any, **kwargs: Any) -> Any:
    # libpq opens its sockets in C, below the Python socket guard.
    raise RuntimeError(_MESSAGE.format(what="a PostgreSQL connection", args=args))


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import psycopg

    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(_guarded_db_connect))
    monkeypatch.setattr(psycopg.AsyncConnection, "connect", classmethod(_guarded_db_connect))
    monkeypatch.setattr(psycopg, "connect", _guarded_db_connect)
    monkeypatch.setattr(socket, "socket", _GuardedSocket)
    monkeypatch.setattr(socket, "create_connection", _guarded_create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)
    yield

"""`open_session` opens the worker's four connections at once (the first claim
waits for them), in the order the session expects them (claim, completion,
control, LISTEN); when one fails, the ones that opened are closed and the
failure raised is the first in that order, as when they opened one by one.

The connections are stand-ins (no database in the unit tier)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.queue import AsyncQueue, ConnectionLost
from corral.worker import _queue
from corral.worker.config import WorkerSettings


class _Conn:
    def __init__(self, n: int) -> None:
        self.n = n
        self.closed = False
        self.loads: Any = None
        self.session: dict[str, str] | None = None

    async def close(self) -> None:
        self.closed = True

    def decode_json_with(self, loads: Any) -> None:
        self.loads = loads


def _fake_connect(
    monkeypatch: pytest.MonkeyPatch, fail: dict[int, Exception]
) -> tuple[list[_Conn], list[int]]:
    opened: list[_Conn] = []
    waiting: list[int] = []  # how many connects were under way together, at each start

    async def connect(cls: Any, dsn: str, *, session: dict[str, str] | None = None) -> _Conn:
        n = len(opened) + len(waiting)
        waiting.append(n)
        concurrent.append(len(waiting))
        await asyncio.sleep(0)  # a round trip: the others start meanwhile
        waiting.remove(n)
        if n in fail:
            raise fail[n]
        conn = _Conn(n)
        conn.session = session
        opened.append(conn)
        return conn

    concurrent: list[int] = []
    monkeypatch.setattr(AsyncQueue, "connect", classmethod(connect))  # the class _queue uses
    return opened, concurrent


def _settings() -> WorkerSettings:
    return WorkerSettings(database_url="postgresql://corral@db.example/corral", queues=["q"])


def test_the_four_connections_open_together_in_the_sessions_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened, concurrent = _fake_connect(monkeypatch, fail={})
    session = asyncio.run(_queue.open_session(_settings()))
    assert max(concurrent) == 4  # all four were under way at once
    # The claim connection (the first) got the worker's cheap payload decoder.
    assert [c.loads is not None for c in sorted(opened, key=lambda c: c.n)] == [
        True,
        False,
        False,
        False,
    ]
    assert session._claimer.queue.n == 0  # type: ignore[attr-defined]
    # Only the claim connection's session runs in UTC (its rows' timestamps).
    assert [c.session for c in sorted(opened, key=lambda c: c.n)] == [
        {"TimeZone": "UTC"},
        None,
        None,
        None,
    ]
    assert not any(c.closed for c in opened)


def test_a_failed_connection_closes_the_others_and_raises_the_first_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    opened, _ = _fake_connect(
        monkeypatch,
        fail={1: ConnectionLost("too many clients (second)"), 3: ConnectionLost("(fourth)")},
    )
    with pytest.raises(ConnectionLost, match="second"):
        asyncio.run(_queue.open_session(_settings()))
    assert sorted(c.n for c in opened) == [0, 2]
    assert all(c.closed for c in opened)

"""`open_session` opens the claim connection only (the worker's enrollment
and first claim run on it); the completion, control and LISTEN connections
open when a call first needs one, or all at `open_connections()` (once the
first claim is sent). Callers share one opening, a failed opening is raised
as ConnectionLost and tried again by the next call, and closing the session
closes or cancels them all.

The connections are stand-ins (no database in the unit tier)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.queue import AsyncQueue, ConnectionLost
from corral.worker import _queue
from corral.worker.config import WorkerSettings


class _Conn:
    """A stand-in AsyncQueue (and its psycopg connection: `conn` is itself)."""

    def __init__(self, n: int, session: dict[str, str] | None) -> None:
        self.n = n
        self.session = session
        self.closed = False
        self.loads: Any = None
        self.conn = self
        self.listening = False

    async def close(self) -> None:
        self.closed = True

    def decode_json_with(self, loads: Any) -> None:
        self.loads = loads

    async def listen(self) -> None:
        self.listening = True


class _Server:
    """Counts connects; each after the first waits for `gate` (the first, the
    claim connection, is opened by open_session itself)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.opened: list[_Conn] = []
        self.started = 0
        self.gate = asyncio.Event()
        self.fail: dict[int, Exception] = {}
        server = self

        async def connect(cls: Any, dsn: str, *, session: dict[str, str] | None = None) -> _Conn:
            n = server.started
            server.started += 1
            if n > 0:
                await server.gate.wait()
            if n in server.fail:
                raise server.fail[n]
            conn = _Conn(n, session)
            server.opened.append(conn)
            return conn

        monkeypatch.setattr(AsyncQueue, "connect", classmethod(connect))  # the class _queue uses


def _settings() -> WorkerSettings:
    return WorkerSettings(database_url="postgresql://corral@db.example/corral", queues=["q"])


def test_the_session_opens_once_its_claim_connection_is_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        server = _Server(monkeypatch)
        session = await _queue.open_session(_settings())
        # Only the claim connection is open, and no other is opening.
        assert [c.n for c in server.opened] == [0]
        claimer = server.opened[0]
        assert session._claimer.queue is claimer  # type: ignore[comparison-overlap]
        # It decodes payloads cheaply and reads its rows' timestamps in UTC.
        assert claimer.loads is not None and claimer.session == {"TimeZone": "UTC"}
        await asyncio.sleep(0)
        assert server.started == 1
        session.open_connections()  # the first claim is sent: the three others open
        await asyncio.sleep(0)
        assert server.started == 4
        session.open_connections()  # opening already: nothing more
        await asyncio.sleep(0)
        assert server.started == 4
        server.gate.set()
        completer = await session._completer.ready()
        control = await session._control.ready()
        await session.listen()
        listener = await session._listener.ready()
        assert {id(q) for q in (completer, control, listener)} == {id(c) for c in server.opened[1:]}
        assert [c.session for c in server.opened[1:]] == [None, None, None]
        assert [c.loads for c in server.opened[1:]] == [None, None, None]
        assert listener.listening  # type: ignore[attr-defined]
        await session.close()
        assert all(c.closed for c in server.opened)

    asyncio.run(scenario())


def test_the_claim_connections_failure_is_raised_and_nothing_else_opens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        server = _Server(monkeypatch)
        server.fail[0] = ConnectionLost("too many clients")
        with pytest.raises(ConnectionLost, match="too many clients"):
            await _queue.open_session(_settings())
        await asyncio.sleep(0)
        assert server.started == 1

    asyncio.run(scenario())


def test_callers_share_one_opening_and_a_failed_one_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        server = _Server(monkeypatch)
        server.fail[2] = ConnectionLost("the server is starting up")  # the control connection
        session = await _queue.open_session(_settings())
        session.open_connections()
        await asyncio.sleep(0)
        # Two calls wait for the completion connection's one opening.
        waiting = [asyncio.ensure_future(session._completer.ready()) for _ in range(2)]
        await asyncio.sleep(0)
        server.gate.set()
        first, second = await asyncio.gather(*waiting)
        assert first is second
        # The control connection's opening failed: its caller gets
        # ConnectionLost naming it, and the next call opens it again.
        with pytest.raises(ConnectionLost, match="control connection: the server is starting"):
            await session._control.ready()
        assert server.started == 4
        control = await session._control.ready()
        assert server.started == 5 and control is server.opened[-1]  # type: ignore[comparison-overlap]
        assert await session._control.ready() is control  # open: no new connection
        await session.close()

    asyncio.run(scenario())


def test_a_caller_cancelled_while_waiting_does_not_cancel_the_opening(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        server = _Server(monkeypatch)
        session = await _queue.open_session(_settings())
        impatient = asyncio.ensure_future(session._completer.ready())
        await asyncio.sleep(0)
        impatient.cancel()
        with pytest.raises(asyncio.CancelledError):
            await impatient
        server.gate.set()
        completer = await session._completer.ready()
        assert server.started == 2 and not completer.conn.closed  # one opening, not two
        await session.close()

    asyncio.run(scenario())


def test_closing_the_session_cancels_the_openings_under_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def scenario() -> None:
        server = _Server(monkeypatch)
        session = await _queue.open_session(_settings())
        session.open_connections()
        await asyncio.sleep(0)
        await session.close()  # the worker stops before the others opened
        server.gate.set()
        await asyncio.sleep(0)
        assert [c.n for c in server.opened] == [0]  # none of the three opened later
        assert server.opened[0].closed

    asyncio.run(scenario())


def test_a_call_opens_the_connection_it_needs_and_only_that_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Before the first claim (a schedule declared at start, a heartbeat), a
    # call on the control connection opens it and does not wait for the rest.
    async def scenario() -> None:
        server = _Server(monkeypatch)
        session = await _queue.open_session(_settings())
        server.gate.set()
        control = await session._control.ready()
        assert server.started == 2 and control is server.opened[1]  # type: ignore[comparison-overlap]
        assert session._completer.queue is None and session._listener.queue is None
        session.open_connections()
        await session.listen()
        assert server.started == 4
        assert await session._control.ready() is control
        await session.close()

    asyncio.run(scenario())

"""The listener task (`corral.worker.claims.listen`) wakes the dispatcher
each time LISTEN takes effect: when its connection first listens (it opens
after the first claim is sent) and after a reconnect. A job enqueued before
then sent its NOTIFY to nobody; without the wake-up it would wait for the
dispatcher's next poll.

The session is a stand-in (no database in the unit tier)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.queue import ConnectionLost
from corral.worker import claims


class _Session:
    def __init__(self) -> None:
        self.listening = asyncio.Event()  # set by the test: LISTEN takes effect
        self.waits: asyncio.Queue[Any] = asyncio.Queue()  # what each wait_for_jobs does
        self.reconnects = 0

    async def listen(self) -> None:
        await self.listening.wait()

    async def wait_for_jobs(self, timeout_s: float) -> bool:
        outcome = await self.waits.get()
        if isinstance(outcome, Exception):
            raise outcome
        return bool(outcome)

    async def reconnect_listener(self) -> None:
        self.reconnects += 1


async def _until(condition: Any) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("the listener never got there")


def test_the_dispatcher_is_woken_once_listen_takes_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claims, "_RECONNECT_AFTER_S", 0.0)

    async def scenario() -> None:
        session, wake = _Session(), asyncio.Event()
        task = asyncio.ensure_future(claims.listen(session, wake, "postgresql://db/x"))  # type: ignore[arg-type]
        await asyncio.sleep(0)
        assert not wake.is_set()  # not listening yet
        session.listening.set()
        await _until(wake.is_set)  # listening now: claim what came before
        wake.clear()
        await session.waits.put(False)  # a wait that timed out: no wake-up
        await session.waits.put(True)  # a NOTIFY for one of its queues
        await _until(wake.is_set)
        assert session.waits.empty()
        wake.clear()
        # The connection breaks: once LISTEN is back, the dispatcher is woken.
        await session.waits.put(ConnectionLost("LISTEN connection: server closed"))
        await _until(lambda: session.reconnects == 1)
        await _until(wake.is_set)
        task.cancel()

    asyncio.run(scenario())

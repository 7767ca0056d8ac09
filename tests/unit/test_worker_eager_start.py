"""The worker starts a handler eagerly and only makes a Task when the handler
really waits: the resumed coroutine must behave exactly like an awaited one
(results, exceptions and cancellation all pass through)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.worker.jobs import resume as _resume


def start(coro: Any) -> asyncio.Future[Any] | Any:
    try:
        pending = coro.send(None)
    except StopIteration as stop:
        return ("done at once", stop.value)
    return asyncio.ensure_future(_resume(coro, pending))


def test_a_handler_that_never_waits_finishes_without_a_task() -> None:
    async def instant() -> int:
        return 42

    async def main() -> Any:
        return start(instant())

    assert asyncio.run(main()) == ("done at once", 42)


def test_a_handler_that_waits_is_resumed_and_returns_its_value() -> None:
    async def slow() -> int:
        await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        return 7

    async def main() -> Any:
        return await start(slow())

    assert asyncio.run(main()) == 7


def test_an_exception_after_the_first_wait_reaches_the_awaiter() -> None:
    async def broken() -> None:
        await asyncio.sleep(0.001)
        raise KeyError("boom")

    async def main() -> None:
        await start(broken())

    with pytest.raises(KeyError, match="boom"):
        asyncio.run(main())


def test_cancelling_the_resumed_task_cancels_inside_the_handler() -> None:
    seen: list[str] = []

    async def long() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            seen.append("cancelled inside")
            raise

    async def main() -> None:
        task = start(long())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert seen == ["cancelled inside"]

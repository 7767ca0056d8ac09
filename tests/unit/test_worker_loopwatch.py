"""LoopWatch names the async handler that blocks the worker's event loop."""

from __future__ import annotations

import asyncio
import time

from corral.worker.loopwatch import LoopWatch


async def blocker() -> None:
    time.sleep(0.8)  # blocks the loop: what an async handler must not do


async def polite() -> None:
    await asyncio.sleep(0.6)


def _stalls(handler: object) -> list[str]:
    seen: list[str] = []
    watch = LoopWatch(
        [("resize", blocker), ("wait", polite)],
        threshold_s=0.3,
        period_s=0.05,
        on_stall=lambda late, where: seen.append(where),
    )

    async def main() -> None:
        ticking = asyncio.ensure_future(watch.run())
        await asyncio.sleep(0.1)
        await handler()  # type: ignore[operator]
        await asyncio.sleep(0.2)
        ticking.cancel()

    asyncio.run(main())
    return seen


def test_a_handler_that_blocks_the_loop_is_named_once() -> None:
    seen = _stalls(blocker)
    assert len(seen) == 1, seen
    assert seen[0].startswith("handler 'resize' (blocker at ")
    assert "test_worker_loopwatch.py" in seen[0]


def test_a_handler_that_awaits_is_no_stall() -> None:
    assert _stalls(polite) == []

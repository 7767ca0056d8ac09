"""A worker's exit is not held up by a task that lost its cancellation.

Seen in `make bench-scale-peers`: a drained pool worker got SIGTERM, which
also wakes its heartbeat; the shutdown's cancellation of the heartbeat task
landed as that wake-up did, Python 3.11's `asyncio.wait_for` dropped it, and
the heartbeat loop beat on while the shutdown awaited it: the pod stayed
Terminating for its whole grace period (315 s) until SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

from corral.worker.heartbeat import Heartbeat
from corral.worker.stopping import stop_tasks


async def _loses_one_cancellation(stop: asyncio.Event) -> None:
    with contextlib.suppress(asyncio.CancelledError):  # lost, as wait_for can lose one
        await asyncio.sleep(3600)
    await stop.wait()


async def _never_stops(stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            continue


def test_a_task_that_lost_its_cancellation_is_cancelled_again_and_stops() -> None:
    async def scenario() -> tuple[list[str], bool]:
        stop = asyncio.Event()
        task = asyncio.create_task(_loses_one_cancellation(stop), name="heartbeat")
        await asyncio.sleep(0)
        left = await stop_tasks([task], wait_s=0.05)
        return left, task.cancelled()

    assert asyncio.run(scenario()) == ([], True)


def test_a_task_that_never_stops_is_named_and_the_shutdown_goes_on() -> None:
    async def scenario() -> list[str]:
        stop = asyncio.Event()
        quiet = asyncio.create_task(asyncio.sleep(3600), name="listener")
        stubborn = asyncio.create_task(_never_stops(stop), name="stubborn")
        await asyncio.sleep(0)
        left = await stop_tasks([quiet, stubborn], rounds=3, wait_s=0.01)
        stop.set()  # let it end, for the test's own loop
        stubborn.cancel()
        await asyncio.gather(stubborn, return_exceptions=True)
        return left

    assert asyncio.run(scenario()) == ["stubborn"]


def test_the_heartbeat_loop_stops_when_cancelled_as_it_is_woken() -> None:
    async def scenario() -> bool:
        beat = SimpleNamespace(beat_now=asyncio.Event())

        async def heartbeat_loop() -> None:  # Heartbeat.run's shape: wait, beat, again
            while True:
                await Heartbeat._sleep_or_wake(beat, 30.0)  # type: ignore[arg-type]
                await asyncio.sleep(0)  # the beat itself

        task = asyncio.create_task(heartbeat_loop())
        await asyncio.sleep(0)  # waiting now
        beat.beat_now.set()  # SIGTERM's "beat now"...
        await asyncio.sleep(0)  # ...the wait's inner step completes...
        task.cancel()  # ...and the shutdown's cancellation arrives
        await asyncio.wait({task}, timeout=1.0)
        stopped = task.cancelled()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stopped

    assert asyncio.run(scenario()) is True

"""The heartbeat's watchdog (`corral.worker.heartbeat.Heartbeat`): a worker
gives its jobs up once no beat reached the database for longer than
--lease. The leases a beat renews run from its transaction's start, so the
silence is counted from when the last good beat was sent, not from when its
answer came back: a beat that waited on a lock must not let the worker
believe it holds jobs past their leases."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest

from corral.worker.drain import Directive, Lifecycle
from corral.worker.heartbeat import Heartbeat, LeasesLapsed


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


class _Session:
    """The first beat takes `first_s` (by the fake clock) and succeeds; every
    later one fails after `later_s`."""

    def __init__(self, clock: _Clock, *, first_s: float, later_s: float) -> None:
        self.clock, self.first_s, self.later_s = clock, first_s, later_s
        self.beats = 0

    async def heartbeat(self, in_flight: int, lifecycle: Lifecycle, held: Any = ()) -> Directive:
        self.beats += 1
        await asyncio.sleep(0)
        if self.beats == 1:
            self.clock.now += self.first_s
            return Directive.CONTINUE
        self.clock.now += self.later_s
        raise OSError("connection refused")

    def backoff(self) -> float:
        return 0.0


def _silent_for_when_it_gave_up(monkeypatch: pytest.MonkeyPatch, *, first_s: float) -> float:
    clock = _Clock()
    # Only the heartbeat's clock: the event loop keeps the real one.
    monkeypatch.setattr("corral.worker.heartbeat.time", SimpleNamespace(monotonic=clock.monotonic))
    session = _Session(clock, first_s=first_s, later_s=1.0)
    beat = Heartbeat(
        session=cast(Any, session),
        lifecycle=Lifecycle(),
        in_flight=lambda: 1,
        on_drain=lambda reason: None,
        on_resume=lambda: None,
        interval_s=0.0,
        database_url="postgresql://corral@db/corral",
        lease_s=10.0,
    )
    sent = clock.now
    with pytest.raises(LeasesLapsed) as raised:
        asyncio.run(beat.run())
    assert "longer than --lease (10s)" in str(raised.value)
    assert "connection refused" in str(raised.value)
    return clock.now - sent


def test_a_worker_gives_its_jobs_up_once_silent_for_longer_than_its_lease(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A quick first beat, then one failure a (fake) second: it gives up on
    # the first failure past 10 s of silence.
    assert _silent_for_when_it_gave_up(monkeypatch, first_s=0.0) == 11.0


def test_silence_counts_from_when_the_last_good_beat_was_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The good beat took 4 s to answer (a lock wait): the leases it renewed
    # run from its start, so the worker gives up 11 s after sending it, not
    # 4 s later.
    assert _silent_for_when_it_gave_up(monkeypatch, first_s=4.0) == 11.0

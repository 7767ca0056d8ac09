"""A drain the registry asked for can be cancelled (`corral workers resume`)
at any point of the worker's drain (corral.worker.draining.Dispatcher):
also while it hands its unfinished jobs back or waits for its last
completions. The worker then claims again; it must not try to report
itself drained from `active` (an illegal move that would kill it)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from corral.queue import WorkerState
from corral.worker.completions import CompletionBuffer
from corral.worker.drain import Directive, Lifecycle, State
from corral.worker.draining import Dispatcher


class _Jobs:
    """Holds nothing; the registry's resume lands while it hands back."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self.lifecycle = lifecycle
        self.running: dict[int, Any] = {}

    async def hand_back(self) -> None:
        await asyncio.sleep(0)
        # A beat hears the registry say active again; the runtime resumes.
        heard = self.lifecycle.heard(WorkerState.ACTIVE, self.lifecycle.state)
        assert heard is Directive.RESUME
        assert self.lifecycle.resume() is True


def test_a_drain_cancelled_while_the_worker_hands_back_goes_back_to_claiming() -> None:
    async def scenario() -> bool:
        life = Lifecycle()
        life.activate()
        life.heard(WorkerState.DRAINING, State.ACTIVE)  # `corral workers drain`
        life.begin_drain("corral workers drain", by_registry=True)
        assert life.state is State.DRAINING
        dispatcher = Dispatcher(
            session=cast(Any, None),
            jobs=cast(Any, _Jobs(life)),
            buffer=CompletionBuffer(10),
            heartbeat=cast(Any, None),
            lifecycle=life,
            metrics=cast(Any, None),
            wake=asyncio.Event(),
            settings=cast(Any, None),
            worker_id="1",
            exit=lambda code: None,
        )
        return await dispatcher._finish_drain()

    assert asyncio.run(scenario()) is True  # claim again

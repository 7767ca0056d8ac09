"""The worker's drain state machine: one place for where a worker is in its
life and what the registry is told about it.

Pure (no I/O, no asyncio): `corral.worker.runtime.Worker` owns one
`Lifecycle` and moves it; `corral.worker.heartbeat` asks it what to report and
hands it the registry's answer; `corral.worker.signals` and the HTTP endpoint
begin drains through the Worker. Unit tests drive it directly
(tests/unit/test_worker_drain.py).

    STARTING --activate--> ACTIVE --begin_drain--> DRAINING --finish--> DRAINED
        |                                              |
        +--begin_drain (before activate: see below) ---+      any --stop--> STOPPED

A drain, whoever starts it (SIGTERM, POST /drain, preStop, `corral workers
drain` seen on a heartbeat), shows in the registry: the worker's row goes to
`draining` (by `self`), and once nothing is held to `drained` with 0 in flight.

Adding a transition (e.g. resuming from a cancelled drain) means one entry in
`_MOVES` and one method that takes it.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass

from corral.queue import WorkerState

__all__ = ["Directive", "Lifecycle", "RegistryCalls", "State"]


class State(enum.StrEnum):
    STARTING = "starting"  # connecting, enrolling, opening the endpoint
    ACTIVE = "active"  # claiming jobs
    DRAINING = "draining"  # not claiming; finishing what it holds
    DRAINED = "drained"  # holds nothing; stays up, not ready, until terminated
    STOPPED = "stopped"  # exiting (fatal error, or removed from the registry)


class Directive(enum.Enum):
    """What the registry's answer to a heartbeat asks of the worker."""

    CONTINUE = "continue"
    DRAIN = "drain"  # an admin (or the operator) asked this worker to drain


@dataclass(frozen=True, slots=True)
class RegistryCalls:
    """What a heartbeat must write before it beats (see `Lifecycle.registry_calls`)."""

    drain_self: bool  # move the row from active to draining (by `self`)
    mark_drained: bool  # the row says drained, 0 in flight


# The moves each state allows. STARTING -> DRAINING: a drain asked for while
# the worker is still starting (its endpoint and signal handlers are up
# before it claims). DRAINING -> ACTIVE is taken only by `activate`, which
# ends startup: such an early drain does not outlive startup today (the
# worker goes active; the reason and deadline stay recorded).
_MOVES: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.ACTIVE, State.DRAINING, State.STOPPED}),
    State.ACTIVE: frozenset({State.DRAINING, State.STOPPED}),
    State.DRAINING: frozenset({State.ACTIVE, State.DRAINED, State.STOPPED}),
    State.DRAINED: frozenset({State.STOPPED}),
    State.STOPPED: frozenset({State.STOPPED}),
}

# The state the registry is told, per local state: a starting worker is
# `active` there, and one that stops is `draining` (it claims no more).
_REPORTED: dict[State, State] = {State.STARTING: State.ACTIVE, State.STOPPED: State.DRAINING}


class IllegalMove(RuntimeError):
    """A move `_MOVES` does not allow: a bug in the caller, not a user error."""


class Lifecycle:
    """Where one worker process is, why it drains and until when."""

    __slots__ = ("deadline", "exit_when_drained", "reason", "registry_knows", "state")

    def __init__(self) -> None:
        self.state = State.STARTING
        self.reason = ""  # why it drains ("SIGTERM", "corral workers drain", ...)
        self.deadline: float | None = None  # monotonic seconds; None: no limit
        # Exit once drained (the drain came from a signal); else stay up,
        # not ready, until one comes.
        self.exit_when_drained = False
        # The registry row shows this worker's drain (draining or drained),
        # whoever asked for it.
        self.registry_knows = False

    def _move(self, to: State) -> None:
        if to not in _MOVES[self.state]:
            raise IllegalMove(f"worker state {self.state} cannot become {to}")
        self.state = to

    # -- local transitions ---------------------------------------------------

    def activate(self) -> None:
        """Startup is over: claim jobs."""
        self._move(State.ACTIVE)

    def begin_drain(self, reason: str, deadline_s: float | None = None) -> bool:
        """Stop claiming and finish what is held. A deadline only ever gets
        earlier. True when this call began the drain (the caller wakes the
        loops and reports it at once); False when one was already under way
        or the worker is stopping."""
        if deadline_s is not None:
            deadline = time.monotonic() + deadline_s
            if self.deadline is None or deadline < self.deadline:
                self.deadline = deadline
        if self.state in (State.DRAINING, State.DRAINED, State.STOPPED):
            return False
        self.reason = reason
        self._move(State.DRAINING)
        return True

    def finish_drain(self) -> bool:
        """Nothing is held any more: report `drained`. False when the worker
        is stopping instead."""
        if self.state is State.STOPPED:
            return False
        self._move(State.DRAINED)
        return True

    def stop(self) -> None:
        """Exit: a fatal error, or the registry removed this worker."""
        self._move(State.STOPPED)

    @property
    def accepting(self) -> bool:
        """Claims may go on (the dispatcher loops while this holds)."""
        return self.state is State.ACTIVE

    @property
    def draining(self) -> bool:
        return self.state in (State.DRAINING, State.DRAINED)

    def time_left(self) -> float | None:
        """Seconds until the drain deadline (0 when past), None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    # -- the registry's half (corral.worker.heartbeat) -------------------------

    def reported(self) -> State:
        """The state a heartbeat reports for this worker."""
        return _REPORTED.get(self.state, self.state)

    def registry_calls(self, reported: State) -> RegistryCalls:
        """What to write before beating: a drain the worker began itself goes
        to the registry once, so the row says `draining` and then `drained`."""
        draining = reported in (State.DRAINING, State.DRAINED)
        return RegistryCalls(
            drain_self=draining and not self.registry_knows,
            mark_drained=reported is State.DRAINED,
        )

    def drain_written(self) -> None:
        """The registry took the worker's own drain (`RegistryCalls.drain_self`)."""
        self.registry_knows = True

    def heard(self, registry: WorkerState, reported: State) -> Directive:
        """Take in the registry's answer to a heartbeat that reported
        `reported`. The caller raises for REMOVED before asking."""
        if registry in (WorkerState.DRAINING, WorkerState.DRAINED):
            self.registry_knows = True
            if reported is State.ACTIVE:
                return Directive.DRAIN
        return Directive.CONTINUE

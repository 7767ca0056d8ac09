"""The worker's drain state machine: one place for where a worker is in its
life and what the registry is told about it.

Pure (no I/O, no asyncio): `corral.worker.runtime.Worker` owns one
`Lifecycle` and moves it; `corral.worker.heartbeat` asks it what to report and
hands it the registry's answer; `corral.worker.signals` and the HTTP endpoint
begin drains through the Worker. Unit tests drive it directly
(tests/unit/test_worker_drain.py).

    STARTING --activate--> ACTIVE --begin_drain--> DRAINING --finish--> DRAINED
        |                        ^                     |                    |
        +--begin_drain (before activate: see below) ---+                    |
                                 +------- resume (registry drain undone) ---+
                                                              any --stop--> STOPPED

Once DRAINED, the worker exits (`exits_when_drained`) when the drain came
from a signal, when it was a restart (`corral workers restart`: the exit
code asks the supervisor to start it again) or when the registry asked for
it and the worker is not in a pool (started by hand: nothing would ever stop
it); a pool worker drained through the registry stays up, not ready, for the
operator to remove its pod.

A drain, whoever starts it (SIGTERM, POST /drain, preStop, `corral workers
drain` seen on a heartbeat), shows in the registry: the worker's row goes to
`draining` (by `self`), and once nothing is held to `drained` with 0 in flight.

A drain the registry asked for (the operator's scaler before a scale-down,
`corral workers drain`) can be undone there: when the registry says `active`
again, the worker resumes claiming, from draining or drained alike. A drain
the worker began itself (a signal, preStop, POST /drain) is never undone by
the registry: its pod is going.
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
    RESUME = "resume"  # the drain the registry asked for was cancelled there
    RESTART = "restart"  # drain, then exit for the supervisor to start it again


@dataclass(frozen=True, slots=True)
class RegistryCalls:
    """What a heartbeat must write before it beats (see `Lifecycle.registry_calls`)."""

    drain_self: bool  # move the row from active to draining (by `self`)
    mark_drained: bool  # the row says drained, 0 in flight


# The moves each state allows. STARTING -> DRAINING: a drain asked for while
# the worker is still starting (its endpoint and signal handlers are up
# before it claims); `activate` then leaves it draining, so a pod told to
# stop while it started never claims. DRAINING -> ACTIVE: `resume`, when the
# registry cancels the drain it asked for.
_MOVES: dict[State, frozenset[State]] = {
    State.STARTING: frozenset({State.ACTIVE, State.DRAINING, State.STOPPED}),
    State.ACTIVE: frozenset({State.DRAINING, State.STOPPED}),
    State.DRAINING: frozenset({State.ACTIVE, State.DRAINED, State.STOPPED}),
    State.DRAINED: frozenset({State.ACTIVE, State.STOPPED}),
    State.STOPPED: frozenset({State.STOPPED}),
}

# The state the registry is told, per local state: a starting worker is
# `active` there, and one that stops is `draining` (it claims no more).
_REPORTED: dict[State, State] = {State.STARTING: State.ACTIVE, State.STOPPED: State.DRAINING}


class IllegalMove(RuntimeError):
    """A move `_MOVES` does not allow: a bug in the caller, not a user error."""


class Lifecycle:
    """Where one worker process is, why it drains and until when."""

    __slots__ = (
        "activated",
        "by_registry",
        "deadline",
        "exit_when_drained",
        "in_pool",
        "reason",
        "registry_knows",
        "restart",
        "state",
    )

    def __init__(self, *, in_pool: bool = False) -> None:
        self.state = State.STARTING
        # Run by the operator in a WorkerPool (CORRAL_POOL is set): a drain
        # the registry asked for leaves it up, drained, for the operator.
        self.in_pool = in_pool
        # The drain under way ends in a restart (corral workers restart).
        self.restart = False
        self.reason = ""  # why it drains ("SIGTERM", "corral workers drain", ...)
        self.deadline: float | None = None  # monotonic seconds; None: no limit
        # Exit once drained (the drain came from a signal); else stay up,
        # not ready, until one comes.
        self.exit_when_drained = False
        # The registry row shows this worker's drain (draining or drained),
        # whoever asked for it.
        self.registry_knows = False
        # The drain under way was asked for through the registry (so the
        # registry may cancel it), not begun by the worker itself.
        self.by_registry = False
        self.activated = False  # startup is over (activate ran)

    def _move(self, to: State) -> None:
        if to not in _MOVES[self.state]:
            raise IllegalMove(f"worker state {self.state} cannot become {to}")
        self.state = to

    # -- local transitions ---------------------------------------------------

    def activate(self) -> None:
        """Startup is over: claim jobs, unless a drain was asked for during
        startup (a SIGTERM, POST /drain): that one stands, and the worker
        finishes it holding nothing. Once only: coming back from a drain is
        `resume`, which only a drain the registry asked for allows."""
        if self.state not in (State.STARTING, State.DRAINING) or self.activated:
            raise IllegalMove(f"worker state {self.state} cannot be activated again")
        self.activated = True
        if self.state is State.STARTING:
            self._move(State.ACTIVE)

    def begin_drain(
        self, reason: str, deadline_s: float | None = None, *, by_registry: bool = False
    ) -> bool:
        """Stop claiming and finish what is held. A deadline only ever gets
        earlier. True when this call began the drain (the caller wakes the
        loops and reports it at once); False when one was already under way
        or the worker is stopping. A drain of the worker's own during one the
        registry asked for makes it the worker's own: no longer undone."""
        if deadline_s is not None:
            deadline = time.monotonic() + deadline_s
            if self.deadline is None or deadline < self.deadline:
                self.deadline = deadline
        if not by_registry:
            if self.by_registry and self.state in (State.DRAINING, State.DRAINED):
                # Now the worker's own (its pod is going): tell the registry,
                # so that the drain can no longer be cancelled there.
                self.registry_knows = False
            self.by_registry = False
        if self.state in (State.DRAINING, State.DRAINED, State.STOPPED):
            return False
        self.reason = reason
        self.by_registry = by_registry
        self._move(State.DRAINING)
        return True

    def begin_restart(self, reason: str) -> bool:
        """The registry asks for a restart: drain (a drain it asked for
        already becomes one), then exit with the restart code. False when the
        worker is going anyway (a drain of its own, or stopping)."""
        if self.state is State.STOPPED or (self.draining and not self.by_registry):
            return False
        self.begin_drain(reason, by_registry=True)
        self.restart = True
        return True

    def resume(self) -> bool:
        """The registry cancelled the drain it had asked for: claim again.
        False (and nothing changes) unless such a drain is under way."""
        if not self.by_registry or self.state not in (State.DRAINING, State.DRAINED):
            return False
        self._move(State.ACTIVE)
        self.reason, self.deadline = "", None
        self.by_registry = self.registry_knows = self.restart = False
        return True

    @property
    def exits_when_drained(self) -> bool:
        """Exit once drained (see the module's docstring); else stay up, not ready."""
        return self.exit_when_drained or (self.by_registry and (self.restart or not self.in_pool))

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
        if registry is WorkerState.RESTARTING:
            self.registry_knows = True
            if reported is State.ACTIVE or (
                self.by_registry and not self.restart and not self.exit_when_drained
            ):
                return Directive.RESTART
        elif registry in (WorkerState.DRAINING, WorkerState.DRAINED):
            self.registry_knows = True
            if self.by_registry:
                self.restart = False  # an admin's drain took over the restart
            if reported is State.ACTIVE:
                return Directive.DRAIN
        elif (
            registry is WorkerState.ACTIVE
            and self.by_registry
            and not self.exit_when_drained
            and self.state in (State.DRAINING, State.DRAINED)
        ):
            return Directive.RESUME
        return Directive.CONTINUE

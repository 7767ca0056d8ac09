"""The worker's drain state machine (corral.worker.drain): which moves it
allows, what a heartbeat reports and writes, and what the registry's answer
asks of the worker."""

from __future__ import annotations

import time

import pytest

from corral.queue import WorkerState
from corral.worker.drain import Directive, IllegalMove, Lifecycle, RegistryCalls, State


def _active() -> Lifecycle:
    life = Lifecycle()
    life.activate()
    return life


def _state(life: Lifecycle) -> State:
    """`life.state` read through a call, so mypy does not keep it narrowed to
    one member across the method calls that change it."""
    return life.state


def test_a_worker_starts_then_claims_until_a_drain_begins() -> None:
    life = Lifecycle()
    assert _state(life) is State.STARTING and not life.accepting
    life.activate()
    assert life.state is State.ACTIVE and life.accepting
    assert life.begin_drain("SIGTERM", 30) is True
    assert life.state is State.DRAINING and not life.accepting and life.draining
    assert life.reason == "SIGTERM"


def test_a_second_drain_request_changes_nothing_but_can_bring_the_deadline_closer() -> None:
    life = _active()
    life.begin_drain("POST /drain")
    assert life.deadline is None and life.time_left() is None
    assert life.begin_drain("SIGTERM", 60) is False
    first = life.deadline
    assert first is not None and life.reason == "POST /drain"
    life.begin_drain("SIGTERM", 600)  # later: ignored
    assert life.deadline == first
    life.begin_drain("SIGTERM", 1)  # sooner: taken
    assert life.deadline is not None and life.deadline < first


def test_a_drain_past_its_deadline_has_no_time_left() -> None:
    life = _active()
    life.begin_drain("SIGTERM", 0)
    time.sleep(0.001)
    assert life.time_left() == 0.0


def test_a_finished_drain_is_drained_unless_the_worker_is_stopping() -> None:
    life = _active()
    life.begin_drain("SIGTERM")
    assert life.finish_drain() is True and life.state is State.DRAINED and life.draining
    stopping = _active()
    stopping.begin_drain("SIGTERM")
    stopping.stop()
    assert stopping.finish_drain() is False and stopping.state is State.STOPPED


def test_a_stopped_worker_drains_no_more_and_stopping_twice_is_harmless() -> None:
    life = _active()
    life.stop()
    life.stop()
    assert life.begin_drain("SIGTERM") is False and life.state is State.STOPPED


def test_moves_the_machine_does_not_allow_are_refused() -> None:
    life = _active()
    with pytest.raises(IllegalMove):
        life.finish_drain()  # ACTIVE -> DRAINED skips the drain
    life.begin_drain("x")
    life.finish_drain()
    with pytest.raises(IllegalMove):
        life.activate()  # DRAINED -> ACTIVE is a resume, not a second start-up
    assert life.resume() is False  # ...and only for a drain the registry asked for


@pytest.mark.parametrize(("reason", "deadline_s"), [("POST /drain", None), ("SIGTERM", 30.0)])
def test_a_drain_asked_for_during_startup_outlives_it(
    reason: str, deadline_s: float | None
) -> None:
    # The endpoint and signal handlers are up before the worker claims: a
    # pod told to stop while it started must never claim (it finishes the
    # drain holding nothing).
    life = Lifecycle()
    assert life.begin_drain(reason, deadline_s) is True
    life.activate()
    assert life.state is State.DRAINING and not life.accepting and life.reason == reason
    with pytest.raises(IllegalMove):
        life.activate()
    assert life.finish_drain() is True
    assert _state(life) is State.DRAINED


@pytest.mark.parametrize(
    ("state", "reported"),
    [(State.STARTING, State.ACTIVE), (State.ACTIVE, State.ACTIVE), (State.DRAINING, State.DRAINING),
     (State.DRAINED, State.DRAINED), (State.STOPPED, State.DRAINING)],
)  # fmt: skip
def test_the_registry_hears_active_for_a_starting_worker_and_draining_for_a_stopping_one(
    state: State, reported: State
) -> None:
    life = Lifecycle()
    life.state = state
    assert life.reported() is reported


def test_a_drain_the_worker_began_itself_is_written_once_then_marked_drained() -> None:
    life = _active()
    assert life.registry_calls(life.reported()) == RegistryCalls(False, False)
    life.begin_drain("SIGTERM")
    assert life.registry_calls(life.reported()) == RegistryCalls(True, False)
    life.drain_written()
    assert life.registry_calls(life.reported()) == RegistryCalls(False, False)
    life.finish_drain()
    assert life.registry_calls(life.reported()) == RegistryCalls(False, True)


def test_a_registry_drain_tells_an_active_worker_to_drain_and_is_not_written_back() -> None:
    life = _active()
    assert life.heard(WorkerState.ACTIVE, State.ACTIVE) is Directive.CONTINUE
    assert life.heard(WorkerState.DRAINING, State.ACTIVE) is Directive.DRAIN
    assert life.registry_knows
    life.begin_drain("corral workers drain")
    assert life.registry_calls(life.reported()).drain_self is False
    assert life.heard(WorkerState.DRAINING, State.DRAINING) is Directive.CONTINUE


def test_a_drain_the_registry_asked_for_is_resumed_when_the_registry_cancels_it() -> None:
    life = _active()
    assert life.heard(WorkerState.DRAINING, State.ACTIVE) is Directive.DRAIN
    life.begin_drain("corral workers drain", by_registry=True)
    # The operator needs the worker after all: the row is active again.
    assert life.heard(WorkerState.ACTIVE, State.DRAINING) is Directive.RESUME
    assert life.resume() is True
    assert life.state is State.ACTIVE and life.accepting
    assert (life.reason, life.deadline, life.registry_knows) == ("", None, False)


def test_a_drained_worker_resumes_too() -> None:
    life = _active()
    life.begin_drain("corral workers drain", by_registry=True)
    life.finish_drain()
    assert life.heard(WorkerState.ACTIVE, State.DRAINED) is Directive.RESUME
    assert life.resume() is True and life.state is State.ACTIVE


@pytest.mark.parametrize("own", ["SIGTERM", "preStop", "POST /drain"])
def test_a_drain_the_worker_began_itself_is_never_undone_by_the_registry(own: str) -> None:
    life = _active()
    life.begin_drain(own)
    assert life.heard(WorkerState.ACTIVE, State.DRAINING) is Directive.CONTINUE
    assert life.resume() is False and life.state is State.DRAINING


def test_a_signal_during_a_registry_drain_makes_the_drain_the_workers_own() -> None:
    life = _active()
    life.begin_drain("corral workers drain", by_registry=True)
    life.begin_drain("SIGTERM", 10)
    life.exit_when_drained = True
    assert life.heard(WorkerState.ACTIVE, State.DRAINING) is Directive.CONTINUE
    assert life.resume() is False


def test_startup_happens_once() -> None:
    life = _active()
    with pytest.raises(IllegalMove):
        life.activate()


def test_a_signal_during_a_registry_drain_is_written_to_the_registry_as_the_workers_own() -> None:
    life = _active()
    life.heard(WorkerState.DRAINING, State.ACTIVE)
    life.begin_drain("corral workers drain", by_registry=True)
    assert life.registry_calls(life.reported()).drain_self is False
    life.begin_drain("SIGTERM", 10)
    assert life.registry_calls(life.reported()).drain_self is True


# -- exit or stay once drained; restarts (corral workers drain|restart) ----------


def _drained_by_registry(*, in_pool: bool) -> Lifecycle:
    life = Lifecycle(in_pool=in_pool)
    life.activate()
    assert life.heard(WorkerState.DRAINING, State.ACTIVE) is Directive.DRAIN
    life.begin_drain("corral workers drain", by_registry=True)
    life.finish_drain()
    return life


def test_a_registry_drain_exits_a_worker_outside_a_pool_and_keeps_a_pool_worker_up() -> None:
    assert _drained_by_registry(in_pool=False).exits_when_drained is True
    assert _drained_by_registry(in_pool=True).exits_when_drained is False


def test_a_worker_outside_a_pool_can_still_be_resumed_while_it_drains() -> None:
    life = Lifecycle(in_pool=False)
    life.activate()
    life.begin_drain("corral workers drain", by_registry=True)
    assert life.heard(WorkerState.ACTIVE, State.DRAINING) is Directive.RESUME
    assert life.resume() and life.accepting and not life.exits_when_drained


def test_the_registry_asking_for_a_restart_drains_an_active_worker_then_exits_it() -> None:
    life = Lifecycle(in_pool=True)
    life.activate()
    assert life.heard(WorkerState.RESTARTING, State.ACTIVE) is Directive.RESTART
    assert life.begin_restart("corral workers restart") is True
    assert life.state is State.DRAINING and life.restart and life.by_registry
    life.finish_drain()
    assert life.exits_when_drained  # even in a pool
    # Heard again while it drains: nothing more to do.
    assert life.heard(WorkerState.RESTARTING, State.DRAINED) is Directive.CONTINUE


def test_a_restart_turns_a_pool_workers_registry_drain_into_an_exit() -> None:
    life = _drained_by_registry(in_pool=True)
    assert life.heard(WorkerState.RESTARTING, State.DRAINED) is Directive.RESTART
    assert life.begin_restart("corral workers restart") is True
    assert life.state is State.DRAINED and life.exits_when_drained


def test_a_worker_draining_on_its_own_ignores_a_restart_and_exits_as_it_was_going_to() -> None:
    life = _active()
    life.begin_drain("SIGTERM", 30)
    life.exit_when_drained = True
    assert life.heard(WorkerState.RESTARTING, State.DRAINING) is Directive.CONTINUE
    assert life.begin_restart("corral workers restart") is False and not life.restart


def test_resuming_a_restart_forgets_it_and_an_admin_drain_replaces_it() -> None:
    life = _active()
    life.begin_restart("corral workers restart")
    assert life.heard(WorkerState.ACTIVE, State.DRAINING) is Directive.RESUME
    assert life.resume() and not life.restart
    life.begin_restart("corral workers restart")
    life.heard(WorkerState.DRAINING, State.DRAINING)  # `corral workers drain` after it
    assert not life.restart

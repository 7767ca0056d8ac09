"""When the autoscaler evaluates which pool (corral.controller.autoscaler):
at once on a notification for a queue the pool serves, every pollSeconds
otherwise, and never more often than its minimum interval however many
notifications arrive."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from corral.controller.autoscaler import Autoscaler
from tests.unit._pools import make_pool


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _autoscaler() -> tuple[Autoscaler, Clock, list[tuple[str, str]]]:
    clock = Clock()
    calls: list[tuple[str, str]] = []
    scaler = Autoscaler(
        lambda ns, name: calls.append((ns, name)), "postgresql://x@db/x", min_interval_s=0.2,
        clock=clock,
    )  # fmt: skip
    return scaler, clock, calls


def wait_until_true(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def _track(scaler: Autoscaler, name: str, queues: list[str], poll: int = 10) -> Any:
    pool = make_pool(name=name, queues=queues, autoscaling={"pollSeconds": poll})
    scaler.track(pool)
    return pool


def test_a_new_pool_is_due_at_once_then_every_poll_seconds() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"], poll=10)
    assert scaler.due() == ([("jobs", "a")], 10.0)
    clock.now += 4
    assert scaler.due() == ([], 6.0)
    clock.now += 6
    assert scaler.due()[0] == [("jobs", "a")]


@pytest.mark.parametrize(
    ("queues", "woken"),
    [
        ({"mail"}, [("jobs", "a")]),  # only the pool serving that queue
        ({"*"}, [("jobs", "a"), ("jobs", "b")]),  # a notification for all queues: every pool
    ],
)
def test_a_notification_makes_the_pools_serving_its_queues_due_and_no_others(
    queues: set[str], woken: list[tuple[str, str]]
) -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"])
    _track(scaler, "b", ["sms"])
    scaler.due()
    clock.now += 1
    assert scaler.notified(queues) == len(woken)
    assert sorted(scaler.due()[0]) == woken


def test_a_burst_of_notifications_costs_one_evaluation_per_minimum_interval() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"])
    evaluations = len(scaler.due()[0])
    # 10,000 single enqueues over two seconds, evaluated as they fall due.
    for i in range(10_000):
        clock.now += 0.0002
        scaler.notified({"mail"})
        if i % 50 == 0:
            evaluations += len(scaler.due()[0])
    evaluations += len(scaler.due()[0])
    assert 2 <= evaluations <= 2 / 0.2 + 2


def _stream(scaler: Autoscaler, clock: Clock, seconds: float, changed: bool) -> int:
    """Notifications every 10 ms for `seconds`; each due evaluation settles
    with `changed`. Returns how many evaluations ran."""
    evaluations = 0
    for _ in range(int(seconds / 0.01)):
        clock.now += 0.01
        scaler.notified({"mail"})
        for namespace, name in scaler.due()[0]:
            evaluations += 1
            scaler.settled(f"{namespace}/{name}", changed)
    return evaluations


def test_a_long_stream_that_changes_nothing_stretches_evaluations_to_the_maximum_interval() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"], poll=10)
    scaler.due()
    clock.now += 5
    # 60 s of enqueues onto a pool that already has its workers: 0.2, 0.4,
    # 0.8, 1.6, then every 2 s (the poll, every 10 s, falls on those).
    evaluations = _stream(scaler, clock, 60, changed=False)
    assert 30 <= evaluations <= 34, evaluations
    # ...while evaluations that change something keep the minimum interval.
    clock.now += 5
    assert _stream(scaler, clock, 10, changed=True) >= 45


def test_a_burst_after_a_quiet_spell_is_evaluated_at_once_however_stretched_the_interval() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"], poll=10)
    _stream(scaler, clock, 20, changed=False)
    clock.now += 2.5  # longer than the maximum interval without a notification
    for namespace, name in scaler.due()[0]:  # the stream's last evaluation, overdue
        scaler.settled(f"{namespace}/{name}", False)
    clock.now += 0.2
    scaler.notified({"mail"})
    assert scaler.due()[0] == [("jobs", "a")]  # not 2 s after that evaluation


def test_the_stretched_interval_never_exceeds_the_pools_poll_seconds() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"], poll=1)
    scaler.due()
    # 0.2, 0.4, 0.8, then every second: about 60 in 60 s, not 30.
    assert _stream(scaler, clock, 60, changed=False) >= 55


def test_a_notification_right_after_an_evaluation_waits_for_the_minimum_interval() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"])
    scaler.due()
    clock.now += 0.05
    scaler.notified({"mail"})
    ready, wait_s = scaler.due()
    assert ready == [] and wait_s == pytest.approx(0.15)
    clock.now += 0.15
    assert scaler.due()[0] == [("jobs", "a")]


def test_a_reconcile_that_just_evaluated_a_pool_pushes_its_poll_back() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"], poll=10)
    scaler.due()
    clock.now += 8
    scaler.evaluated("jobs/a")
    clock.now += 3
    assert scaler.due()[0] == []  # polled by the reconcile at t=8; next at t=18
    clock.now += 7
    assert scaler.due()[0] == [("jobs", "a")]


def test_a_pool_draining_before_a_scale_down_is_looked_at_again_within_a_second() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"], poll=10)
    _track(scaler, "b", ["mail"], poll=10)
    scaler.due()  # both evaluated at t=0; next poll at t=10
    scaler.recheck("jobs/a")  # a's evaluation asked its idle workers to drain
    clock.now += 1
    assert scaler.due()[0] == [("jobs", "a")]  # not b, and not at t=10
    scaler.recheck("jobs/a", 30)  # a recheck never postpones a poll (due at t=11)
    clock.now += 9
    assert scaler.due()[0] == [("jobs", "b")]
    clock.now += 1
    assert scaler.due()[0] == [("jobs", "a")]


def test_a_long_drain_is_rechecked_ever_later_up_to_poll_seconds_and_a_new_one_at_once() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"], poll=10)
    waits = []
    for _ in range(6):  # busy workers finishing: the scale-down waits on
        scaler.due()
        scaler.recheck("jobs/a")
        waits.append(scaler.due()[1])
        clock.now += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    scaler.due()
    scaler.drained("jobs/a")  # done; the next scale-down starts from 1 s again
    scaler.recheck("jobs/a")
    assert scaler.due()[1] == 1.0


def test_a_forgotten_pool_is_never_evaluated_again() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"])
    scaler.forget("jobs/a")
    scaler.notified({"mail"})
    clock.now += 100
    assert scaler.due()[0] == []


def test_a_changed_spec_is_due_at_once_but_an_unchanged_one_keeps_its_schedule() -> None:
    scaler, clock, _ = _autoscaler()
    _track(scaler, "a", ["mail"])
    scaler.due()
    clock.now += 1
    _track(scaler, "a", ["mail"])
    assert scaler.due()[0] == []
    _track(scaler, "a", ["mail", "sms"])
    assert scaler.due()[0] == [("jobs", "a")]


def test_the_autoscaler_reports_each_tracked_pools_activation_lead_and_a_change_of_it() -> None:
    scaler, _, _ = _autoscaler()
    assert scaler.activation_leads() == []
    scaler.track(make_pool(name="a", queues=["mail"]))
    scaler.track(make_pool(name="b", queues=["sms"], autoscaling={"activationLeadSeconds": 60}))
    assert sorted(scaler.activation_leads()) == [5.0, 60.0]
    scaler.due()
    scaler.track(make_pool(name="b", queues=["sms"], autoscaling={"activationLeadSeconds": 0}))
    assert sorted(scaler.activation_leads()) == [0.0, 5.0]
    assert scaler.due()[0] == [("jobs", "b")]  # a changed spec is due at once
    scaler.forget("jobs/b")
    assert scaler.activation_leads() == [5.0]


def test_a_slow_evaluation_holds_up_neither_other_pools_nor_a_second_run_of_its_own() -> None:
    # Real threads and clock: "slow" waits (a reconcile's lock, a late API
    # server) until released; "fast" must be evaluated meanwhile, and
    # "slow", due again, must not be evaluated twice at once.
    release, fast_done = threading.Event(), threading.Event()
    running: dict[str, int] = {}
    most: dict[str, int] = {}
    guard = threading.Lock()

    def evaluate(_namespace: str, name: str) -> bool:
        with guard:
            running[name] = running.get(name, 0) + 1
            most[name] = max(most.get(name, 0), running[name])
        try:
            if name == "slow":
                release.wait(10)
            else:
                fast_done.set()
        finally:
            with guard:
                running[name] -= 1
        return True

    scaler = Autoscaler(evaluate, "postgresql://x@db/x", min_interval_s=0.01)
    _track(scaler, "slow", ["s"])
    stop = threading.Event()
    loop = threading.Thread(target=scaler._evaluate_loop, args=(stop,), daemon=True)
    loop.start()
    try:
        wait_until_true(lambda: running.get("slow") == 1)
        _track(scaler, "fast", ["f"])
        scaler.notified({"s", "f"})  # "slow" is due again while it is evaluated
        assert fast_done.wait(5), "the fast pool waited for the slow pool's evaluation"
        time.sleep(0.1)
        assert most["slow"] == 1
    finally:
        release.set()
        stop.set()
        loop.join(5)

"""The operator's schedule firing (corral.controller.schedules): how far
ahead it fires, what a pass tells the autoscaler and counts, and a loop that
outlives a failing database, without a database or a sleeping thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import REGISTRY

from corral.controller.autoscaler import Autoscaler
from corral.controller.queue_access import DatabaseUnavailable
from corral.controller.schedules import DEFAULT_LEAD_S, MAX_LEAD_S, ScheduleFirer, firing_lead
from corral.queue.records import ScheduleFiring
from tests.unit._pools import make_pool


@pytest.mark.parametrize(
    ("leads", "lead"),
    [
        ([], DEFAULT_LEAD_S),  # no pool yet: the field's default
        ([5.0], 5.0),
        ([0.0], 0.0),  # every pool asks for none: fire only what is due
        ([5.0, 60.0, 0.0], 60.0),  # the largest: that pool must wake in time
        ([300.0, 900.0], MAX_LEAD_S),  # never beyond the field's maximum
    ],
)
def test_the_operator_fires_ahead_by_the_largest_activation_lead(
    leads: list[float], lead: float
) -> None:
    assert firing_lead(leads) == lead


class FakeQueue:
    def __init__(self, passes: list[list[ScheduleFiring] | Exception]) -> None:
        self.passes = passes
        self.calls: list[tuple[int, float]] = []

    def fire_due_schedules(self, limit: int = 100, lead_s: float = 0.0) -> list[ScheduleFiring]:
        self.calls.append((limit, lead_s))
        outcome = self.passes.pop(0) if self.passes else []
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def _firer(
    queue: FakeQueue, leads: list[float], **kwargs: Any
) -> tuple[ScheduleFirer, list[set[str]]]:
    told: list[set[str]] = []

    def run(fn: Callable[[Any], list[ScheduleFiring]]) -> list[ScheduleFiring]:
        return fn(queue)

    return ScheduleFirer(run, lambda: leads, told.append, **kwargs), told


def _count(outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "corral_operator_schedule_occurrences_total", {"outcome": outcome}
    )
    return value or 0.0


def test_a_pass_fires_with_the_lead_tells_the_autoscaler_the_queues_that_got_jobs_and_counts() -> (
    None
):
    enqueued, skipped = _count("enqueued"), _count("skipped")
    queue = FakeQueue([[ScheduleFiring("report", [7, 8], 0, "reports"),
                        ScheduleFiring("sync", [], 1, "sync"),  # skipped: no job, no wake-up
                        ScheduleFiring("ping", [9], 0, "default")]])  # fmt: skip
    firer, told = _firer(queue, [5.0, 30.0])
    assert len(firer.fire_once()) == 3
    assert queue.calls == [(100, 30.0)]
    assert told == [{"reports", "default"}]
    assert (_count("enqueued") - enqueued, _count("skipped") - skipped) == (3, 1)


def test_a_pass_that_enqueued_nothing_wakes_no_pool() -> None:
    queue = FakeQueue([[]])
    firer, told = _firer(queue, [])
    assert firer.fire_once() == []
    assert queue.calls == [(100, DEFAULT_LEAD_S)]
    assert told == []


class CountingStop(threading.Event):
    """Stops the loop after `waits` waits, recording each one's timeout."""

    def __init__(self, waits: int) -> None:
        super().__init__()
        self.left = waits
        self.waited: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(timeout)
        self.left -= 1
        if self.left <= 0:
            self.set()
        return self.is_set()


def test_the_loop_logs_a_failure_with_the_password_masked_and_keeps_firing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    boom = DatabaseUnavailable("database unreachable: postgresql://op:hunter2@db/corral refused")
    fired = [ScheduleFiring("ping", [1], 0, "default")]
    queue = FakeQueue([boom, fired])
    firer, told = _firer(queue, [5.0], interval_s=1.0)
    stop = CountingStop(waits=2)
    with caplog.at_level("WARNING", logger="corral.controller.schedules"):
        firer.loop(stop)
    assert len(queue.calls) == 2  # the failure did not end the loop
    assert told == [{"default"}]
    assert stop.waited == [1.0, 1.0]
    assert "firing schedules failed" in caplog.text
    assert "hunter2" not in caplog.text


def test_a_full_batch_goes_on_at_once_without_waiting() -> None:
    full = [ScheduleFiring(f"s{i}", [i], 0, "default") for i in range(3)]
    queue = FakeQueue([full, full[:1]])
    firer, _ = _firer(queue, [5.0], batch=3)
    stop = CountingStop(waits=1)
    firer.loop(stop)
    assert queue.calls == [(3, 5.0), (3, 5.0)]  # two passes, one wait
    assert stop.waited == [1.0]


def test_start_runs_the_loop_in_a_daemon_thread_until_stopped() -> None:
    queue = FakeQueue([])
    firer, _ = _firer(queue, [], interval_s=0.01)
    stop = threading.Event()
    thread = firer.start(stop)
    assert thread.daemon and thread.name == "schedules"
    stop.set()
    thread.join(timeout=2)
    assert not thread.is_alive()


def test_with_the_real_autoscaler_a_pass_fires_with_its_pools_lead_and_makes_their_pools_due() -> (
    None
):
    now = [100.0]
    scaler = Autoscaler(lambda ns, name: None, "postgresql://x@db/x", clock=lambda: now[0])
    scaler.track(make_pool(name="reports", queues=["reports"],
                           autoscaling={"activationLeadSeconds": 20}))  # fmt: skip
    scaler.track(make_pool(name="mail", queues=["mail"]))
    scaler.due()  # both evaluated; next due after pollSeconds
    now[0] += 1
    queue = FakeQueue([[ScheduleFiring("nightly", [1], 0, "reports")]])

    def run(fn: Callable[[Any], list[ScheduleFiring]]) -> list[ScheduleFiring]:
        return fn(queue)

    firer = ScheduleFirer(run, scaler.activation_leads, scaler.notified)
    firer.fire_once()
    assert queue.calls == [(100, 20.0)]
    assert scaler.due()[0] == [("jobs", "reports")]  # at once, not after pollSeconds

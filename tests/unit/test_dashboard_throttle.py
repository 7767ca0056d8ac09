"""The dashboard's sign-in throttle (`corral.dashboard.session.SignInThrottle`):
after a few wrong passwords an address waits, longer after each further one
up to a cap, and forgets after a quiet window; a success clears it; many
failures from everywhere make every unknown address wait (distributed
guessing). Driven by a fake clock: no sleeping."""

from __future__ import annotations

from typing import Any

import pytest

from corral.dashboard.session import SignInThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def throttle(clock: Clock, **kw: Any) -> SignInThrottle:
    return SignInThrottle(clock=clock, **kw)


def test_a_few_failures_are_free_then_the_address_waits(clock: Clock) -> None:
    t = throttle(clock)
    for n in range(1, t.free):
        assert t.failed("10.0.0.1") == n
        assert t.wait("10.0.0.1") == 0
    assert t.failed("10.0.0.1") == t.free
    assert t.wait("10.0.0.1") == pytest.approx(t.base_s)
    assert t.wait("10.0.0.2") == 0  # another address is not held up


def test_each_further_failure_doubles_the_wait_up_to_the_cap(clock: Clock) -> None:
    t = throttle(clock)
    waits = []
    for _ in range(t.free + 12):
        clock.now += t.wait("a")  # it waits as told, then fails again
        t.failed("a")
        waits.append(t.wait("a"))
    assert waits[: t.free - 1] == [0] * (t.free - 1)
    growing = waits[t.free - 1 :]
    assert growing[:4] == [1, 2, 4, 8]
    assert growing == sorted(growing) and max(growing) == t.cap_s
    clock.now += t.cap_s
    assert t.wait("a") == 0  # never for ever: the right password gets its try


def test_a_quiet_window_forgets_the_failures(clock: Clock) -> None:
    t = throttle(clock)
    for _ in range(t.free):
        t.failed("a")
    clock.now += t.window_s
    assert t.wait("a") == 0
    assert t.failed("a") == 1  # counting again from one


def test_a_success_clears_the_address(clock: Clock) -> None:
    t = throttle(clock)
    for _ in range(t.free + 2):
        clock.now += t.wait("a")
        t.failed("a")
    clock.now += t.wait("a")
    t.succeeded("a")
    assert t.wait("a") == 0
    assert t.failed("a") == 1


def test_many_failures_from_everywhere_make_new_addresses_wait(clock: Clock) -> None:
    t = throttle(clock, global_max=10, global_window_s=60)
    for n in range(10):  # one guess each from ten addresses
        assert t.wait(f"10.0.1.{n}") == 0
        t.failed(f"10.0.1.{n}")
    assert t.wait("10.0.2.1") == pytest.approx(60)
    clock.now += 30
    assert t.wait("10.0.2.1") == pytest.approx(30)
    clock.now += 30
    assert t.wait("10.0.2.1") == 0


def test_an_address_that_signed_in_lately_is_not_held_up_by_others(clock: Clock) -> None:
    t = throttle(clock, global_max=10, global_window_s=60)
    t.succeeded("192.168.1.5")  # the admin, earlier
    for n in range(10):
        t.failed(f"10.0.1.{n}")
    assert t.wait("10.0.2.1") > 0
    assert t.wait("192.168.1.5") == 0


def test_what_it_keeps_is_bounded(clock: Clock) -> None:
    t = throttle(clock, max_tracked=100, global_max=10**9)
    for n in range(1000):
        t.failed(f"10.{n // 256}.{n % 256}.1")
    assert t.tracked() <= 100
    assert t.failed("10.3.231.1") == 2  # the newest are the ones kept

"""Leader election: the decision (`claim`) and the renewing replica's rules
(any error is a failed renewal; step down before a standby may take over)."""

from __future__ import annotations

import json
import os
import signal
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from corral.controller import leader as leader_module
from corral.controller.leader import (
    LEASE_DURATION_S,
    RENEW_DEADLINE_S,
    RETRY_EVERY_S,
    LeaderElection,
    claim,
)
from corral.kube import Kube

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def _lease(holder: str | None, renewed: datetime, transitions: int = 3) -> dict[str, Any]:
    return {
        "metadata": {"name": "corral-operator-leader", "resourceVersion": "42"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "acquireTime": "2026-11-22T11:00:00.000000Z",
            "leaseTransitions": transitions,
        },
    }


def test_the_first_replica_creates_the_lease_and_leads() -> None:
    lease = claim(None, name="corral-operator-leader", identity="a", now=NOW, observed_for_s=0)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseTransitions"] == 0


def test_another_holders_current_lease_is_respected() -> None:
    lease = _lease("b", NOW - timedelta(seconds=5))
    assert claim(lease, name="x", identity="a", now=NOW, observed_for_s=5) is None


def test_expiry_is_judged_by_how_long_this_replica_saw_the_record_unchanged() -> None:
    # The holder's renewTime says an hour ago (its clock is off, or ours is):
    # only the time this replica has watched the record unchanged counts.
    stale_clock = _lease("b", NOW - timedelta(hours=1))
    assert claim(stale_clock, name="x", identity="a", now=NOW, observed_for_s=3) is None
    future_clock = _lease("b", NOW + timedelta(hours=1))
    assert claim(future_clock, name="x", identity="a", now=NOW, observed_for_s=16) is not None


def test_an_expired_lease_is_taken_over_and_counts_a_transition() -> None:
    lease = claim(
        _lease("b", NOW - timedelta(seconds=16)), name="x", identity="a", now=NOW, observed_for_s=16
    )
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseTransitions"] == 4
    assert lease["spec"]["acquireTime"].startswith("2026-11-22T12:00:00")
    assert lease["metadata"]["resourceVersion"] == "42"  # the write is conditional on it


def test_the_holder_renews_without_a_transition() -> None:
    lease = claim(
        _lease("a", NOW - timedelta(seconds=5)), name="x", identity="a", now=NOW, observed_for_s=5
    )
    assert lease is not None
    assert lease["spec"]["leaseTransitions"] == 3
    assert lease["spec"]["renewTime"].startswith("2026-11-22T12:00:00")
    assert lease["spec"]["acquireTime"] == "2026-11-22T11:00:00.000000Z"


def test_a_released_lease_is_free_to_take() -> None:
    lease = claim(_lease(None, NOW), name="x", identity="a", now=NOW, observed_for_s=0)
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _Leases:
    """An API server's Lease endpoint, in memory: conditional writes on a
    resourceVersion, and an outage switch that makes every call raise."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.down: Exception | None = None

    def _check(self) -> None:
        if self.down is not None:
            raise self.down

    def get_lease(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        return None if self.lease is None else json.loads(json.dumps(self.lease))

    def _store(self, body: dict[str, Any]) -> bool:
        self.version += 1
        self.lease = {
            **body,
            "metadata": {**body["metadata"], "resourceVersion": str(self.version)},
        }
        return True

    def create_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        self._check()
        return self.lease is None and self._store(body)

    def replace_lease(self, namespace: str, body: dict[str, Any]) -> bool:
        self._check()
        assert self.lease is not None
        if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
            return False
        return self._store(body)


def _election(leases: _Leases, clock: _Clock, identity: str) -> LeaderElection:
    # exit: never the real os._exit, which would end the test run itself
    return LeaderElection(
        cast(Kube, leases),
        "ns",
        "lead",
        identity,
        clock=clock,
        exit=lambda code: None,
    )


def test_any_error_while_renewing_is_a_failed_renewal_until_the_deadline() -> None:
    leases, clock = _Leases(), _Clock()
    leader = _election(leases, clock, "a")
    assert leader.renew_once()
    leases.down = ConnectionResetError("the API server went away")  # not a KubeError
    clock.now += RENEW_DEADLINE_S - 1
    assert leader.renew_once()  # still within the deadline: keeps leading
    assert not leader.overdue()
    clock.now += 1
    assert not leader.renew_once()  # the deadline: step down
    assert leader.overdue()


def test_the_leader_steps_down_before_a_standby_may_take_over() -> None:
    leases, clock = _Leases(), _Clock()
    leader, standby = _election(leases, clock, "a"), _election(leases, clock, "b")
    assert leader.renew_once()
    assert standby.renew_once() is False  # sees a current holder, starts its clock
    leases.down = TimeoutError("read timed out")  # the leader cannot reach the API server
    clock.now += RENEW_DEADLINE_S
    assert leader.overdue()  # the leader has stopped acting by now ...
    leases.down = None
    clock.now += LEASE_DURATION_S - RENEW_DEADLINE_S
    assert standby.renew_once() is False  # ... while the standby still waits
    clock.now += 1
    assert standby.renew_once() is True  # and takes over only after the lease ran out
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == "b"


def test_a_holder_that_keeps_renewing_is_never_taken_over_whatever_its_clock_says() -> None:
    leases, clock = _Leases(), _Clock()
    leader, standby = _election(leases, clock, "a"), _election(leases, clock, "b")
    for _ in range(20):
        assert leader.renew_once()
        assert standby.renew_once() is False
        assert leases.lease is not None
        leases.lease["spec"]["renewTime"] = "2001-01-01T00:00:00.000000Z"  # a clock far behind
        clock.now += RETRY_EVERY_S * 4  # renewed less often than the duration, but renewed
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == "a"


def test_stepping_down_fails_health_stops_the_operator_and_signals_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[int] = []
    # leader.py's `os` is this module: patching os.kill is what the signal goes through.
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append(sig))
    leader = _election(_Leases(), _Clock(), "a")
    stop = threading.Event()
    leader.step_down(stop)
    leader.step_down(stop)
    assert leader.lost.is_set() and stop.is_set()
    assert sent == [signal.SIGTERM]


def test_a_stepped_down_leader_that_does_not_stop_in_time_exits_hard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # kopf blocked in a call to an unreachable API server must not keep the
    # process acting until that call returns (the chaos tier's API outage).
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    monkeypatch.setattr(leader_module, "STEP_DOWN_EXIT_S", 0.05)
    exited: list[int] = []
    done = threading.Event()

    def fake_exit(code: int) -> None:
        exited.append(code)
        done.set()

    leader = leader_module.LeaderElection(
        cast(Kube, _Leases()),
        "ns",
        "lease",
        "a",
        clock=_Clock(),
        exit=fake_exit,
    )
    leader.step_down(threading.Event())
    assert done.wait(5) and exited == [1]


def test_a_clean_stop_releases_the_lease_to_a_standby_at_once() -> None:
    leases, clock = _Leases(), _Clock()
    leader, standby = _election(leases, clock, "a"), _election(leases, clock, "b")
    assert leader._try() is True
    assert standby._try() is False  # a holds it
    assert leader.release() is True
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == ""
    clock.now += RETRY_EVERY_S  # the standby's next attempt, long before the Lease runs out
    assert standby._try() is True
    assert leases.lease["spec"]["holderIdentity"] == "b"
    assert leases.lease["spec"]["leaseDurationSeconds"] == LEASE_DURATION_S


def test_only_the_holder_releases_and_a_stepped_down_leader_does_not() -> None:
    leases, clock = _Leases(), _Clock()
    leader, other = _election(leases, clock, "a"), _election(leases, clock, "b")
    assert leader._try() is True
    assert other.release() is False  # not its Lease: untouched
    assert leases.lease is not None and leases.lease["spec"]["holderIdentity"] == "a"
    leader.lost.set()  # stepped down: another replica may already lead
    assert leader.release() is False
    assert leases.lease["spec"]["holderIdentity"] == "a"

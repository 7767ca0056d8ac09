"""The leader-election decision (corral.controller.leader.claim)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from corral.controller.leader import claim

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
    lease = claim(None, name="corral-operator-leader", identity="a", now=NOW)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseTransitions"] == 0


def test_another_holders_current_lease_is_respected() -> None:
    assert claim(_lease("b", NOW - timedelta(seconds=5)), name="x", identity="a", now=NOW) is None


def test_an_expired_lease_is_taken_over_and_counts_a_transition() -> None:
    lease = claim(_lease("b", NOW - timedelta(seconds=16)), name="x", identity="a", now=NOW)
    assert lease is not None
    assert lease["spec"]["holderIdentity"] == "a"
    assert lease["spec"]["leaseTransitions"] == 4
    assert lease["spec"]["acquireTime"].startswith("2026-11-22T12:00:00")
    assert lease["metadata"]["resourceVersion"] == "42"  # the write is conditional on it


def test_the_holder_renews_without_a_transition() -> None:
    lease = claim(_lease("a", NOW - timedelta(seconds=5)), name="x", identity="a", now=NOW)
    assert lease is not None
    assert lease["spec"]["leaseTransitions"] == 3
    assert lease["spec"]["renewTime"].startswith("2026-11-22T12:00:00")
    assert lease["spec"]["acquireTime"] == "2026-11-22T11:00:00.000000Z"


def test_a_released_lease_is_free_to_take() -> None:
    lease = claim(_lease(None, NOW), name="x", identity="a", now=NOW)
    assert lease is not None and lease["spec"]["holderIdentity"] == "a"

"""The lease a worker asks for with each claim and renewing beat
(`corral.worker._queue.lease_grant_s`): its --lease plus a quarter of it, at
most a minute more, and never past the database's cap of an hour. Its beats
renew a lease only once less than --lease is left
(tests/integration/test_worker_runtime.py), so the slack is what spares a
held job's row a rewrite on every beat."""

from __future__ import annotations

import pytest

from corral.worker._queue import lease_grant_s


@pytest.mark.parametrize(
    ("lease_s", "granted_s"),
    [(2, 2.5), (30, 37.5), (240, 300), (600, 660), (3550, 3600), (3600, 3600)],
)
def test_a_lease_is_granted_with_a_quarter_more_at_most_a_minute_and_an_hour_in_all(
    lease_s: float, granted_s: float
) -> None:
    assert lease_grant_s(lease_s) == granted_s

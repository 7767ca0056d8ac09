"""The claim size (corral.worker.claimsize): never past the free slots, small
while the queue is shallow, growing to the cap while it is deep."""

from __future__ import annotations

import pytest

from corral.worker.claimsize import FLOOR, SERVER_CAP, ClaimSize, next_target, smoothed


def drain(size: ClaimSize, backlog: int, free: int) -> list[int]:
    """Claims one worker makes against a queue of `backlog` jobs, with
    `free` slots open at every claim (jobs finish between claims); the
    server returns at most SERVER_CAP jobs a claim, as corral_claim_v5 does."""
    claims = []
    while True:
        asked = size.ask(free)
        got = min(asked, backlog, SERVER_CAP)
        backlog -= got
        size.claimed(asked, got)
        if got:
            claims.append(got)
        if got < asked:
            return claims


@pytest.mark.parametrize("free", [0, 1, 3, 7, 64, 999, 5000])
def test_a_claim_never_asks_for_more_than_the_free_slots(free: int) -> None:
    size = ClaimSize(1000)
    for _ in range(30):
        asked = size.ask(free)
        assert 0 <= asked <= free
        size.claimed(asked, asked)  # always full: a deep queue
    assert size.ask(free) == min(free, 1000)


def test_a_claim_never_asks_for_more_than_the_cap() -> None:
    claims = drain(ClaimSize(50), 10_000, free=10_000)
    assert max(claims) == 50
    assert claims.count(50) >= 190


def test_a_shallow_burst_is_claimed_in_small_batches() -> None:
    # Eight jobs and a hundred free slots: no claim takes them all, so a
    # second worker woken by the same NOTIFY gets some.
    claims = drain(ClaimSize(100), 8, free=100)
    assert sum(claims) == 8
    assert claims[0] == FLOOR
    assert max(claims) < 8
    assert len(claims) >= 3


def test_a_deep_queue_reaches_the_cap_in_a_few_claims() -> None:
    claims = drain(ClaimSize(1000), 100_000, free=1000)
    assert claims[:4] == [2, 4, 8, 16]
    assert claims.index(1000) <= 10
    assert claims.count(1000) >= 95


def test_a_lone_job_costs_one_claim() -> None:
    assert drain(ClaimSize(100), 1, free=100) == [1]


def test_a_short_claim_falls_back_to_what_it_found() -> None:
    size = ClaimSize(1000)
    drain(size, 100_000, free=1000)  # at the cap now
    assert next_target(1000, 1000, 37, cap=1000) == 37
    assert next_target(1000, 1000, 0, cap=1000) == FLOOR
    size.claimed(1000, 0)
    assert size.ask(1000) == FLOOR


def test_a_claim_held_back_by_free_slots_does_not_grow_the_target() -> None:
    # Full at 5 of a target of 64 only says the queue held 5.
    assert next_target(64, 5, 5, cap=1000) == 64
    assert next_target(64, 64, 64, cap=1000) == 128
    assert next_target(64, 0, 0, cap=1000) == 64


def test_a_cap_below_the_floor_is_the_target() -> None:
    size = ClaimSize(1)
    assert size.ask(100) == 1
    size.claimed(1, 0)
    assert size.ask(100) == 1


def test_a_cap_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ClaimSize(0)


def test_a_cap_above_what_the_server_returns_is_held_to_it() -> None:
    # --batch-size 5000 against a deep queue: each claim gets the server's
    # 1,000, which must read as full (keep claiming), not as an empty queue.
    size = ClaimSize(5000)
    claims = drain(size, 100_000, free=10_000)
    assert max(claims) == SERVER_CAP
    assert sum(claims) == 100_000


def test_jobs_that_finish_before_a_claim_returns_are_claimed_up_to_the_free_slots() -> None:
    # No-op jobs (50 µs) against a 2 ms claim: another worker's claim could
    # not start them sooner, so the burst is taken whole, in one claim.
    size = ClaimSize(100)
    size.round_trip(0.002)
    assert size.ask(100, job_s=0.00005) == 100
    assert size.ask(7, job_s=0.00005) == 7  # still never past the free slots
    assert size.ask(0, job_s=0.00005) == 0
    claims = []
    backlog = 8
    while backlog:
        asked = size.ask(100, job_s=0.00005)
        got = min(asked, backlog)
        backlog -= got
        size.claimed(asked, got)
        claims.append(got)
    assert claims == [8]


def test_jobs_that_outlast_a_claim_keep_the_small_start() -> None:
    # 200 ms jobs against a 2 ms claim: a burst is worth sharing.
    size = ClaimSize(100)
    size.round_trip(0.002)
    assert size.ask(100, job_s=0.2) == FLOOR


def test_before_any_job_or_claim_is_timed_claims_start_small() -> None:
    size = ClaimSize(100)
    assert size.ask(100, job_s=0.00005) == FLOOR  # no claim timed yet
    size.round_trip(0.002)
    assert size.ask(100, job_s=None) == FLOOR  # no job finished yet
    assert size.ask(100) == FLOOR


def test_the_round_trip_is_a_moving_average() -> None:
    # One slow claim (a checkpoint, a busy moment) does not flip the rule.
    size = ClaimSize(100)
    for _ in range(20):
        size.round_trip(0.002)
    size.round_trip(0.5)
    assert size.round_trip_s == pytest.approx(0.002 + 0.2 * (0.5 - 0.002))
    assert smoothed(None, 3.0) == 3.0
    assert smoothed(1.0, 2.0) == pytest.approx(1.2)

"""`make bench-queue`'s steady rate (bench/queue.py, `median_drain`): the
jobs finished after a drain's first second over the time they took. A drain
that ends within about a second (a fast machine drains 50,000 jobs in under
one) has no such window: the run then measures the steady rate in longer
drains instead of printing `steady_jobs_s=nan`, and keeps the end-to-end
rate of the drains of the size asked for."""

from __future__ import annotations

import math

import pytest
from bench import queue as bench_queue
from bench.queue import Drain, median_drain


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_queue, "say", lambda *args, **kwargs: None)


def test_a_drain_too_short_for_a_steady_rate_is_followed_by_longer_ones() -> None:
    sizes: list[int] = []

    def drain(n: int) -> Drain:
        sizes.append(n)
        if n == 50_000:  # 0.84 s at 59,500 jobs/s: nothing after the first second
            return Drain(59_500.0 + len(sizes), math.nan)
        return Drain(60_000.0, 70_000.0 + len(sizes))

    result = median_drain(3, "corral drain", 50_000, drain)
    # About 3 s at the end-to-end rate, in whole 10,000s: 178,500 -> 180,000.
    assert sizes == [50_000] * 3 + [180_000] * 3
    assert result.rate == 59_502.0  # the median of the 50,000-job drains
    assert result.steady == 70_005.0  # the median of the longer drains'


def test_drains_long_enough_give_their_own_steady_rate() -> None:
    sizes: list[int] = []

    def drain(n: int) -> Drain:
        sizes.append(n)
        return Drain(20_000.0, 25_000.0 + len(sizes))

    result = median_drain(3, "pgqueuer drain", 50_000, drain)
    assert sizes == [50_000] * 3
    assert result == Drain(20_000.0, 25_002.0)

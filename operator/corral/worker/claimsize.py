"""How many jobs the next claim asks for: pure sizing, no I/O.

The dispatcher (`corral.worker.claims.dispatch`) asks `ClaimSize.ask(free)`
before each claim and tells `ClaimSize.claimed(asked, got)` what came back.
The claim's answer is the backlog estimate: a claim that came back full says
the queue held at least that many (more are probably waiting), a short one
says this worker just emptied what it may take.

The rule, like TCP's slow start:

* never more than the free slots (a claimed job waits for no slot), nor the
  cap (`--batch-size`, default `min(concurrency, 1000)`; the server caps a
  claim at 1,000);
* start small (`FLOOR`), and double after each claim that came back full at
  the full target, so a deep queue reaches the cap in about ten claims;
* after a short claim, fall back to what that claim found (at least
  `FLOOR`): a shallow queue is claimed in small batches, so a short burst is
  shared by the workers that woke for it instead of one worker hoarding it,
  and a lone job costs one claim;
* but while this worker's jobs finish faster than a claim's round trip
  (`ask(free, job_s=...)`), claim up to the free slots at once: another
  worker's claim could not start such jobs sooner than this worker runs
  them, and every extra claim is a round trip that the whole machine pays
  for. Measured at a steady 1,000 no-op jobs/s on 2 cores (docs/benchmarks.md,
  "Claim sizes at a steady rate"): small claims cost the workers about a
  quarter more CPU per job and raised the enqueue-to-start p50 from about
  1.8 to 2.5 ms.
"""

from __future__ import annotations

__all__ = ["FLOOR", "SERVER_CAP", "ClaimSize", "next_target", "smoothed"]

FLOOR = 2  # jobs: the smallest target; one lone job is still one claim
# corral_claim_v2/_v3 return at most 1,000 jobs: asking for more would read
# as a short claim (the queue looks empty) while it is deep.
SERVER_CAP = 1000
_WEIGHT = 0.2  # of the newest sample in a moving average


def smoothed(average: float | None, sample: float) -> float:
    """`average` moved a fifth of the way to `sample` (the first sample as it is)."""
    return sample if average is None else average + _WEIGHT * (sample - average)


def next_target(target: int, asked: int, got: int, *, cap: int) -> int:
    """The target after a claim that asked for `asked` jobs and got `got`."""
    floor = min(FLOOR, cap)
    if asked <= 0:
        return target
    if got >= asked:
        # Full: the queue held at least `asked`. Grow only when the claim
        # asked for the whole target (a claim held back by free slots says
        # nothing beyond them).
        return min(cap, target * 2) if asked >= target else target
    # Short: this claim emptied the queue (for this worker); what it found is
    # the best guess of what the next wake-up brings.
    return max(floor, min(cap, got))


class ClaimSize:
    """The dispatcher's claim size: `ask(free, job_s=...)` before a claim,
    `claimed(asked, got)` and `round_trip(seconds)` after it."""

    __slots__ = ("cap", "round_trip_s", "target")

    def __init__(self, cap: int) -> None:
        if cap < 1:
            raise ValueError(f"the claim cap must be at least 1 (got {cap})")
        self.cap = min(cap, SERVER_CAP)
        self.target = min(FLOOR, cap)
        self.round_trip_s: float | None = None  # a claim's, moving average

    def ask(self, free: int, *, job_s: float | None = None) -> int:
        """Jobs to claim now with `free` slots open (0 when none is); `job_s`
        is how long this worker's recent jobs ran (None: none finished yet)."""
        if self.outpaced_by(job_s):
            return max(0, min(self.cap, free))
        return max(0, min(self.target, free))

    def outpaced_by(self, job_s: float | None) -> bool:
        """Jobs that run `job_s` finish before a claim comes back."""
        trip = self.round_trip_s
        return job_s is not None and trip is not None and job_s < trip

    def claimed(self, asked: int, got: int) -> None:
        self.target = next_target(self.target, asked, got, cap=self.cap)

    def round_trip(self, seconds: float) -> None:
        """A claim took `seconds` from sending it to its rows."""
        self.round_trip_s = smoothed(self.round_trip_s, seconds)

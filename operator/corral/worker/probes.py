"""The verdicts of the worker's probes, as pure functions of what the runtime
knows: `/readyz` (`readiness`: may this pod get work?) and `/healthz`
(`liveness`: can this worker still make progress, or should Kubernetes
restart it?). `corral.worker.runtime` feeds them; the endpoint serves them.
"""

from __future__ import annotations

from corral.worker.drain import State

__all__ = ["FLUSH_STALL_S", "HEARTBEAT_STALE_MIN_S", "liveness", "readiness"]

FLUSH_STALL_S = 60.0  # /healthz fails when completions could not be written this long
# /healthz fails when no heartbeat got through for 10 intervals, and never sooner than this.
HEARTBEAT_STALE_MIN_S = 30.0


def readiness(enrolled: bool, state: State) -> tuple[bool, str]:
    """Ready once enrolled and while active: a draining or drained worker is
    taken out of its Service's endpoints, not restarted."""
    if not enrolled:
        return False, "not enrolled yet"
    if state is not State.ACTIVE:
        return False, f"{state}: not accepting jobs"
    return True, "ready"


def liveness(
    *, heartbeat_age_s: float, heartbeat_interval_s: float, flush_stalled_s: float
) -> tuple[bool, str]:
    """Healthy unless heartbeats or completions have stalled for long (0: no
    stall, or nothing to judge yet). A drained worker is healthy: it must stay
    up until its pod is terminated."""
    if heartbeat_age_s > max(HEARTBEAT_STALE_MIN_S, 10 * heartbeat_interval_s):
        return False, f"no successful heartbeat for {heartbeat_age_s:.0f}s"
    if flush_stalled_s > FLUSH_STALL_S:
        return False, f"completions could not be written for {flush_stalled_s:.0f}s"
    return True, "ok"

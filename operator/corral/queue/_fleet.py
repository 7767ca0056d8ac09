"""The operator's view of a pool, written once like `_operations`: sans-IO
operations that `Queue` (and `AsyncQueue`) turn into methods.

Called by the operator's reconciler and autoscaler (`corral.controller`):
the backlog a pool scales on, the flow figures of target-wait mode, one
pool's workers, the drains the scaler asks for and cancels, and the record
of interrupted jobs (which proves a scale-down interrupted nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.queue import _params as p
from corral.queue import records as r
from corral.queue._operations import Operation, Statement


def backlog(
    queues: Sequence[str],
    region: str | None = None,
    *,
    cap: int = p.DEFAULT_DEPTH_CAP,
    lead_s: float = 0.0,
) -> Operation[r.Backlog]:
    """Jobs ready for workers of `region` on `queues`: in all of them and in
    those not paused; each count stops at `cap` (cheap at any backlog).
    Scheduled jobs due within `lead_s` seconds count as ready."""
    params = {"queues": list(queues), "region": region or "", "cap": cap, "lead": lead_s}
    waiting, dispatchable = (int(v) for v in (yield Statement("backlog", params, prepare=True))[0])
    return r.Backlog(waiting, dispatchable, capped=waiting >= cap)


def flow(
    queues: Sequence[str], region: str | None = None, *, window_s: float = 60.0
) -> Operation[r.Flow]:
    """Arrivals, completions and mean run time on `queues` over the last `window_s`."""
    params = {"queues": list(queues), "region": region or "", "window": window_s}
    arrivals, completed, mean = (yield Statement("flow", params))[0]
    return r.Flow(window_s, int(arrivals), int(completed), None if mean is None else float(mean))


def pool_workers(pool: str) -> Operation[list[r.Worker]]:
    """The registry rows of one pool's workers (removed ones left out)."""
    rows = yield Statement("pool_workers", (pool,), prepare=True)
    return [p.worker_from_row(row) for row in rows]


def scaler_drain(worker_ids: Sequence[int]) -> Operation[list[int]]:
    """The operator asks active workers to drain before it removes them;
    returns the ids that moved to draining."""
    if not worker_ids:
        return []
    return [int(row[0]) for row in (yield Statement("scaler_drain", (list(worker_ids),)))]


def scaler_undrain(worker_ids: Sequence[int]) -> Operation[list[int]]:
    """Cancel drains the operator asked for (demand needs the workers again);
    returns the ids that are active again."""
    if not worker_ids:
        return []
    return [int(row[0]) for row in (yield Statement("scaler_undrain", (list(worker_ids),)))]


def interruptions(job_id: int | None = None) -> Operation[list[r.Interruption]]:
    """Running jobs taken from their worker unfinished (of one job, or all)."""
    rows = yield Statement("interruptions", {"job": job_id})
    return [
        r.Interruption(int(job), worker, int(attempt), r.InterruptionReason(reason), at)
        for job, worker, attempt, reason, at in rows
    ]

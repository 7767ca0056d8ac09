"""Regions and the jobs fanned out over them, written once like
`_operations`: sans-IO operations that `Queue` and `AsyncQueue` turn into
methods.

`list_regions` is what `corral regions list` prints; `enqueue_group` puts
one job per region under a group (one transaction) and `get_group` reads it
back, rolled up by its rule (`corral.queue.groups`, pure).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from corral.queue import _operations as op
from corral.queue import _params as p
from corral.queue import groups as g
from corral.queue import records as r
from corral.queue.errors import GroupNotFound, InvalidJob


def list_regions(*, live_s: float = p.LIVE_WORKER_S) -> op.Operation[list[r.RegionInfo]]:
    """Every region with workers, a pool's enrollment token, or jobs waiting:
    its live workers (a heartbeat within `live_s`), pools and depth."""
    rows = yield op.Statement("regions", {"live_s": live_s})
    return [
        r.RegionInfo(str(name), int(live), list(pools), int(depth), bool(can_start))
        for name, live, pools, depth, can_start in rows
    ]


@op.transactional
def enqueue_group(
    kind: str,
    payload: Any = None,
    *,
    regions: Sequence[str],
    rule: str = "all",
    queue: str | None = None,
    priority: int = 0,
    run_at: dt.datetime | None = None,
    expires_at: dt.datetime | None = None,
    max_attempts: int | None = None,
    allow_empty_region: bool = False,
) -> op.Operation[r.JobGroup]:
    """One job per region under a new group, all or none; the group's status
    is `rule` (all, any, majority) over the jobs' outcomes. Every region
    must have a live worker (or a pool that can start one), as for
    `enqueue`, unless `allow_empty_region`. InvalidJob for a bad rule or
    region list."""
    rule_ = g.parse_rule(rule)
    names = g.parse_regions(regions)
    target = queue or kind
    if not (yield op._one("keeps_completed", (target,))):
        raise InvalidJob(
            f"queue {target!r} keeps no completed jobs (keep_completed false), and a group's "
            "status is read from its jobs' history; fan out on another queue, or keep them: "
            f"corral queues set {target} --keep-completed true"
        )
    if not allow_empty_region:
        yield from op.require_served([(name, target) for name in names])
    group_id = int((yield op._one("insert_group", (kind, rule_.value))))
    specs = [
        r.JobSpec(kind, payload, queue, priority, name, run_at, expires_at, max_attempts)
        for name in names
    ]
    ids = yield from op.enqueue_many(specs)
    yield op.Statement("insert_group_jobs", (group_id, names, ids), op.Fetch.ROWCOUNT)
    return (yield from get_group(group_id))


def get_group(group_id: int) -> op.Operation[r.JobGroup]:
    """A group, each region's job and the status its rule rolls them up to."""
    rows = yield op.Statement("get_group", (group_id,))
    if not rows:
        raise GroupNotFound(
            f"no job group {g.group_name(group_id)} (a group id is printed by "
            "`corral jobs enqueue --regions`)"
        )
    jobs = [
        r.GroupJob(
            str(region),
            int(job_id),
            None if state is None else r.JobState(state),
            attempt,
            last_error,
        )
        for _, _, _, _, region, job_id, state, attempt, last_error in rows
        if region is not None
    ]
    first = rows[0]
    status = g.rollup(g.Rule(first[2]), [job.state for job in jobs])
    return r.JobGroup(int(first[0]), str(first[1]), str(first[2]), first[3], status.value, jobs)

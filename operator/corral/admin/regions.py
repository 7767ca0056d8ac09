"""The admin's view of regions: `corral regions list`.

Registered in `corral/cli.py` (`_COMMANDS`) beside `corral workers`, whose
options, error handling and printer it shares (`corral.admin.cli`,
`corral.admin._output`). What it reads is the database's (`Queue.list_regions`):
the workers' registry, the pools' enrollment tokens and the jobs waiting; the
Region objects in Kubernetes say the same per region in their status
(`kubectl get regions`).
"""

from __future__ import annotations

import click

from corral.admin._output import plain
from corral.admin.cli import _CONTEXT, _list_command
from corral.queue.client import Queue

_HEADERS = ["REGION", "WORKERS", "POOLS", "DEPTH", "ACCEPTS-JOBS"]


@click.group(context_settings=_CONTEXT)
def regions() -> None:
    """Regions: where workers heartbeat, their pools and the jobs waiting."""


_list_command(
    regions,
    """List each region with live workers, pools or jobs waiting.

    WORKERS counts workers that heartbeated (or enrolled) in the last 30s;
    POOLS are the WorkerPools of its workers and enrollment tokens; DEPTH the
    jobs for that region not yet running. ACCEPTS-JOBS says whether `corral
    jobs enqueue --region` takes jobs for it without --allow-empty-region:
    a worker heartbeats there, or a pool there can start one.
    """,
    Queue.list_regions,
    _HEADERS,
    lambda r: [r.name, r.workers, ",".join(r.pools), r.depth, "yes" if r.accepts_jobs else "no"],
    lambda r: {**plain(r), "accepts_jobs": r.accepts_jobs},
)

"""The queue-name rule, once: 1 to 63 letters, digits and _ . : -, starting
with a letter or digit.

A leaf module (standard library only), read by the WorkerPool model that
validates `spec.queues` (`corral.api.v1alpha1`, whose CRD schema carries
`PATTERN` and `MAX_LENGTH`), by the worker's settings (`corral.worker.config`,
`--queues`) and by the admin commands that name a queue (`corral jobs
enqueue --queue/--result-queue` and the KIND a queue defaults to, `queues
set`, `dispatch pause|resume|status --queue`, `schedules create --queue`,
`tokens create --queue`), so that nothing accepts a name a worker or a pool
refuses to claim from.
"""

from __future__ import annotations

import re

__all__ = ["MAX_LENGTH", "PATTERN", "RULE", "check", "problem", "quoted"]

PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
MAX_LENGTH = 63
RULE = "1 to 63 letters, digits and _ . : -, starting with a letter or digit"
_NAME = re.compile(PATTERN)


def quoted(name: str) -> str:
    """`name` quoted for an error, a long one cut (with its length)."""
    return repr(name) if len(name) <= 80 else f"{name[:40]!r}… ({len(name)} characters)"


def problem(name: str) -> str | None:
    """Why `name` is not a queue name (quoting it), or None when it is one."""
    if len(name) > MAX_LENGTH or not _NAME.match(name):
        return f"{quoted(name)} is not a queue name; use {RULE}"
    return None


def check(name: str) -> str:
    """`name`, or ValueError saying why it is not a queue name."""
    why = problem(name)
    if why is not None:
        raise ValueError(why)
    return name

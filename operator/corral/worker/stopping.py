"""Stopping the worker's tasks at exit, and leaving when they will not stop.

`corral.worker.runtime.Worker` stops its own tasks with `stop_tasks` when it
shuts down; `exit_now` ends the process without waiting for what would not
stop (a sync handler's thread, a handler that ignores its cancellation).
`corral.worker.launch` calls `exit_now` too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

__all__ = ["exit_now", "stop_tasks"]

_STOP_ROUNDS, _STOP_WAIT_S = 5, 1.0  # cancel, wait; again for a task that swallowed it


def exit_now(code: int) -> None:
    """Leave at once, logs and output flushed, joining no thread and waiting
    for no task (`corral worker`: a stuck sync handler or task)."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


async def stop_tasks(
    tasks: list[asyncio.Task[Any]], *, rounds: int = _STOP_ROUNDS, wait_s: float = _STOP_WAIT_S
) -> list[str]:
    """Cancel `tasks` until they are done, at most `rounds` times `wait_s`;
    the names of those still running. Cancelling once and awaiting is not
    enough: a cancellation can be lost (Python 3.11's `wait_for` drops one
    that lands as the awaited event is set), and the worker would hang at
    exit with its pod Terminating until SIGKILL."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(rounds):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=wait_s)
    for task in tasks:  # retrieve what they ended with: no "never retrieved" noise
        if task.done() and not task.cancelled():
            task.exception()
    return sorted(task.get_name() for task in pending)

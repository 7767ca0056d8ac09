"""The operator's one connection to the job queue, shared by its handler threads.

The reconciler calls `QueueAccess.run(fn)` with a function of a
`corral.queue.Queue`; that package is still the only code speaking SQL. One
connection is plenty for an operator that reads a few counts per pool every
few seconds; it is re-opened after any failure, and a failure surfaces as
`DatabaseUnavailable` with the password masked, which the pool's status shows.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from corral.queue import Queue, QueueError, mask_dsn

T = TypeVar("T")


class DatabaseUnavailable(RuntimeError):
    """The queue database could not be reached or answered with an error."""


class QueueAccess:
    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._queue: Queue | None = None
        self._lock = threading.Lock()

    def run(self, fn: Callable[[Queue], T]) -> T:
        with self._lock:
            try:
                if self._queue is None:
                    self._queue = Queue.connect(self._dsn)
                return fn(self._queue)
            except QueueError:
                raise  # an answer (no such token, worker...), not an outage
            except Exception as exc:
                self._close()
                raise DatabaseUnavailable(
                    f"database unreachable: {mask_dsn(str(exc)).strip()}"
                ) from exc

    def _close(self) -> None:
        if self._queue is not None:
            # It is broken already; a fresh one comes with the next call.
            with contextlib.suppress(Exception):
                self._queue.close()
            self._queue = None

    def close(self) -> None:
        with self._lock:
            self._close()

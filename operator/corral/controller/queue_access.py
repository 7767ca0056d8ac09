"""The operator's connections to the job queue, shared by its handler threads.

The reconciler calls `QueueAccess.run(fn)` with a function of a
`corral.queue.Queue`; that package is still the only code speaking SQL.
Up to `size` connections serve concurrent callers, each used by one call at
a time, so one slow or hung query holds up only its own pool's reconcile,
never the others'. Every connection carries `corral.queue`'s statement limit
and TCP timeouts, so a call cannot hang for ever; an idle connection is
checked (an empty query) before it is reused, so that those a database
restart cut fail no call; a connection that failed during a call is dropped
(a fresh one comes with the next call), and a failure surfaces as
`DatabaseUnavailable` with the password masked, which the pool's status shows.

`stalled_for()` tells /healthz how long the oldest call in flight has been
running: a database path stuck past every timeout makes the operator
unhealthy, and Kubernetes restarts it.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from corral.queue import Queue, QueueError, mask_dsn

T = TypeVar("T")

DEFAULT_SIZE = 4
WAIT_FOR_CONNECTION_S = 30.0  # a call that finds every connection busy this long fails


class DatabaseUnavailable(RuntimeError):
    """The queue database could not be reached or answered with an error."""


class QueueAccess:
    def __init__(
        self,
        dsn: str,
        *,
        size: int = DEFAULT_SIZE,
        connect: Callable[[str], Queue] = Queue.connect,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self._connect = connect
        self._clock = clock
        self._size = size
        self._slots = threading.BoundedSemaphore(size)
        self._lock = threading.Lock()
        self._idle: list[Queue] = []
        self._in_flight: dict[int, float] = {}
        self._ids = itertools.count()
        self._closed = False

    def run(self, fn: Callable[[Queue], T]) -> T:
        if not self._slots.acquire(timeout=WAIT_FOR_CONNECTION_S):
            raise DatabaseUnavailable(
                f"database stalled: all {self._size} connections busy for "
                f"{WAIT_FOR_CONNECTION_S:g}s"
            )
        call = next(self._ids)
        with self._lock:
            self._in_flight[call] = self._clock()
        queue = self._take_idle()
        try:
            try:
                if queue is None:
                    queue = self._connect(self._dsn)
                result = fn(queue)
            except QueueError:
                self._give_back(queue)
                raise  # an answer (no such token, worker...), not an outage
            except Exception as exc:
                if queue is not None:
                    # It is broken already; a fresh one comes with the next call.
                    with contextlib.suppress(Exception):
                        queue.close()
                raise DatabaseUnavailable(
                    f"database unreachable: {mask_dsn(str(exc)).strip()}"
                ) from exc
            self._give_back(queue)
            return result
        finally:
            with self._lock:
                del self._in_flight[call]
            self._slots.release()

    def _take_idle(self) -> Queue | None:
        """An idle connection that still answers, or None: one round trip
        each, against a call failed (and a pool flipped to Degraded with a
        Warning) for each connection a restart of the database cut."""
        while True:
            with self._lock:
                queue = self._idle.pop() if self._idle else None
            if queue is None:
                return None
            try:
                queue.conn.execute("")
                return queue
            except Exception:
                with contextlib.suppress(Exception):
                    queue.close()

    def _give_back(self, queue: Queue | None) -> None:
        if queue is None:
            return
        with self._lock:
            if not self._closed and not queue.conn.closed:
                self._idle.append(queue)
                return
        with contextlib.suppress(Exception):
            queue.close()

    def stalled_for(self) -> float:
        """Seconds the oldest call in flight has been running (0: none)."""
        with self._lock:
            oldest = min(self._in_flight.values(), default=None)
        return 0.0 if oldest is None else self._clock() - oldest

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for queue in idle:
            with contextlib.suppress(Exception):
                queue.close()

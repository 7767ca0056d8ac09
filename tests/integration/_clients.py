"""Both queue clients behind one interface, for the shared conformance suite.

river tests each of its drivers with one suite (riverdrivertest); corral does
the same for `Queue` and `AsyncQueue`: the claim, lease, registry and token
tests take the `queue` fixture (a connected client) or the `connect` fixture
(tests/integration/conftest.py) instead of `Queue.connect`, and run once per
client. `BlockingAsyncQueue` runs each
AsyncQueue call to completion on its own event loop, so a test body written
against Queue runs unchanged on the asyncio client.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from corral.queue import AsyncQueue, Queue
from corral.queue._methods import ClientMethods


class BlockingAsyncQueue:
    """AsyncQueue, call by call. The calls only Queue has (list_tokens,
    list_jobs, ...) go to a sync Queue on the same database: they are how a
    test looks at the outcome, not what it tests. A call of
    `ClientMethods` (both clients') is always AsyncQueue's own."""

    def __init__(self, dsn: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = self._loop.run_until_complete(AsyncQueue.connect(dsn))
        self._sync = Queue.connect(dsn)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._async, name, None)
        if inspect.iscoroutinefunction(method):
            return lambda *args, **kwargs: self._loop.run_until_complete(method(*args, **kwargs))
        if name in vars(ClientMethods):
            # A call both clients must have: never let the sync client stand
            # in for it, or a missing AsyncQueue method would pass the suite.
            raise AttributeError(f"AsyncQueue has no coroutine method {name!r}")
        return getattr(self._sync, name)

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._async.close())
        finally:
            self._loop.close()
            self._sync.close()

    def __enter__(self) -> BlockingAsyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The `queue` fixture's type: a Queue, or a BlockingAsyncQueue standing in for one.
Client = Queue | BlockingAsyncQueue
# The `connect` fixture's type: Queue.connect or BlockingAsyncQueue.
Connect = Callable[[str], Client]

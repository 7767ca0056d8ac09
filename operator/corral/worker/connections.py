"""The worker's database connections: how each of them opens, and `Link`,
which holds one, opens it when a call first needs it and again after it
broke. `corral.worker._queue.QueueSession` holds four Links and is the only
user; `corral.worker.jobs` reads `Undecodable` payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from json import loads as _json_loads
from typing import Any

from corral.queue import AsyncQueue, ConnectionLost
from corral.queue.records import Unloadable

__all__ = ["Link", "Undecodable", "claim_connection", "listen_connection", "loads"]

log = logging.getLogger("corral.worker")


class Link:
    """One of the worker's connections: opened when first needed (`queue` is
    None until then), and again when it broke."""

    def __init__(
        self,
        name: str,
        reopen: Callable[[], Awaitable[AsyncQueue]],
        queue: AsyncQueue | None = None,
    ) -> None:
        self.name = name
        self.queue = queue
        self._reopen = reopen
        self._opening: asyncio.Future[AsyncQueue] | None = None

    def open(self) -> None:
        """Start opening it, unless it is open or opening."""
        if self.queue is None and self._opening is None:
            self._open()

    def _open(self) -> asyncio.Future[AsyncQueue]:
        opening = self._opening = asyncio.ensure_future(self._reopen())
        # Its failure is raised to whoever waits (as ConnectionLost); one that
        # nobody waited for (the worker stopped first) is not an error to log.
        opening.add_done_callback(lambda done: done.cancelled() or done.exception())
        return opening

    def usable(self) -> bool:
        """Open, as far as psycopg knows (False before its first opening)."""
        return self.queue is not None and not self.queue.conn.closed

    async def ready(self) -> AsyncQueue:
        """The open connection: the one opening (or a new one in place of a
        broken one), once open. Callers waiting together share one opening;
        a caller cancelled meanwhile does not cancel it. Raises
        ConnectionLost while the server cannot be reached."""
        queue = self.queue
        if queue is not None and not queue.conn.closed:
            return queue
        opening = self._opening or self._open()
        try:
            fresh = await asyncio.shield(opening)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if self._opening is opening:
                self._opening = None  # the next call tries again
            raise ConnectionLost(f"{self.name} connection: {exc}") from None
        if self._opening is opening:  # the first of the callers to get it in
            self._opening = None
            self.queue = fresh
            if queue is not None:
                with contextlib.suppress(Exception):
                    await queue.close()
                log.info("%s connection to the database open again", self.name)
        return self.queue or fresh

    async def close(self) -> None:
        opening, self._opening = self._opening, None
        if opening is not None:
            opening.cancel()
            await asyncio.wait([opening])
            if not opening.cancelled() and opening.exception() is None:
                with contextlib.suppress(Exception):
                    await opening.result().close()
        if self.queue is not None:
            with contextlib.suppress(Exception):
                await self.queue.close()


class Undecodable(Unloadable):
    """A claimed payload Python could not decode (nested deeper than its
    parser goes, for one: PostgreSQL's jsonb allows more). It stands in for
    the payload so that the rest of the batch runs; the job fails as
    `payload`, straight to dead, with `error` in its message."""

    __slots__ = ()


def loads(data: str | bytes) -> Any:
    """JSON payload decoder for claimed rows: `{}` (most jobs) without the
    decoder's encoding detection and regex passes, always a new object so
    that no two jobs share a payload; anything else through `json.loads`.
    One payload that cannot be decoded never fails the claim (its batch is
    leased already): it becomes `Undecodable`."""
    text = data if isinstance(data, str) else bytes(data).decode()
    if text == "{}":
        return {}
    if text == "null":
        return None
    try:
        return _json_loads(text)
    except (RecursionError, ValueError) as exc:
        return Undecodable(f"{type(exc).__name__}: {exc}"[:300])


async def claim_connection(url: str) -> AsyncQueue:
    """The connection claims (and, at start, the enrollment) run on."""
    # The claim connection decodes every claimed row. Its session runs in UTC
    # (unless the DSN's options name a TimeZone): psycopg then reads each of
    # a row's four timestamps as a datetime in `datetime.UTC` instead of
    # converting it to the server's zone through zoneinfo (about 2 µs a job),
    # and a handler sees `enqueued_at` and `scheduled_for` in UTC whatever
    # the server's zone. The claim functions do no local-time arithmetic.
    queue = await AsyncQueue.connect(url, session={"TimeZone": "UTC"})
    # It also decodes every payload: give it the cheap decoder (a
    # per-connection adapter setting, no SQL involved).
    queue.decode_json_with(loads)
    return queue


async def listen_connection(url: str) -> AsyncQueue:
    """A connection that listens on the queue's wake-up channel from the start."""
    queue = await AsyncQueue.connect(url)
    await queue.listen()
    return queue

"""Noticing an event loop that stopped turning.

An async handler that does blocking work (`time.sleep`, a sync HTTP client,
a CPU-bound loop) freezes everything the worker does on its event loop:
heartbeats (its leases lapse), the timeout watchdog, the completion flusher
and the HTTP endpoint. `LoopWatch` keeps a tick on the loop and a plain
thread beside it; when the tick is late past the threshold, the thread reads
the loop thread's stack and logs which handler blocks it, once per stall,
and counts it (`corral_worker_event_loop_stalls_total`).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable

log = logging.getLogger("corral.worker")

__all__ = ["LoopWatch"]


class LoopWatch:
    def __init__(
        self,
        handlers: Iterable[tuple[str, Callable[..., object]]],
        *,
        threshold_s: float = 1.0,
        period_s: float = 0.1,
        on_stall: Callable[[float, str], None] | None = None,
    ) -> None:
        # A handler is recognised on the stack by its code object.
        self._codes = {
            fn.__code__: kind for kind, fn in handlers if isinstance(fn, types.FunctionType)
        }
        self.threshold_s = threshold_s
        self.period_s = period_s
        self.on_stall = on_stall
        self._last = time.monotonic()
        self._loop_thread = 0
        self._stop = threading.Event()

    async def run(self) -> None:
        """The tick, on the loop; starts the watching thread beside it."""
        self._loop_thread = threading.get_ident()
        self._last = time.monotonic()
        watcher = threading.Thread(target=self._watch, name="corral-loopwatch", daemon=True)
        watcher.start()
        try:
            while True:
                self._last = time.monotonic()
                await asyncio.sleep(self.period_s)
        finally:
            self._stop.set()

    def _watch(self) -> None:
        reported = False
        while not self._stop.wait(self.period_s):
            late = time.monotonic() - self._last
            if late <= self.threshold_s:
                reported = False
                continue
            if reported:
                continue
            reported = True
            where = self.culprit(sys._current_frames().get(self._loop_thread))
            log.error(
                "event loop blocked for %.1fs by %s: heartbeats, timeouts and the endpoint wait "
                "until it returns (async handlers must not block; use a sync handler, which "
                "runs in a thread, or await)",
                late,
                where,
            )
            if self.on_stall is not None:
                self.on_stall(late, where)

    def culprit(self, frame: types.FrameType | None) -> str:
        """The handler on the loop thread's stack, else its innermost frame."""
        innermost = frame
        while frame is not None:
            kind = self._codes.get(frame.f_code)
            if kind is not None:
                return f"handler {kind!r} ({_where(frame)})"
            frame = frame.f_back
        return _where(innermost) if innermost is not None else "an unknown frame"


def _where(frame: types.FrameType) -> str:
    code = frame.f_code
    return f"{code.co_qualname} at {code.co_filename}:{frame.f_lineno}"

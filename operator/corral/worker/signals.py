"""SIGTERM and SIGINT: the first drains (with `--drain-timeout` to finish,
then the worker hands back what still runs and exits 0); a second stops the
process at once.

Installed by `corral.worker.runtime.Worker.run` once the worker is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["StopSignals"]


class StopSignals:
    def __init__(self, drain: Callable[[str, float], None], drain_timeout_s: float) -> None:
        self.drain = drain  # (reason, deadline in seconds): begins the drain
        self.drain_timeout_s = drain_timeout_s
        self.received = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, sig: int) -> None:
        self.received += 1
        name = signal.Signals(sig).name
        if self.received > 1:
            print(f"corral worker: second {name}: stopping at once", file=sys.stderr, flush=True)
            os._exit(1)
        print(
            f"corral worker: {name}: draining for up to {self.drain_timeout_s:g}s, "
            "then handing unfinished jobs back",
            file=sys.stderr,
            flush=True,
        )
        self.drain(name, self.drain_timeout_s)

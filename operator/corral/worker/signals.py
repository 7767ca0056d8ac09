"""The stop signals: SIGQUIT drains (up to `--drain-timeout` for held jobs to
finish); SIGTERM and SIGINT keep a short grace (`--term-grace`). Either way
the worker then hands back what still runs (the attempt is not counted) and
exits 0. A second signal, of any kind, stops the process at once.

In a pod, the preStop hook (`corral worker prestop`) has drained the worker
fully before the kubelet's SIGTERM, so the grace only covers what a drain
cut short. Installed by `corral.worker.runtime.Worker.run` once the worker
is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable

from corral.worker.config import WorkerSettings

__all__ = ["EXIT_SECOND_SIGNAL", "StopSignals"]

EXIT_SECOND_SIGNAL = 1  # the process stopped at once; held jobs return by lease expiry


class StopSignals:
    def __init__(self, drain: Callable[[str, float], None], settings: WorkerSettings) -> None:
        self.drain = drain  # (reason, deadline in seconds): begins the drain
        # Seconds each signal lets held jobs finish before they are handed back.
        self.grace_s: dict[signal.Signals, float] = {
            signal.SIGQUIT: settings.drain_timeout_s,
            signal.SIGTERM: settings.term_grace_s,
            signal.SIGINT: settings.term_grace_s,
        }
        self.received = 0

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self.grace_s:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self.on_signal, sig)

    def on_signal(self, sig: int) -> None:
        self.received += 1
        name = signal.Signals(sig).name
        if self.received > 1:
            print(
                f"corral worker: second signal ({name}): stopping at once",
                file=sys.stderr,
                flush=True,
            )
            os._exit(EXIT_SECOND_SIGNAL)
        grace_s = self.grace_s[signal.Signals(sig)]
        flag = "--drain-timeout" if sig == signal.SIGQUIT else "--term-grace"
        print(
            f"corral worker: {name}: letting held jobs finish for up to {grace_s:g}s "
            f"({flag}), then handing the rest back; a second signal stops at once",
            file=sys.stderr,
            flush=True,
        )
        self.drain(name, grace_s)

"""Children that do not outlive the process that started them.

`die_with_parent(sig)` is a `preexec_fn` (it runs in the child between fork and
exec): a new session, and the kernel sends `sig` to the child when its parent
dies, however it dies (SIGKILL, OOM, a closed terminal). `make dev`
(`corral_local.dev`) starts the node agent and the dashboard with it (SIGTERM:
the agent's handler stops its pods); the node agent's launcher (`nodeagent/_launch.py`,
standard library only) arms the same signal itself after its user switch,
which clears it.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable

PR_SET_PDEATHSIG = 1

try:  # loaded here, before any fork: dlopen in a forked child of a threaded parent may hang
    _LIBC: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - not Linux
    _LIBC = None


def die_with_parent(sig: int) -> Callable[[], None]:
    """A preexec_fn: setsid, then `sig` on the parent's death (even one during the fork)."""
    parent = os.getpid()

    def setup() -> None:
        os.setsid()
        if _LIBC is None or not hasattr(_LIBC, "prctl"):
            return  # not Linux: the explicit stop paths still apply
        _LIBC.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), sig)

    return setup

"""Process checks the integration and e2e tiers share."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while a process with this id exists (a zombie counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True

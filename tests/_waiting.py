"""Polling until something holds, for the tiers that watch real processes
and servers: `tests/integration/_workers.py` (`wait_until`) and
`tests/e2e/_corral.py` (`eventually`, also used by the chaos drills)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T | Literal[False] | None],
    what: str,
    timeout_s: float = 60.0,
    every_s: float = 0.5,
    *,
    retry_errors: bool = True,
) -> T:
    """Poll `check` every `every_s` until it returns something truthy, and
    return that; fail naming `what` and the last value after `timeout_s`.
    With `retry_errors`, an exception counts as a failed try (an object not
    there yet); without, it propagates at once."""
    deadline = time.monotonic() + timeout_s
    last: T | Literal[False] | Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except Exception as exc:
            if not retry_errors:
                raise
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}; last: {last!r}")

"""Human durations for command-line flags: '250ms', '30s', '15m', '1h30m', '7d'.

Used by the admin CLI (`corral tokens create --ttl`, `corral jobs enqueue
--delay/--expires-in`) and anything else that takes a duration from a person.
Pure functions: no I/O.
"""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_EXAMPLES = "write e.g. 30s, 15m, 1h30m, 7d or a number of seconds"


class DurationError(ValueError):
    """Not a duration; the message quotes the input and shows valid forms."""


def parse_duration(text: str, *, what: str = "duration", allow_zero: bool = True) -> float:
    """Seconds in `text`: a bare number of seconds or unit parts ('1h30m')."""
    value = text.strip().lower()
    if not value:
        raise DurationError(f"{what} is empty: {_EXAMPLES}")
    try:
        seconds = float(value)
    except ValueError:
        position = 0
        seconds = 0.0
        for match in _PART.finditer(value):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            position = match.end()
        if position != len(value):
            raise DurationError(f"{what} {text!r} is not a duration: {_EXAMPLES}") from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise DurationError(f"{what} {text!r} must be finite and not negative: {_EXAMPLES}")
    if seconds == 0 and not allow_zero:
        raise DurationError(f"{what} must be longer than zero (got {text!r})")
    return seconds


def format_age(seconds: float | None) -> str:
    """kubectl-style short age: '45s', '12m', '3h', '5d' ('<unknown>' for None)."""
    if seconds is None:
        return "<unknown>"
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{int(seconds)}s"
    if seconds < 7200:
        return f"{int(seconds // 60)}m"
    if seconds < 172800:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"

"""What a job leaves behind, made storable: a handler's return value as JSON
data PostgreSQL accepts, and error text without the characters it refuses.

`jsonb` and `text` refuse the NUL character and a lone surrogate (not
UTF-8); a batch of completions with one such string in it would be refused
whole. `corral.worker.jobs` cleans every result and error through here
before it reaches the completion buffer or the failure path, and words a
handler's exception with `describe` (which no `__str__` that raises stops).
"""

from __future__ import annotations

import json
import logging
import re
import traceback
from collections.abc import Callable
from typing import Any

from corral.queue import ClaimedJob

log = logging.getLogger("corral.worker")

__all__ = ["RESULT_MAX_BYTES", "clean_text", "describe", "result_value", "storable"]

_SURROGATE = re.compile("[\ud800-\udfff]")
RESULT_MAX_BYTES = 1 << 20  # a result larger than this as JSON is kept as a preview


def result_value(claimed: ClaimedJob, result: Any, max_bytes: int = RESULT_MAX_BYTES) -> Any:
    """A handler's return value as JSON data PostgreSQL will store (pydantic
    models, dataclasses, datetimes, UUIDs... converted; NUL characters and
    lone surrogates, which jsonb refuses, replaced). A value JSON cannot
    hold is kept as its repr (`<TypeName>` if repr() fails too), one past
    `max_bytes` as a preview, so that one odd result never blocks a
    completion batch."""
    try:
        value = storable(_jsonable(result))
        text = json.dumps(value, allow_nan=False)
    except Exception as exc:  # TypeError, ValueError, RecursionError (nested too deep)...
        log.warning(
            "job %s (%s) returned a value JSON cannot hold (%s); keeping its repr",
            claimed.id,
            claimed.kind,
            exc,
        )
        return {"unserializable_result": storable(_short_repr(result))}
    if len(text) > max_bytes:
        log.warning(
            "job %s (%s) returned %d bytes of JSON, more than the %d kept; keeping a preview",
            claimed.id,
            claimed.kind,
            len(text),
            max_bytes,
        )
        return {"result_too_large": len(text), "preview": text[:1000]}
    return value


def _first_jsonable(value: Any) -> Any:
    """pydantic_core's `to_jsonable_python`, imported by the first result that
    needs it (not by a worker's start); later calls go straight to it."""
    global _jsonable
    from pydantic_core import to_jsonable_python

    _jsonable = to_jsonable_python
    return to_jsonable_python(value)


_jsonable: Callable[[Any], Any] = _first_jsonable


def _short_repr(value: Any) -> str:
    """`repr(value)`, cut short; `<TypeName>` when repr() itself fails (a
    detached ORM object, an int over Python's 4,300-digit limit, a repr
    that raises): whatever it raises, the job still completes."""
    try:
        return repr(value)[:1000]
    except RecursionError:
        return f"<{type(value).__name__} nested too deeply to show>"
    except Exception:
        return f"<{type(value).__name__}>"


def storable(value: Any) -> Any:
    """`value` (JSON data) with every string cleaned as `clean_text` does."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable(v) for v in value]
    return value


def clean_text(text: str) -> str:
    """`text` as PostgreSQL stores it: no NUL character (text and jsonb
    refuse it) and no lone surrogate (not UTF-8); each becomes U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a str holds surrogates only unpaired
        text = _SURROGATE.sub("\ufffd", text)
    return text


def describe(exc: BaseException) -> str:
    """`Type: message` plus the innermost frame, short enough to keep in a row."""
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename}:{tb[-1].lineno} in {tb[-1].name})" if tb else ""
    return clean_text(f"{type(exc).__name__}: {_text(exc)}{where}"[:2000])


def _text(exc: BaseException) -> str:
    """`str(exc)`, or a note saying why not when its `__str__` raises: the
    failure is recorded all the same."""
    try:
        return str(exc)
    except Exception as failed:
        try:
            why = f"{type(failed).__name__}: {failed}"
        except Exception:
            why = type(failed).__name__
        return f"<str() failed: {why}>"

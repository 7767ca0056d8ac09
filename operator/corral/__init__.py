"""corral: run fleets of PostgreSQL-queue workers on Kubernetes.

The public surface re-exported here is what users import; everything else is
internal and may change between releases.

The handler API (`corral.handler`, `corral.Job`, ...) lives in
`corral.worker.handlers` and is loaded on first use (PEP 562), so importing
any `corral.*` module (the operator's pure deciders, the queue) does not load
the worker package as a side effect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from corral._version import __version__

if TYPE_CHECKING:
    from corral.worker.handlers import HandlerError, Job, PayloadError, handler

__all__ = ["HandlerError", "Job", "PayloadError", "__version__", "handler"]

_HANDLER_API = frozenset({"HandlerError", "Job", "PayloadError", "handler"})


def __getattr__(name: str) -> Any:
    if name in _HANDLER_API:
        from corral.worker import handlers

        value = getattr(handlers, name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'corral' has no attribute {name!r}")

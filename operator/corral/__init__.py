"""corral: run fleets of PostgreSQL-queue workers on Kubernetes.

The public surface re-exported here is what users import; everything else is
internal and may change between releases.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Handler API for user code (`@corral.handler("kind")`). Imported from the
# worker package, which pulls in neither kopf nor a database connection.
from corral.worker.handlers import HandlerError, Job, PayloadError, handler

__all__ = ["HandlerError", "Job", "PayloadError", "__version__", "handler"]

"""corral: run fleets of PostgreSQL-queue workers on Kubernetes.

The public surface re-exported here is what users import; everything else is
internal and may change between releases.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]

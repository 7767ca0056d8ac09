"""Names and labels of the objects a WorkerPool owns.

Pure; used by the deciding functions (`deployment`, `enrollment`, `status`)
and by the kopf handlers to find what a pool owns. Changing anything in
`selector_labels` would orphan every existing Deployment (a Deployment's
selector is immutable), so it holds only the two labels that never change.
"""

from __future__ import annotations

from corral._version import __version__
from corral.api import WorkerPool

POOL_LABEL = "corral.dev/pool"
REGION_LABEL = "corral.dev/region"
MANAGED_BY = "corral-operator"
WORKER_APP = "corral-worker"


def deployment_name(pool: WorkerPool) -> str:
    # The CRD caps pool names at 63 characters (a DNS label), so the name
    # fits a Deployment and its pods' hostnames as it is.
    return pool.metadata.name


def secret_name(pool: WorkerPool) -> str:
    return f"{pool.metadata.name}-enrollment"


def selector_labels(pool: WorkerPool) -> dict[str, str]:
    """The Deployment's selector: stable for the pool's whole life."""
    return {"app.kubernetes.io/name": WORKER_APP, POOL_LABEL: pool.metadata.name}


def selector_string(pool: WorkerPool) -> str:
    """`selector_labels` as a label-selector string (status.selector, `kubectl -l`)."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(pool).items()))


def owned_labels(pool: WorkerPool, region: str) -> dict[str, str]:
    """Labels on everything the pool owns; the operator's keys beat the user's."""
    return {
        **selector_labels(pool),
        "app.kubernetes.io/instance": pool.metadata.name,
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/part-of": "corral",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/version": __version__,
        REGION_LABEL: region,
    }


def is_reserved_label(key: str) -> bool:
    """Keys the operator owns: a pool's template.labels cannot override them."""
    return key.startswith(("app.kubernetes.io/", "corral.dev/"))

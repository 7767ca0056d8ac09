"""corral's Kubernetes API: the WorkerPool and Region custom resources.

`corral.api.v1alpha1` holds the pydantic models (the one source of truth);
`corral.api.crdgen` turns them into `crds/*.yaml`. The operator's deciding
functions (`corral.controller`) take and return these models.
"""

from __future__ import annotations

from corral.api._kube import Condition, ConditionStatus, Toleration
from corral.api.v1alpha1 import (
    API_VERSION,
    GROUP,
    VERSION,
    Region,
    RegionPhase,
    RegionSpec,
    RegionStatus,
    WorkerPool,
    WorkerPoolPhase,
    WorkerPoolSpec,
    WorkerPoolStatus,
)

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "Region",
    "RegionPhase",
    "RegionSpec",
    "RegionStatus",
    "Toleration",
    "WorkerPool",
    "WorkerPoolPhase",
    "WorkerPoolSpec",
    "WorkerPoolStatus",
]

"""The local Kubernetes control plane (etcd, kube-apiserver, controller-manager, scheduler).

Used by the e2e tier (tests/e2e/conftest.py), the node agent and `make cluster-up`
(`python -m corral_local.localcluster up|down|status|run`). See `_cluster.py`.
"""

from corral_local.localcluster._cluster import (
    K8S_VERSION,
    Cluster,
    ClusterError,
    ExistingCluster,
    LocalCluster,
    default_bin_dir,
    default_state_dir,
    missing_binaries,
)

__all__ = [
    "K8S_VERSION",
    "Cluster",
    "ClusterError",
    "ExistingCluster",
    "LocalCluster",
    "default_bin_dir",
    "default_state_dir",
    "missing_binaries",
]

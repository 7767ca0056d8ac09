"""The dashboard's Pools page against a real API server (through corral.kube):
a WorkerPool's replicas, desired replicas, depth and phase from its status,
and its recent Events, beside a real PostgreSQL for the rest of the app."""

from __future__ import annotations

import json

import requests

from corral.kube import Kube
from corral_local.localcluster import Cluster
from tests._dashboard import serve, settings
from tests.e2e._corral import apply, install_crds, pool_manifest


def test_the_pools_page_shows_a_pools_status_and_events(
    cluster: Cluster, namespace: str, database_url: str
) -> None:
    install_crds(cluster)
    apply(cluster, pool_manifest("mailers", ["mail"], 1, 5), namespace)
    status = {"replicas": 3, "desiredReplicas": 4, "queueDepth": 120, "phase": "Scaling"}
    cluster.kubectl(
        "patch", "workerpool", "mailers", "-n", namespace, "--subresource=status",
        "--type=merge", "-p", json.dumps({"status": status}),
    )  # fmt: skip
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": "mailers.scaled-1", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "corral.dev/v1alpha1",
            "kind": "WorkerPool",
            "name": "mailers",
            "namespace": namespace,
        },
        "reason": "Scaled",
        "message": "scaled from 3 to 4 replicas: 120 jobs waiting",
        "type": "Normal",
        "lastTimestamp": "2026-01-01T00:00:00Z",
        "firstTimestamp": "2026-01-01T00:00:00Z",
        "count": 1,
        "source": {"component": "corral-operator"},
    }
    cluster.kubectl("create", "-f", "-", input=json.dumps(event))

    def kube() -> Kube:
        return Kube.from_environment(str(cluster.kubeconfig))

    with serve(settings(database_url, kube=kube)) as base:
        html = requests.get(base + "/pools", timeout=30).text
    section = html.split(f'data-pool="{namespace}/mailers"')[1]
    assert "Scaling" in section
    assert "replicas 3" in section and "desired 4" in section and "depth 120" in section
    assert "Scaled" in section and "scaled from 3 to 4 replicas" in section
    assert 'id="no-cluster"' not in html

"""corral.kube against a real API server: a 409 Conflict is an answer the
operator acts on (someone else won a create or renewed a Lease first), never an
error that stops a reconcile. Writes of Deployments and Secrets use forced
server-side apply, which the API server never answers with a field conflict."""

from __future__ import annotations

import uuid

from corral.kube import Kube
from corral_local.localcluster import Cluster
from tests.e2e._corral import install_crds


def _lease(name: str, holder: str) -> dict[str, object]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15},
    }


def test_a_lease_renewed_by_someone_else_since_it_was_read_is_a_conflict_not_an_error(
    cluster: Cluster, namespace: str
) -> None:
    kube = Kube.from_environment(str(cluster.kubeconfig))
    name = f"l{uuid.uuid4().hex[:8]}"
    assert kube.create_lease(namespace, _lease(name, "a"))
    assert not kube.create_lease(namespace, _lease(name, "b")), "a second create must lose"
    read = kube.get_lease(namespace, name)
    assert read is not None
    mine = {**read, "spec": {**read["spec"], "holderIdentity": "a"}}
    theirs = {**read, "spec": {**read["spec"], "holderIdentity": "b"}}
    assert kube.replace_lease(namespace, theirs)  # someone else renews first
    assert not kube.replace_lease(namespace, mine)  # our stale resourceVersion: 409
    final = kube.get_lease(namespace, name)
    assert final is not None and final["spec"]["holderIdentity"] == "b"


def test_creating_a_region_that_already_exists_reports_it_instead_of_failing(
    cluster: Cluster,
) -> None:
    install_crds(cluster)
    kube = Kube.from_environment(str(cluster.kubeconfig))
    name = f"r{uuid.uuid4().hex[:8]}"
    body = {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Region",
        "metadata": {"name": name},
        "spec": {"displayName": "Conflict test"},
    }
    try:
        assert kube.create_region(body)
        assert not kube.create_region(body)
    finally:
        cluster.kubectl("delete", "region", name, "--wait=false", check=False)

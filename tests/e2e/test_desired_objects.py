"""The objects the operator's deciding functions produce are accepted by a real
API server: the worker Deployment validates, and its pods pass the restricted
Pod Security Standard enforced on their namespace."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from corral.api import Region, WorkerPool
from corral.controller.deployment import desired_deployment
from corral.controller.enrollment import desired_secret
from corral_local.localcluster import Cluster


def _pool(namespace: str) -> WorkerPool:
    return WorkerPool.from_kube(
        {
            "metadata": {"name": "email", "namespace": namespace},
            "spec": {
                "queues": ["email", "sms"],
                "template": {
                    "env": [{"name": "CORRAL_HANDLERS", "value": "myapp.jobs"}],
                    "tolerations": [{"key": "dedicated", "operator": "Exists"}],
                    "resources": {"limits": {"memory": "256Mi"}},
                    "affinity": {
                        "podAntiAffinity": {
                            "preferredDuringSchedulingIgnoredDuringExecution": [
                                {
                                    "weight": 50,
                                    "podAffinityTerm": {
                                        "topologyKey": "kubernetes.io/hostname",
                                        "labelSelector": {
                                            "matchLabels": {"corral.dev/pool": "email"}
                                        },
                                    },
                                }
                            ]
                        }
                    },
                },
            },
        }
    )


def _region() -> Region:
    return Region.from_kube(
        {
            "metadata": {"name": "eu-west"},
            "spec": {"scheduling": {"nodeSelector": {"topology.kubernetes.io/region": "eu-west"}}},
        }
    )


def test_the_worker_deployment_and_its_pods_pass_the_restricted_pod_security_standard(
    cluster: Cluster, namespace: str
) -> None:
    cluster.kubectl(
        "label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    deployment = desired_deployment(
        _pool(namespace), region=_region(), replicas=2, worker_image="corral-worker:dev"
    )
    created = cluster.kubectl("create", "-f", "-", input=json.dumps(deployment))
    assert "deployment.apps/email created" in created.stdout
    assert "would violate PodSecurity" not in created.stderr
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "email-probe", "namespace": namespace},
        "spec": deployment["spec"]["template"]["spec"],
    }
    # A pod the restricted profile forbids is refused at admission; dry-run
    # is enough to see the verdict without a node to run it on.
    result = cluster.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(pod), check=False
    )
    assert result.returncode == 0, result.stderr


def test_the_enrollment_secret_is_a_valid_secret(cluster: Cluster, namespace: str) -> None:
    now = datetime.now(UTC)
    secret = desired_secret(
        _pool(namespace),
        region="eu-west",
        token="crl_example",
        token_id="1",
        created_at=now,
        expires_at=now + timedelta(days=1),
        database_url="postgresql://corral@db:5432/corral",
    )
    cluster.kubectl("create", "-f", "-", input=json.dumps(secret))
    stored = cluster.kubectl_json("get", "secret", "email-enrollment", "-n", namespace)
    assert stored["data"] == secret["data"]

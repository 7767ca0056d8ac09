"""The WorkerPool and Region models: defaults, and the validation messages a
user sees (the CRD's CEL rules carry the same text; see test_crdgen.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from corral.api import Region, WorkerPool
from corral.api.v1alpha1 import RESERVED_ENV, WorkerPoolSpec


def _pool(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "WorkerPool",
        "metadata": {"name": "email", "namespace": "jobs"},
        "spec": {"queues": ["email"], **spec},
    }


def _error(body: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        WorkerPool.from_kube(body)
    return str(caught.value)


def test_a_minimal_pool_gets_every_documented_default() -> None:
    pool = WorkerPool.from_kube(_pool())
    spec = pool.to_kube()["spec"]
    assert spec == {
        "queues": ["email"],
        "concurrency": 10,
        "replicas": {"min": 1, "max": 10},
        "autoscaling": {
            "enabled": True,
            "jobsPerWorker": 20,
            "activationDepth": 1,
            "activationLeadSeconds": 5,
            "scaleDownDelaySeconds": 300,
            "pollSeconds": 10,
        },
        "drain": {"timeoutSeconds": 300},
        "egress": {"deny": [], "allow": []},
        "enrollment": {"tokenTTLSeconds": 86400},
        "paused": False,
    }


def test_min_above_max_is_rejected_naming_both_fields_and_the_fix() -> None:
    message = _error(_pool(replicas={"min": 5, "max": 2}))
    assert "spec.replicas.min (5) must not exceed spec.replicas.max (2)" in message
    assert "raise replicas.max" in message


def test_empty_queues_are_rejected() -> None:
    assert "queues" in _error(_pool(queues=[]))


def test_a_malformed_queue_name_is_rejected_with_the_allowed_characters() -> None:
    message = _error(_pool(queues=["ok", "has space"]))
    assert "'has space' is not a queue name" in message
    assert "letters, digits and _ . : -" in message


def test_a_queue_listed_twice_is_rejected() -> None:
    assert "email more than once" in _error(_pool(queues=["email", "email"]))


def test_zero_concurrency_is_rejected() -> None:
    assert "concurrency" in _error(_pool(concurrency=0))


def test_an_unknown_field_is_rejected_by_name() -> None:
    message = _error(_pool(replica={"min": 1}))
    assert "replica" in message
    assert "Extra inputs are not permitted" in message


def test_a_malformed_region_name_is_rejected() -> None:
    assert "region" in _error(_pool(region="EU_West"))


def test_a_pool_name_that_is_not_a_dns_label_is_rejected() -> None:
    body = _pool()
    body["metadata"]["name"] = "Email.Workers"
    assert "metadata.name must be a DNS label" in _error(body)


@pytest.mark.parametrize("name", RESERVED_ENV)
def test_template_env_may_not_override_what_the_operator_sets(name: str) -> None:
    message = _error(_pool(template={"env": [{"name": name, "value": "x"}]}))
    assert "spec.template.env must not set" in message


def test_template_env_may_set_other_worker_settings() -> None:
    pool = WorkerPool.from_kube(
        _pool(template={"env": [{"name": "CORRAL_HANDLERS", "value": "myapp.jobs"}]})
    )
    assert pool.spec.template is not None
    assert pool.spec.template.env is not None
    assert pool.spec.template.env[0].value == "myapp.jobs"


def test_an_env_entry_with_both_value_and_value_from_is_rejected() -> None:
    env = {"name": "A", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    assert "either value or valueFrom" in _error(_pool(template={"env": [env]}))


def test_a_resource_quantity_that_is_not_one_is_rejected_with_examples() -> None:
    message = _error(_pool(template={"resources": {"requests": {"memory": "lots"}}}))
    assert "'lots' is not a Kubernetes quantity" in message


def test_a_toleration_with_exists_and_a_value_is_rejected() -> None:
    toleration = {"key": "k", "operator": "Exists", "value": "v"}
    assert "operator Exists must not set value" in _error(
        _pool(template={"tolerations": [toleration]})
    )


def test_the_spec_accepts_python_names_and_writes_camel_case() -> None:
    spec = WorkerPoolSpec(queues=["a"], enrollment={"token_ttl_seconds": 3600})  # type: ignore[arg-type]
    assert spec.to_kube()["enrollment"] == {"tokenTTLSeconds": 3600}


def test_a_region_needs_no_spec_and_checks_its_coordinates() -> None:
    region = Region.from_kube({"metadata": {"name": "eu-west"}})
    assert region.spec.display_name is None
    with pytest.raises(ValidationError, match="latitude"):
        Region.from_kube(
            {
                "metadata": {"name": "eu-west"},
                "spec": {"location": {"latitude": 91, "longitude": 0}},
            }
        )


def test_egress_rules_are_checked_and_a_bad_one_is_named() -> None:
    pool = WorkerPool.from_kube(
        _pool(egress={"deny": ["10.96.0.1:443", "*.internal"], "allow": ["169.254.169.254:80"]})
    )
    assert pool.spec.egress.deny == ["10.96.0.1:443", "*.internal"]
    assert "'10.0.0.1/8'" in _error(_pool(egress={"deny": ["10.0.0.1/8"]}))
    assert "'api:http'" in _error(_pool(egress={"allow": ["api:http"]}))


@pytest.mark.parametrize("lead", [-1, 301])
def test_activation_lead_seconds_is_bounded_to_five_minutes(lead: int) -> None:
    assert "spec.autoscaling.activationLeadSeconds" in _error(
        _pool(autoscaling={"activationLeadSeconds": lead})
    )


def test_activation_lead_seconds_of_zero_counts_only_jobs_due_now() -> None:
    pool = WorkerPool.from_kube(_pool(autoscaling={"activationLeadSeconds": 0}))
    assert pool.spec.autoscaling.activation_lead_seconds == 0

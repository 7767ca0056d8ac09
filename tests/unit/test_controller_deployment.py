"""The Deployment a WorkerPool should own (corral.controller.deployment)."""

from __future__ import annotations

from typing import Any

from corral.controller import naming
from corral.controller.deployment import (
    DRAIN_MARGIN_S,
    HANDBACK_S,
    HTTP_PORT,
    STATE_DIR,
    desired_deployment,
    desired_disruption_budget,
    desired_network_policy,
)
from tests.unit._pools import make_pool, make_region

IMAGE = "ghcr.io/corral/corral-worker:0.1.0"


def _deployment(pool: Any = None, region: Any = None, replicas: int = 2) -> dict[str, Any]:
    return desired_deployment(
        pool or make_pool(), region=region or make_region(), replicas=replicas, worker_image=IMAGE
    )


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def _env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in _container(deployment)["env"]}


def test_workers_run_corral_worker_with_the_pools_queues_region_and_concurrency() -> None:
    deployment = _deployment(make_pool(concurrency=7))
    container = _container(deployment)
    assert container["image"] == IMAGE
    assert container["args"] == ["worker"]
    env = _env(deployment)
    assert env["CORRAL_QUEUES"] == "email,sms"
    assert env["CORRAL_REGION"] == "eu-west"
    assert env["CORRAL_CONCURRENCY"] == "7"
    assert env["CORRAL_STATE_DIR"] == STATE_DIR
    assert env["CORRAL_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_the_pools_image_overrides_the_operators_default() -> None:
    assert _container(_deployment(make_pool(image="acme/worker:2")))["image"] == "acme/worker:2"


def test_the_enrollment_token_is_a_file_mounted_from_the_pools_secret_not_an_env_var() -> None:
    deployment = _deployment()
    env = _env(deployment)
    assert "CORRAL_ENROLLMENT_TOKEN" not in env
    assert env["CORRAL_ENROLLMENT_TOKEN_FILE"] == "/var/run/corral/enrollment/token"
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "enrollment", "mountPath": "/var/run/corral/enrollment", "readOnly": True} in (
        pod["containers"][0]["volumeMounts"]
    )
    [volume] = [v for v in pod["volumes"] if v["name"] == "enrollment"]
    assert volume["secret"] == {
        "secretName": "email-enrollment",
        "items": [{"key": "token", "path": "token"}],
        "defaultMode": 0o440,
    }


def test_the_database_url_comes_from_the_pools_secret_ref_when_given() -> None:
    pool = make_pool(database={"secretRef": {"name": "jobs-db"}})
    assert _env(_deployment(pool))["CORRAL_DATABASE_URL"] == {
        "secretKeyRef": {"name": "jobs-db", "key": "url"}
    }


def test_without_a_secret_ref_the_database_url_comes_from_the_enrollment_secret() -> None:
    assert _env(_deployment())["CORRAL_DATABASE_URL"] == {
        "secretKeyRef": {"name": "email-enrollment", "key": "database-url"}
    }


def test_the_pod_meets_the_restricted_pod_security_standard() -> None:
    deployment = _deployment()
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    context = _container(deployment)["securityContext"]
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == 65532
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["readOnlyRootFilesystem"] is True
    assert not any("hostPath" in volume for volume in pod["volumes"])


def test_state_lives_on_an_empty_dir_because_the_root_filesystem_is_read_only() -> None:
    deployment = _deployment()
    mounts = {m["mountPath"]: m["name"] for m in _container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts[STATE_DIR]]
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_probes_hit_the_workers_readyz_and_healthz() -> None:
    container = _container(_deployment())
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"]["port"] in port_names
    assert _env(_deployment())["CORRAL_HTTP_PORT"] == str(port_names["http"])


def test_the_grace_period_covers_the_drain_timeout_plus_a_margin() -> None:
    deployment = _deployment(make_pool(drain={"timeoutSeconds": 120}))
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 135
    assert DRAIN_MARGIN_S > HANDBACK_S


def test_the_pre_stop_hook_drains_within_the_drain_timeout() -> None:
    container = _container(_deployment(make_pool(drain={"timeoutSeconds": 120})))
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[:3] == ["corral", "worker", "prestop"]
    assert command[command.index("--timeout") + 1] == "120"
    env = _env(_deployment(make_pool(drain={"timeoutSeconds": 120})))
    # A drain the worker begins itself (SIGQUIT) gets the pool's full timeout,
    assert env["CORRAL_DRAIN_TIMEOUT"] == "120s"
    # and after the preStop wait, SIGTERM hands jobs back within the margin.
    assert env["CORRAL_TERM_GRACE"] == f"{HANDBACK_S}s"


def test_region_scheduling_applies_and_the_pool_template_wins_on_a_shared_key() -> None:
    region = make_region(
        scheduling={
            "nodeSelector": {"topology.kubernetes.io/region": "eu-west", "disk": "ssd"},
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "jobs"}],
        }
    )
    pool = make_pool(
        template={
            "nodeSelector": {"disk": "nvme"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "jobs"},
                {"key": "spot", "operator": "Exists"},
            ],
        }
    )
    pod = _deployment(pool, region)["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"topology.kubernetes.io/region": "eu-west", "disk": "nvme"}
    assert pod["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "jobs"},
        {"key": "spot", "operator": "Exists"},
    ]


def test_a_pool_with_no_scheduling_sets_no_node_selector() -> None:
    pod = _deployment()["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod
    assert "tolerations" not in pod


def test_template_overrides_reach_the_pod() -> None:
    pool = make_pool(
        template={
            "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}},
            "env": [{"name": "CORRAL_HANDLERS", "value": "myapp.jobs"}],
            "affinity": {"nodeAffinity": {"x": 1}},
            "serviceAccountName": "jobs-worker",
            "annotations": {"team": "mail"},
        }
    )
    deployment = _deployment(pool)
    pod = deployment["spec"]["template"]["spec"]
    assert _container(deployment)["resources"] == {
        "limits": {"memory": "1Gi"},
        "requests": {"cpu": "250m"},
    }
    assert _env(deployment)["CORRAL_HANDLERS"] == "myapp.jobs"
    assert pod["affinity"] == {"nodeAffinity": {"x": 1}}
    assert pod["serviceAccountName"] == "jobs-worker"
    assert "automountServiceAccountToken" not in pod
    assert deployment["spec"]["template"]["metadata"]["annotations"]["team"] == "mail"


def test_workers_get_no_api_token_unless_the_pool_names_a_service_account() -> None:
    assert _deployment()["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


def test_operator_labels_win_over_template_labels_and_the_selector_matches_the_pods() -> None:
    pool = make_pool(
        template={
            "labels": {"team": "mail", "corral.dev/pool": "other", "app.kubernetes.io/name": "x"}
        }
    )
    deployment = _deployment(pool)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["team"] == "mail"
    assert pod_labels["corral.dev/pool"] == "email"
    assert pod_labels["app.kubernetes.io/managed-by"] == "corral-operator"
    assert pod_labels["corral.dev/region"] == "eu-west"
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert (
        naming.selector_string(pool) == "app.kubernetes.io/name=corral-worker,corral.dev/pool=email"
    )


def test_the_selector_does_not_change_with_the_region() -> None:
    pool = make_pool()
    before = _deployment(pool, make_region("eu-west"))["spec"]["selector"]
    after = _deployment(pool, make_region("us-east"))["spec"]["selector"]
    assert before == after


def test_the_deployment_is_named_after_the_pool_in_its_namespace_with_the_given_replicas() -> None:
    deployment = _deployment(replicas=4)
    assert deployment["metadata"]["name"] == "email"
    assert deployment["metadata"]["namespace"] == "jobs"
    assert deployment["spec"]["replicas"] == 4
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_a_spec_change_changes_the_pod_template_so_the_deployment_rolls() -> None:
    before = _deployment(make_pool(concurrency=5))["spec"]["template"]
    after = _deployment(make_pool(concurrency=6))["spec"]["template"]
    assert before != after


def test_each_pool_gets_a_disruption_budget_of_one_worker_at_a_time() -> None:
    budget = desired_disruption_budget(make_pool(), region="eu-west")
    assert (budget["kind"], budget["metadata"]["name"]) == ("PodDisruptionBudget", "email")
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["selector"]["matchLabels"] == naming.selector_labels(make_pool())
    # A drained worker is not ready: a budget must never block evicting it.
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_each_pool_gets_a_network_policy_admitting_only_the_metrics_port() -> None:
    pool = make_pool()
    policy = desired_network_policy(pool, region="eu-west")
    assert (policy["kind"], policy["metadata"]["name"]) == ("NetworkPolicy", "email")
    assert policy["spec"]["podSelector"]["matchLabels"] == naming.selector_labels(pool)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    # One rule: the port the probes and Prometheus use, from anywhere; no other port.
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": HTTP_PORT}]}]
    (container,) = _deployment(pool)["spec"]["template"]["spec"]["containers"]
    assert [p["containerPort"] for p in container["ports"]] == [HTTP_PORT]


def test_the_prestop_hook_names_the_state_dir_holding_the_drain_key() -> None:
    (container,) = _deployment()["spec"]["template"]["spec"]["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[command.index("--state-dir") + 1] == STATE_DIR
    assert {"name": "state", "mountPath": STATE_DIR} in container["volumeMounts"]

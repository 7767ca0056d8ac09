"""The Deployment a WorkerPool should own, decided from data alone.

Called by the kopf handlers (`corral.controller.handlers`), which add the
owner reference and apply the result through `corral.kube`; unit tests call
it directly. Nothing here talks to Kubernetes or Postgres.

How a worker pod leaves (the numbers live here, so they stay consistent):
the kubelet runs the preStop hook `corral worker prestop`, which asks the
worker to drain and waits up to `drain.timeoutSeconds` (T) for it to finish
its jobs. Then SIGTERM: the worker gives still-running jobs `HANDBACK_S` more,
hands the rest back to the queue and exits 0. The grace period is T plus
`DRAIN_MARGIN_S`, which covers the hand-back, so SIGKILL only ever hits a
worker that ignored all of this.
"""

from __future__ import annotations

from typing import Any

from corral import workerenv
from corral.api import Region, Toleration, WorkerPool
from corral.controller import naming

CONTAINER = "worker"
HTTP_PORT = 8080  # the worker's /metrics, /healthz, /readyz (corral.worker.config)
STATE_DIR = "/var/lib/corral"  # the worker's credential and drain key (emptyDir)
TOKEN_DIR = "/var/run/corral/enrollment"  # the pool Secret's token, mounted read-only
TOKEN_FILE = f"{TOKEN_DIR}/token"
WORKER_UID = 65532  # the conventional "nonroot" user of distroless images
DRAIN_MARGIN_S = 15  # seconds past drain.timeoutSeconds before SIGKILL
HANDBACK_S = 10  # seconds a SIGTERMed worker waits before handing jobs back
DEFAULT_RESOURCES: dict[str, Any] = {"requests": {"cpu": "50m", "memory": "96Mi"}}


def grace_period_s(pool: WorkerPool) -> int:
    return pool.spec.drain.timeout_seconds + DRAIN_MARGIN_S


def _database_env(pool: WorkerPool) -> dict[str, Any]:
    if pool.spec.database is not None:
        ref = pool.spec.database.secret_ref
        source = {"name": ref.name, "key": ref.key}
    else:
        # The workers' URL the operator was given (a worker role, never the
        # operator's own) is copied into the pool's enrollment Secret,
        # because a pod can only read Secrets of its own namespace.
        source = {"name": naming.secret_name(pool), "key": workerenv.SECRET_DATABASE_URL_KEY}
    return {"name": workerenv.DATABASE_URL, "valueFrom": {"secretKeyRef": source}}


def _env(pool: WorkerPool, region: str) -> list[dict[str, Any]]:
    spec = pool.spec
    env: list[dict[str, Any]] = [
        {"name": workerenv.NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": workerenv.QUEUES, "value": ",".join(spec.queues)},
        {"name": workerenv.REGION, "value": region},
        {"name": workerenv.POOL, "value": pool.metadata.name},
        {"name": workerenv.CONCURRENCY, "value": str(spec.concurrency)},
        {"name": workerenv.STATE_DIR, "value": STATE_DIR},
        {"name": workerenv.HTTP_PORT, "value": str(HTTP_PORT)},
        # The preStop hook drains with no deadline of its own (bounded by
        # `prestop --timeout`); a SIGQUIT would drain as long. SIGTERM, which
        # comes after the preStop drain, hands back what is left after
        # HANDBACK_S.
        {"name": workerenv.DRAIN_TIMEOUT, "value": f"{spec.drain.timeout_seconds}s"},
        {"name": workerenv.TERM_GRACE, "value": f"{HANDBACK_S}s"},
        _database_env(pool),
        # A file, not a variable: it stays out of the process environment
        # (which handlers and their children inherit, and crash reports dump)
        # and a rotated token reaches a restarting container without a rollout.
        {"name": workerenv.ENROLLMENT_TOKEN_FILE, "value": TOKEN_FILE},
        # The executor guard's rules (empty: the built-in refusals only).
        {"name": workerenv.EGRESS_DENY, "value": ",".join(spec.egress.deny)},
        {"name": workerenv.EGRESS_ALLOW, "value": ",".join(spec.egress.allow)},
    ]
    if spec.template is not None and spec.template.env:
        env += [entry.to_kube() for entry in spec.template.env]
    return env


def _tolerations(region: Region, pool: WorkerPool) -> list[dict[str, Any]]:
    merged: list[Toleration] = []
    sources = [
        region.spec.scheduling.tolerations if region.spec.scheduling else None,
        pool.spec.template.tolerations if pool.spec.template else None,
    ]
    for source in sources:
        for toleration in source or []:
            if toleration not in merged:
                merged.append(toleration)
    return [toleration.to_kube() for toleration in merged]


def _node_selector(region: Region, pool: WorkerPool) -> dict[str, str]:
    # The pool's keys win: a pool that names another zone means it.
    selector: dict[str, str] = {}
    if region.spec.scheduling and region.spec.scheduling.node_selector:
        selector.update(region.spec.scheduling.node_selector)
    if pool.spec.template and pool.spec.template.node_selector:
        selector.update(pool.spec.template.node_selector)
    return selector


def _container(pool: WorkerPool, region: str, image: str) -> dict[str, Any]:
    template = pool.spec.template
    resources = (
        template.resources.to_kube() if template and template.resources else DEFAULT_RESOURCES
    )
    probe_get = {"path": "/healthz", "port": "http"}
    return {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "args": ["worker"],
        "env": _env(pool, region),
        "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
        # Not ready until enrolled, and again not ready once draining, so a
        # draining worker drops out of the Deployment's ready count.
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 2,
            "failureThreshold": 1,
        },
        # Enrollment and the first connection may take a while on a cold
        # database; the startup probe keeps liveness from killing that.
        "startupProbe": {
            "httpGet": probe_get,
            "periodSeconds": 2,
            "timeoutSeconds": 2,
            "failureThreshold": 60,
        },
        "livenessProbe": {
            "httpGet": probe_get,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "lifecycle": {
            "preStop": {
                "exec": {
                    "command": [
                        "corral",
                        "worker",
                        "prestop",
                        "--port",
                        str(HTTP_PORT),
                        # Where the worker wrote its drain key: /drain
                        # answers only a caller that can read it.
                        "--state-dir",
                        STATE_DIR,
                        "--timeout",
                        str(pool.spec.drain.timeout_seconds),
                    ]
                }
            }
        },
        "resources": resources,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "volumeMounts": [
            {"name": "state", "mountPath": STATE_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "enrollment", "mountPath": TOKEN_DIR, "readOnly": True},
        ],
    }


def desired_disruption_budget(pool: WorkerPool, *, region: str) -> dict[str, Any]:
    """The pool's PodDisruptionBudget: voluntary evictions (a node drain, a
    cluster upgrade) take one worker at a time, and each goes through its
    preStop drain. Unhealthy pods (a drained worker is not ready) may always
    be evicted, so a budget never blocks removing a worker that holds nothing.
    """
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": naming.deployment_name(pool),
            "namespace": pool.metadata.namespace,
            "labels": naming.owned_labels(pool, region),
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": naming.selector_labels(pool)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def desired_network_policy(pool: WorkerPool, *, region: str) -> dict[str, Any]:
    """The pool's NetworkPolicy: its pods admit connections on the metrics
    port (Prometheus scrapes it; kubelet probes come from the node) and on no
    other. Egress is not restricted here: reaching other services is what
    monitoring jobs do; the worker's executor guard judges those targets.

    Within the metrics port, POST /drain still needs the pod's own drain key
    (`corral.worker.endpoint`): the policy keeps everything else out, the key
    keeps other pods from draining a worker.
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": naming.deployment_name(pool),
            "namespace": pool.metadata.namespace,
            "labels": naming.owned_labels(pool, region),
        },
        "spec": {
            "podSelector": {"matchLabels": naming.selector_labels(pool)},
            "policyTypes": ["Ingress"],
            # One rule, a port and no `from`: any source, this port only.
            "ingress": [{"ports": [{"protocol": "TCP", "port": HTTP_PORT}]}],
        },
    }


def desired_deployment(
    pool: WorkerPool, *, region: Region, replicas: int, worker_image: str
) -> dict[str, Any]:
    """The apps/v1 Deployment for `pool` in `region` with `replicas` pods.

    `worker_image` is the operator's default, used when the pool names none.
    The caller sets the owner reference (so deleting the pool deletes this).
    """
    region_name = region.metadata.name
    labels = naming.owned_labels(pool, region_name)
    template = pool.spec.template
    pod_labels = {
        **{
            key: value
            for key, value in ((template.labels or {}) if template else {}).items()
            if not naming.is_reserved_label(key)
        },
        **labels,
    }
    pod_annotations = {
        **((template.annotations or {}) if template else {}),
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(HTTP_PORT),
        "prometheus.io/path": "/metrics",
    }
    pod_spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace_period_s(pool),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(pool, region_name, pool.spec.image or worker_image)],
        "volumes": [
            {"name": "state", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
            {
                # Only the token: the Secret's database URL stays an env var.
                "name": "enrollment",
                "secret": {
                    "secretName": naming.secret_name(pool),
                    "items": [{"key": workerenv.SECRET_TOKEN_KEY, "path": "token"}],
                    "defaultMode": 0o440,
                },
            },
        ],
    }
    if template is not None and template.service_account_name:
        pod_spec["serviceAccountName"] = template.service_account_name
    else:
        # Workers never call the Kubernetes API: no token in their pods.
        pod_spec["automountServiceAccountToken"] = False
    node_selector = _node_selector(region, pool)
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    tolerations = _tolerations(region, pool)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if template is not None and template.affinity:
        pod_spec["affinity"] = template.affinity
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": naming.deployment_name(pool),
            "namespace": pool.metadata.namespace,
            "labels": labels,
        },
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": naming.selector_labels(pool)},
            # New workers come up before old ones drain: capacity never dips
            # during a rollout.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0},
            },
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }

"""WorkerPool and Region, API group corral.dev, version v1alpha1.

These pydantic models are the one source of truth for the custom resources:
`corral.api.crdgen` (run by `make crds`) writes `crds/*.yaml` from them, and
the operator parses every object it reads with them. Each rule lives twice on
purpose: as JSON-schema/CEL in the CRD, so the API server rejects a bad
manifest at `kubectl apply`, and as a pydantic validator here, so Python
callers get the same message before they ever reach the server.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Self

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)

from corral import egressrules, queuenames, workerenv
from corral.api._kube import (
    DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_PATTERN,
    Affinity,
    AnnotationValue,
    Condition,
    EnvVar,
    KubeModel,
    LabelValue,
    ResourceRequirements,
    Toleration,
)

GROUP = "corral.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# A queue name: the one rule the worker and the admin commands apply too
# (corral.queuenames).
QUEUE_NAME_PATTERN = queuenames.PATTERN
REGION_NAME_PATTERN = DNS_LABEL_PATTERN

# Environment variables the operator sets on every worker from the pool's
# spec; a template.env entry with one of these names would silently fight the
# spec, so the CRD rejects it and names the field to set instead.
# The list is the operator-to-worker contract's (corral.workerenv).
RESERVED_ENV: tuple[str, ...] = workerenv.RESERVED
_RESERVED_ENV_MESSAGE = (
    "spec.template.env must not set "
    + ", ".join(RESERVED_ENV)
    + ": the operator sets them from spec.queues, spec.region, spec.concurrency, "
    "spec.database, spec.drain, spec.egress and the enrollment Secret; set those fields instead"
)
_RESERVED_ENV_RULE = (
    "self.all(e, !(e.name in [" + ", ".join(f"'{name}'" for name in RESERVED_ENV) + "]))"
)


QueueName = Annotated[
    str,
    AfterValidator(queuenames.check),
    WithJsonSchema(
        {"type": "string", "maxLength": queuenames.MAX_LENGTH, "pattern": QUEUE_NAME_PATTERN}
    ),
]


def _check_egress_rule(text: str) -> str:
    try:
        return egressrules.parse_rule(text).text
    except ValueError as exc:
        raise ValueError(f"{exc}; see docs/worker.md#executor-guard") from None


EgressRule = Annotated[
    str,
    AfterValidator(_check_egress_rule),
    WithJsonSchema(
        {"type": "string", "maxLength": 253, "pattern": egressrules.RULE_PATTERN},
    ),
]

_NAME_RULE_MESSAGE = (
    "metadata.name must be a DNS label: lower-case letters, digits and '-', starting and "
    "ending with a letter or digit, at most 63 characters"
)
# Root-level CEL rules (only the root may read metadata.name). A pool's name
# becomes a label value on its pods and a Region's name a label value and an
# env var, both capped at 63 characters.
NAME_RULES: list[dict[str, str]] = [
    {
        "rule": "self.metadata.name.size() <= 63 && self.metadata.name.matches('"
        + DNS_LABEL_PATTERN
        + "')",
        "message": _NAME_RULE_MESSAGE,
        "reason": "FieldValueInvalid",
    }
]


def _check_object_name(name: str) -> None:
    if len(name) > 63 or not re.match(DNS_LABEL_PATTERN, name):
        raise ValueError(f"{_NAME_RULE_MESSAGE} (got {name!r})")


# --------------------------------------------------------------------------- WorkerPool


class Replicas(KubeModel):
    """Bounds on the number of worker pods.

    With autoscaling off the pool runs exactly `min` workers; with it on, the
    autoscaler stays within [min, max]. `kubectl scale workerpool` sets `min`.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.min <= self.max",
                    # A static message: a messageExpression building it with
                    # string(self.min) blows the API server's CEL cost budget.
                    "message": "spec.replicas.min must not exceed spec.replicas.max; "
                    "lower replicas.min or raise replicas.max",
                    "fieldPath": ".min",
                    "reason": "FieldValueInvalid",
                }
            ]
        }
    )

    min: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Fewest worker pods (0 lets an autoscaled pool scale to zero when idle).",
    )
    max: int = Field(
        default=10, ge=1, le=1000, description="Most worker pods the autoscaler may run."
    )

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Replicas:
        if self.min > self.max:
            raise ValueError(
                f"spec.replicas.min ({self.min}) must not exceed spec.replicas.max "
                f"({self.max}); lower replicas.min or raise replicas.max"
            )
        return self


class Autoscaling(KubeModel):
    """Scale worker pods on the demand in the pool's queues in its region: up as soon as jobs arrive, down only after scaleDownDelaySeconds of lower demand, draining the workers it removes first."""

    enabled: bool = Field(
        default=True,
        description="Scale between replicas.min and replicas.max on queue demand; false runs exactly replicas.min workers.",
    )
    jobs_per_worker: int = Field(
        default=20,
        ge=1,
        le=1_000_000,
        description="Jobs (waiting plus running) per worker: desired workers = ceil((waiting + running) / jobsPerWorker), within [replicas.min, replicas.max].",
    )
    activation_depth: int = Field(
        default=1,
        ge=0,
        le=1_000_000,
        description="Waiting jobs needed to start the first worker of a pool at zero (replicas.min 0); 0 and 1 both mean any waiting job.",
    )
    activation_lead_seconds: int = Field(
        default=5,
        ge=0,
        le=300,
        description="Jobs scheduled to run within this many seconds, delayed jobs and schedule occurrences alike, count as demand now, so a pool at zero has a worker ready when they come due (seconds).",
    )
    scale_down_delay_seconds: int = Field(
        default=300,
        ge=0,
        le=86400,
        description="How long demand must stay lower before workers are removed, and how long a pool must be idle before it scales to zero (seconds).",
    )
    poll_seconds: int = Field(
        default=10,
        ge=1,
        le=3600,
        description="How often the operator re-reads the queue when no notification arrives (seconds); new jobs are noticed at once.",
    )
    target_wait_seconds: int | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="Target-wait mode: size the pool so that a newly enqueued job starts within this many seconds, from the measured arrival rate and mean job duration (replaces jobsPerWorker once jobs have completed).",
    )


class Drain(KubeModel):
    """How a worker pod leaves: it stops claiming, finishes its jobs, then exits."""

    timeout_seconds: int = Field(
        default=300,
        ge=1,
        le=86400,
        description="How long a terminating worker may spend finishing its jobs before the rest go back to the queue (seconds). The pod's terminationGracePeriodSeconds is this plus a 15 s margin.",
    )


class Egress(KubeModel):
    """Where the built-in network executors (http, websocket, tcp, dns, ping, grpc) may connect. Link-local addresses (169.254.0.0/16, fe80::/10), the cloud metadata endpoints and the worker's own endpoint are refused by default; private and loopback addresses are reachable. A rule is an address or CIDR, a host pattern (*.internal) and/or :PORT or :LOW-HIGH, e.g. 10.96.0.1:443."""

    deny: list[EgressRule] = Field(
        default_factory=list,
        max_length=64,
        description="Targets refused on top of the defaults (a job naming one goes straight to dead, reason payload), e.g. the API server's address 10.96.0.1:443.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    allow: list[EgressRule] = Field(
        default_factory=list,
        max_length=64,
        description="Targets reachable although a deny rule (default or listed) matches them, e.g. 169.254.169.254:80 for a pool that checks the metadata service. Never opens the worker's own endpoint.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class SecretKeyRef(KubeModel):
    """A key of a Secret in the pool's namespace."""

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the Secret, in the pool's namespace.",
    )
    key: str = Field(
        default="url",
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key holding the value.",
    )


class Database(KubeModel):
    """Which PostgreSQL database the workers use."""

    secret_ref: SecretKeyRef = Field(
        description="Secret key holding the PostgreSQL URL (postgresql://user:password@host:5432/db)."
    )


class Enrollment(KubeModel):
    """The pool's enrollment token, kept by the operator in a Secret the pool owns."""

    token_ttl_seconds: int = Field(
        default=86400,
        alias="tokenTTLSeconds",
        ge=600,
        le=31_536_000,
        description="Lifetime of each enrollment token (seconds). The operator mints a new one when a third of it is left; running workers keep their own credentials and are not restarted.",
    )


class PodTemplate(KubeModel):
    """Pod-level settings applied to every worker pod of the pool."""

    resources: ResourceRequirements | None = Field(
        default=None,
        description="CPU and memory of the worker container; unset requests 50m CPU and 96Mi memory.",
    )
    env: list[EnvVar] | None = Field(
        default=None,
        max_length=64,
        description="Extra environment variables for the worker container, e.g. CORRAL_HANDLERS or CORRAL_JOB_TIMEOUT. Variables the operator derives from the spec are rejected.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "x-kubernetes-validations": [
                {"rule": _RESERVED_ENV_RULE, "message": _RESERVED_ENV_MESSAGE}
            ],
        },
    )
    node_selector: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="Node labels worker pods must match, merged over the Region's scheduling.nodeSelector (the pool wins on a shared key).",
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=32,
        description="Taints worker pods tolerate, added to the Region's scheduling.tolerations.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    affinity: Affinity | None = Field(
        default=None,
        description="Pod affinity and anti-affinity (core/v1 Affinity), passed to the pods unchanged. Free-form: checked by the API server when the operator applies the Deployment.",
    )
    service_account_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="ServiceAccount the worker pods run as. Unset: the namespace's default account, with no API token mounted (workers never call the Kubernetes API).",
    )
    labels: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=64,
        description="Extra labels on worker pods. The operator's own keys (app.kubernetes.io/*, corral.dev/*) take precedence.",
    )
    annotations: dict[str, AnnotationValue] | None = Field(
        default=None, max_length=64, description="Extra annotations on worker pods."
    )

    @model_validator(mode="after")
    def _no_reserved_env(self) -> PodTemplate:
        for entry in self.env or []:
            if entry.name in RESERVED_ENV:
                raise ValueError(_RESERVED_ENV_MESSAGE)
        names = [entry.name for entry in self.env or []]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"spec.template.env lists {', '.join(duplicates)} more than once; keep one entry per name"
            )
        return self


class WorkerPoolSpec(KubeModel):
    """Desired state of a WorkerPool: which queues its workers serve, where, and how many."""

    region: str | None = Field(
        default=None,
        max_length=63,
        pattern=REGION_NAME_PATTERN,
        description="Name of the Region whose jobs the workers claim and whose nodes they run on; unset uses the default Region.",
    )
    queues: list[QueueName] = Field(
        min_length=1,
        max_length=32,
        description="Queues the workers claim jobs from (1 to 32 distinct names of letters, digits and _ . : -).",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=512,
        description="Worker container image; unset uses the operator's worker image.",
    )
    concurrency: int = Field(
        default=10, ge=1, le=10_000, description="Jobs each worker runs at the same time."
    )
    replicas: Replicas = Field(default_factory=Replicas, description=Replicas.__doc__)
    autoscaling: Autoscaling = Field(default_factory=Autoscaling, description=Autoscaling.__doc__)
    drain: Drain = Field(default_factory=Drain, description=Drain.__doc__)
    egress: Egress = Field(default_factory=Egress, description=Egress.__doc__)
    database: Database | None = Field(
        default=None,
        description="PostgreSQL database of the workers, as a worker role (corral db create-worker-role); unset uses the worker URL the operator was given (chart value workerDatabase.secretName), never the operator's own. With neither, the pool is Degraded.",
    )
    enrollment: Enrollment = Field(default_factory=Enrollment, description=Enrollment.__doc__)
    paused: bool = Field(
        default=False,
        description="Stop dispatch to this pool: its workers drain and it stays at zero pods until false. Jobs keep queueing.",
    )
    template: PodTemplate | None = Field(
        default=None, description="Pod-level settings for the worker pods."
    )

    @model_validator(mode="after")
    def _queues_distinct(self) -> WorkerPoolSpec:
        duplicates = sorted({name for name in self.queues if self.queues.count(name) > 1})
        if duplicates:
            raise ValueError(
                f"spec.queues lists {', '.join(duplicates)} more than once; keep each queue once"
            )
        return self


class WorkerPoolPhase(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    SCALING = "Scaling"
    DRAINING = "Draining"
    PAUSED = "Paused"
    DEGRADED = "Degraded"


class ScaleDown(KubeModel):
    """Pods whose workers drain before the Deployment's replicas go down.

    Kept in status so that an operator taking over after a restart finishes
    (or cancels) the same drain instead of starting another.
    """

    target_replicas: int = Field(ge=0, le=1000, description="Replicas once the drain is done.")
    pods: list[Annotated[str, StringConstraints(max_length=253)]] = Field(
        max_length=1000,
        description="Names of the pods being drained; they are removed first.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    started_at: datetime = Field(description="When the drain began.")


class WorkerPoolStatus(KubeModel):
    """Observed state of a WorkerPool, written by the operator."""

    phase: WorkerPoolPhase | None = Field(
        default=None,
        description="Pending, Ready, Scaling, Draining, Paused or Degraded (see conditions for why).",
    )
    region: str | None = Field(
        default=None, max_length=63, description="Region the pool resolved to."
    )
    replicas: int | None = Field(
        default=None, ge=0, description="Worker pods that exist (from the Deployment)."
    )
    ready_replicas: int | None = Field(
        default=None, ge=0, description="Worker pods passing their readiness probe."
    )
    desired_replicas: int | None = Field(
        default=None, ge=0, description="Worker pods the operator currently wants."
    )
    ready: str | None = Field(
        default=None, max_length=32, description="readyReplicas/desiredReplicas, e.g. 3/5."
    )
    queues_text: str | None = Field(
        default=None,
        max_length=2048,  # 32 names of at most 63 characters, and the commas
        description="spec.queues joined by commas (default,email), for the QUEUES column of kubectl get.",
    )
    queue_depth: int | None = Field(
        default=None, ge=0, description="Jobs waiting in the pool's queues for its region."
    )
    running_jobs: int | None = Field(
        default=None, ge=0, description="Jobs the pool's workers are running."
    )
    workers: int | None = Field(
        default=None, ge=0, description="Workers of the pool with a recent heartbeat."
    )
    last_scale_time: datetime | None = Field(
        default=None, description="When desiredReplicas last changed."
    )
    scale_down: ScaleDown | None = Field(
        default=None,
        description="A drain-first scale-down in progress: the pods being drained before the Deployment's replicas are lowered.",
    )
    selector: str | None = Field(
        default=None,
        max_length=1024,
        description="Label selector of the worker pods (used by the scale subresource).",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed from."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        description="Ready, Progressing, Degraded and ScalingLimited, with reasons and messages.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


# ------------------------------------------------------------------------------ Region


class Location(KubeModel):
    """Where the region is, for maps and dashboards."""

    latitude: float = Field(ge=-90, le=90, description="Degrees north (negative: south).")
    longitude: float = Field(ge=-180, le=180, description="Degrees east (negative: west).")


class RegionScheduling(KubeModel):
    """Node placement applied to every pool in the region."""

    node_selector: dict[str, LabelValue] | None = Field(
        default=None,
        max_length=32,
        description="Node labels the region's worker pods must match, e.g. {topology.kubernetes.io/region: eu-west-1}.",
    )
    tolerations: list[Toleration] | None = Field(
        default=None,
        max_length=32,
        description="Taints the region's worker pods tolerate.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )


class RegionSpec(KubeModel):
    """A place where jobs run: pools in a region claim only jobs for that region (or for none)."""

    display_name: str | None = Field(
        default=None, max_length=128, description="Human-readable name, e.g. 'EU West (Dublin)'."
    )
    location: Location | None = Field(default=None, description=Location.__doc__)
    scheduling: RegionScheduling | None = Field(default=None, description=RegionScheduling.__doc__)


class RegionPhase(StrEnum):
    READY = "Ready"
    NO_WORKERS = "NoWorkers"


class RegionStatus(KubeModel):
    """Observed state of a Region, written by the operator."""

    phase: RegionPhase | None = Field(
        default=None,
        description="Ready when a worker heartbeats or its pools are scaled to zero on purpose; NoWorkers otherwise.",
    )
    pools: int | None = Field(default=None, ge=0, description="WorkerPools in this region.")
    workers: int | None = Field(
        default=None, ge=0, description="Workers in this region with a recent heartbeat."
    )
    queue_depth: int | None = Field(
        default=None,
        ge=0,
        description="Jobs waiting for this region (or for any region) in the queues its pools serve.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this status was computed from."
    )
    conditions: list[Condition] | None = Field(
        default=None,
        max_length=16,
        description="Ready, with reason and message.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )


# ------------------------------------------------------------------ whole objects


class ObjectMeta(KubeModel):
    """The metadata fields the operator reads; the rest are kept as they are."""

    model_config = ConfigDict(extra="allow")

    name: str
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    deletion_timestamp: datetime | None = None


class KubeObject(KubeModel):
    """What every corral object has: its kind (KIND; PLURAL names it in
    the API's paths), metadata and a name that is a DNS label. The CRDs'
    names are derived from these (`corral.api.crdgen`)."""

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]

    api_version: str = API_VERSION
    kind: str  # each kind's default: its KIND
    metadata: ObjectMeta

    @model_validator(mode="after")
    def _name_is_dns_label(self) -> Self:
        _check_object_name(self.metadata.name)
        return self

    @classmethod
    def from_kube(cls, body: dict[str, Any]) -> Self:
        return cls.model_validate(body)


class WorkerPool(KubeObject):
    """A fleet of `corral worker` pods serving some queues in one region."""

    KIND: ClassVar[str] = "WorkerPool"
    PLURAL: ClassVar[str] = "workerpools"

    kind: str = "WorkerPool"
    spec: WorkerPoolSpec
    status: WorkerPoolStatus | None = None


class Region(KubeObject):
    """A region workers run in; cluster-scoped."""

    KIND: ClassVar[str] = "Region"
    PLURAL: ClassVar[str] = "regions"

    kind: str = "Region"
    spec: RegionSpec = Field(default_factory=RegionSpec)
    status: RegionStatus | None = None

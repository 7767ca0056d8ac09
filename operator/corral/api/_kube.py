"""Kubernetes sub-objects that WorkerPool and Region embed: resources, env,
tolerations, conditions.

Part of `corral.api`, the one source of truth for the CRD schemas
(`corral.api.crdgen` turns these models into `crds/*.yaml`). Each model here
mirrors the fields of its core/v1 or meta/v1 counterpart that a worker pod
needs, with the same names and validation, so that the generated schema stays
structural and the API server rejects a typo instead of pruning it. Only
`affinity` is kept free-form (see `Affinity`).
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel

# The API server's resource.Quantity grammar (same expression controller-gen emits).
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
_QUANTITY = re.compile(QUANTITY_PATTERN)
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


# Label values are capped at 63 characters by the API server; annotation
# values only by the object's 256 KiB total, so 64 KiB keeps CEL estimates sane.
LabelValue = Annotated[str, Field(max_length=63)]
AnnotationValue = Annotated[str, Field(max_length=65536)]


class KubeModel(BaseModel):
    """Base of every corral API model: camelCase on the wire, unknown fields rejected.

    `extra="forbid"` mirrors the API server, which rejects unknown fields under
    strict field validation; Python callers use snake_case names.
    """

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
    )

    def to_kube(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not _QUANTITY.match(value):
        raise ValueError(
            f"{value!r} is not a Kubernetes quantity; write e.g. 500m, 2, 256Mi or 1Gi"
        )
    return value


Quantity = Annotated[
    int | str,
    AfterValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_PATTERN,
            "x-kubernetes-int-or-string": True,
        }
    ),
]


class ResourceRequirements(KubeModel):
    """CPU and memory for each worker container (core/v1 ResourceRequirements).

    When unset, workers request 50m CPU and 96Mi memory and have no limits.
    """

    limits: dict[str, Quantity] | None = Field(
        default=None,
        max_length=16,
        description="Maximum amount of each resource a worker container may use, e.g. {cpu: '1', memory: 512Mi}.",
    )
    requests: dict[str, Quantity] | None = Field(
        default=None,
        max_length=16,
        description="Amount of each resource the scheduler reserves for a worker container, e.g. {cpu: 100m, memory: 128Mi}.",
    )


class KeySelector(KubeModel):
    """Selects a key of a Secret or ConfigMap in the pool's namespace."""

    name: str = Field(
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="Name of the Secret or ConfigMap, in the pool's namespace.",
    )
    key: str = Field(min_length=1, max_length=253, description="Key within the object.")
    optional: bool | None = Field(
        default=None, description="Start the worker even if the object or key is missing."
    )


class ObjectFieldSelector(KubeModel):
    """Selects a field of the worker pod, e.g. metadata.name or status.podIP."""

    field_path: str = Field(
        max_length=256, description="Path of the field, e.g. metadata.name or status.podIP."
    )
    api_version: str | None = Field(
        default=None, max_length=64, description="Schema version of fieldPath; defaults to v1."
    )


class ResourceFieldSelector(KubeModel):
    """Selects a resource limit or request of the worker container."""

    resource: str = Field(
        max_length=64, description="Resource to select, e.g. limits.cpu or requests.memory."
    )
    container_name: str | None = Field(
        default=None, max_length=63, description="Container name; defaults to the worker container."
    )
    divisor: Quantity | None = Field(
        default=None, description="Unit the value is expressed in, e.g. 1Mi; defaults to 1."
    )


class EnvVarSource(KubeModel):
    """Where an environment variable's value comes from; exactly one source is set."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.secretKeyRef), has(self.configMapKeyRef), "
                    "has(self.fieldRef), has(self.resourceFieldRef)]"
                    ".filter(x, x).size() == 1",
                    "message": "valueFrom must set exactly one of secretKeyRef, "
                    "configMapKeyRef, fieldRef or resourceFieldRef",
                }
            ]
        }
    )

    secret_key_ref: KeySelector | None = Field(
        default=None, description="A key of a Secret in the pool's namespace."
    )
    config_map_key_ref: KeySelector | None = Field(
        default=None, description="A key of a ConfigMap in the pool's namespace."
    )
    field_ref: ObjectFieldSelector | None = Field(
        default=None, description="A field of the worker pod."
    )
    resource_field_ref: ResourceFieldSelector | None = Field(
        default=None, description="A resource limit or request of the worker container."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> EnvVarSource:
        chosen = [
            self.secret_key_ref,
            self.config_map_key_ref,
            self.field_ref,
            self.resource_field_ref,
        ]
        if sum(source is not None for source in chosen) != 1:
            raise ValueError(
                "valueFrom must set exactly one of secretKeyRef, configMapKeyRef, "
                "fieldRef or resourceFieldRef"
            )
        return self


class EnvVar(KubeModel):
    """An environment variable for the worker container (core/v1 EnvVar)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!(has(self.value) && has(self.valueFrom))",
                    "message": "an env entry sets either value or valueFrom, not both",
                }
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=253,
        pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$",
        description="Variable name: letters, digits, '_', '-' and '.', not starting with a digit.",
    )
    value: str | None = Field(
        default=None, max_length=32768, description="Literal value of the variable."
    )
    value_from: EnvVarSource | None = Field(
        default=None, description="Take the value from a Secret, ConfigMap or pod field."
    )

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value is not None and self.value_from is not None:
            raise ValueError(f"env {self.name}: set either value or valueFrom, not both")
        return self


class TolerationOperator(StrEnum):
    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(KubeModel):
    """Lets worker pods run on nodes with a matching taint (core/v1 Toleration)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.operator) || self.operator != 'Exists' "
                    "|| !has(self.value) || self.value == ''",
                    "message": "a toleration with operator Exists must not set value; "
                    "drop value or use operator Equal",
                }
            ]
        }
    )

    key: str | None = Field(
        default=None,
        max_length=316,
        description="Taint key to tolerate; empty with operator Exists tolerates every taint.",
    )
    operator: TolerationOperator | None = Field(
        default=None, description="Exists or Equal (the default when unset)."
    )
    value: str | None = Field(
        default=None, max_length=63, description="Taint value to match with operator Equal."
    )
    effect: TaintEffect | None = Field(
        default=None,
        description="Taint effect to match: NoSchedule, PreferNoSchedule or NoExecute; unset matches all.",
    )
    toleration_seconds: int | None = Field(
        default=None,
        ge=0,
        description="For NoExecute: how long the pod stays bound after the taint appears (seconds).",
    )

    @model_validator(mode="after")
    def _exists_has_no_value(self) -> Toleration:
        if self.operator == TolerationOperator.EXISTS and self.value:
            raise ValueError(
                "a toleration with operator Exists must not set value; "
                "drop value or use operator Equal"
            )
        return self


# core/v1 Affinity is three deep trees of selectors; a faithful schema would
# triple the CRD's size for a field most pools leave empty. It is the one
# free-form leaf: the API server keeps it as written and the Deployment's own
# validation checks it when the operator applies it, so a mistake surfaces as
# the pool's Degraded condition rather than at `kubectl apply`.
Affinity = Annotated[
    dict[str, Any],
    WithJsonSchema({"type": "object", "x-kubernetes-preserve-unknown-fields": True}),
]


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(KubeModel):
    """One aspect of the object's state (the meta/v1 Condition shape)."""

    type: str = Field(max_length=316, description="Aspect this condition describes, e.g. Ready.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase cause of the last transition, for programs.",
    )
    message: str = Field(
        default="", max_length=32768, description="What happened and what to do, for humans."
    )
    last_transition_time: datetime = Field(description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed from."
    )

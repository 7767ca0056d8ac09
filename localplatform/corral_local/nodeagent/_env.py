"""Container environment, as the kubelet builds it: `envFrom`, `env`, `$(VAR)`.

Pure functions called by `_pod` before a container starts; `_volumes` uses the
same field and quantity helpers for downwardAPI files. Object lookups (secrets,
config maps) come in through `Sources`, so the rules are unit-tested without an
API server.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

Json = dict[str, Any]


class ConfigError(Exception):
    """The kubelet's CreateContainerConfigError: a reference that cannot be resolved."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion.

    `$(NAME)` becomes env[NAME] when NAME is defined and stays as written when it
    is not; `$$` is an escaped `$`, so `$$(NAME)` yields the literal `$(NAME)`.
    """
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close == -1:
                out.append(text[i:])  # unterminated: kept literally
                break
            name = text[i + 2 : close]
            out.append(env[name] if name in env else text[i : close + 1])
            i = close + 1
        else:
            out.append(ch)
            i += 1
    return "".join(out)


# -- quantities -------------------------------------------------------------------
# Kubernetes quantity suffixes: n u m "" k M G T P E (powers of 1000) and
# Ki Mi Gi Ti Pi Ei (powers of 1024).
_SUFFIX = {
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate("num", start=-3)},
    "": Decimal(1),
    **{suffix: Decimal(1000) ** power for power, suffix in enumerate("kMGTPE", start=1)},
    **{f"{suffix}i": Decimal(1024) ** power for power, suffix in enumerate("KMGTPE", start=1)},
}
_QUANTITY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


def parse_quantity(text: str | int | float) -> Decimal:
    """A resource.Quantity string ('250m', '1Gi', '2') as a Decimal of base units."""
    match = _QUANTITY.match(str(text).strip())
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {text!r}")
    return Decimal(match.group(1)) * _SUFFIX[match.group(2)]


def resource_value(
    container: Json, resource: str, divisor: str | None, node_allocatable: Mapping[str, str]
) -> str:
    """resourceFieldRef: limits fall back to node allocatable, like the kubelet does."""
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "limits":
        raw = node_allocatable.get(name)
    if raw is None:
        raw = "0"
    value = parse_quantity(raw) / parse_quantity(divisor or "1")
    return str(math.ceil(value))


# -- fields -------------------------------------------------------------------------
_SUBSCRIPT = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


def _format_map(values: Mapping[str, str]) -> str:
    # The downward API's file format for whole label/annotation maps.
    return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))


def field_value(pod: Json, path: str, *, pod_ip: str, host_ip: str) -> str:
    """The value of a `fieldRef.fieldPath` the kubelet supports."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    match = _SUBSCRIPT.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple: dict[str, Callable[[], str]] = {
        "metadata.name": lambda: str(meta.get("name", "")),
        "metadata.namespace": lambda: str(meta.get("namespace", "")),
        "metadata.uid": lambda: str(meta.get("uid", "")),
        "metadata.labels": lambda: _format_map(meta.get("labels") or {}),
        "metadata.annotations": lambda: _format_map(meta.get("annotations") or {}),
        "spec.nodeName": lambda: str(spec.get("nodeName", "")),
        "spec.serviceAccountName": lambda: str(spec.get("serviceAccountName", "")),
        "status.podIP": lambda: pod_ip,
        "status.podIPs": lambda: pod_ip,
        "status.hostIP": lambda: host_ip,
        "status.hostIPs": lambda: host_ip,
    }
    if path not in simple:
        raise ConfigError(f"fieldRef.fieldPath {path!r} is not supported by the node agent")
    return simple[path]()


# -- env -----------------------------------------------------------------------------
@dataclass
class Sources:
    """What env resolution may read: lookups return None for a missing object."""

    secret: Callable[[str], Json | None]
    config_map: Callable[[str], Json | None]
    pod_ip: str = ""
    host_ip: str = ""
    node_allocatable: Mapping[str, str] = field(default_factory=dict)


def secret_data(secret: Json) -> dict[str, str]:
    data = {
        k: base64.b64decode(v).decode("utf-8", "replace")
        for k, v in (secret.get("data") or {}).items()
    }
    data.update(secret.get("stringData") or {})
    return data


def config_map_data(config_map: Json) -> dict[str, str]:
    data = dict(config_map.get("data") or {})
    for k, v in (config_map.get("binaryData") or {}).items():
        data[k] = base64.b64decode(v).decode("utf-8", "replace")
    return data


_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def _key_ref(
    ref: Json,
    kind: str,
    lookup: Callable[[str], Json | None],
    decode: Callable[[Json], dict[str, str]],
) -> str | None:
    obj = lookup(ref.get("name", ""))
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
    data = decode(obj)
    if ref["key"] not in data:
        if optional:
            return None
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ref.get('name', '')}")
    return data[ref["key"]]


def container_env(
    pod: Json, container: Json, sources: Sources, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a container starts with, on top of `base` (image/service env).

    Order as in the kubelet: envFrom sources in order (later ones win, invalid
    names skipped), then env entries in order, each `value` expanded against
    everything defined before it.
    """
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            ref, kind = source["configMapRef"], "configmap"
            obj = sources.config_map(ref.get("name", ""))
            data = config_map_data(obj) if obj else None
        elif "secretRef" in source:
            ref, kind = source["secretRef"], "secret"
            obj = sources.secret(ref.get("name", ""))
            data = secret_data(obj) if obj else None
        else:
            continue
        if data is None:
            if ref.get("optional"):
                continue
            raise ConfigError(f'{kind} "{ref.get("name", "")}" not found')
        for key, item in data.items():
            if _ENV_NAME.match(prefix + key):
                env[prefix + key] = item
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var["value"]), env)
            continue
        value_from = var.get("valueFrom")
        if not value_from:
            env[name] = ""
            continue
        value: str | None
        if "secretKeyRef" in value_from:
            value = _key_ref(value_from["secretKeyRef"], "secret", sources.secret, secret_data)
        elif "configMapKeyRef" in value_from:
            value = _key_ref(
                value_from["configMapKeyRef"], "configmap", sources.config_map, config_map_data
            )
        elif "fieldRef" in value_from:
            value = field_value(
                pod,
                value_from["fieldRef"]["fieldPath"],
                pod_ip=sources.pod_ip,
                host_ip=sources.host_ip,
            )
        elif "resourceFieldRef" in value_from:
            ref = value_from["resourceFieldRef"]
            value = resource_value(
                container, ref["resource"], ref.get("divisor"), sources.node_allocatable
            )
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(value_from)}")
        if value is not None:
            env[name] = value
    return env


def command_line(
    container: Json, image_entrypoint: list[str], image_cmd: list[str], env: Mapping[str, str]
) -> list[str]:
    """Docker's rule: `command` replaces ENTRYPOINT (and drops CMD); `args` replaces CMD.

    Only the pod's own strings are `$(VAR)`-expanded, never the image's.
    """
    command = [expand(str(a), env) for a in container.get("command") or []]
    args = container.get("args")
    own_args = [expand(str(a), env) for a in args] if args is not None else None
    if command:
        return [*command, *(own_args or [])]
    return [*image_entrypoint, *(own_args if own_args is not None else image_cmd)]

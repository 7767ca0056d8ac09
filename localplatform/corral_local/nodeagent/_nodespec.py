"""Node descriptions from the command line, and the Node object built from one.

`--node name:region=eu,zone=eu-a,cpu=8` is parsed here (pure, unit-tested);
`_agent` registers the resulting Node objects and keeps them Ready.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]

KUBELET_VERSION = "v1.36.3"
_CAPACITY_KEYS = {"cpu", "memory", "pods", "ephemeral-storage"}
_SHORT_LABELS = {
    "region": "topology.kubernetes.io/region",
    "zone": "topology.kubernetes.io/zone",
    "instance-type": "node.kubernetes.io/instance-type",
}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class NodeSpec:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    capacity: dict[str, str] = field(default_factory=dict)

    def full_capacity(self) -> dict[str, str]:
        return {
            "cpu": "4",
            "memory": "8Gi",
            "pods": "110",
            "ephemeral-storage": "100Gi",
            **self.capacity,
        }


def parse_node(text: str) -> NodeSpec:
    """`name[:key=value,...]`: region/zone/instance-type are shorthands for the
    well-known labels, cpu/memory/pods/ephemeral-storage set capacity, anything
    else is a label key as written."""
    name, _, rest = text.partition(":")
    name = name.strip()
    if not _NAME.match(name):
        raise ValueError(
            f"--node {text!r}: {name!r} is not a valid node name (lower-case DNS name)"
        )
    labels: dict[str, str] = {}
    capacity: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        if not eq:
            raise ValueError(f"--node {text!r}: {part!r} should be key=value")
        if key in _CAPACITY_KEYS:
            capacity[key] = value
        else:
            labels[_SHORT_LABELS.get(key, key)] = value
    return NodeSpec(name, labels, capacity)


def parse_nodes(values: list[str]) -> list[NodeSpec]:
    """`--nodes 3` (node-1..node-3), `--nodes a,b:zone=z` and `--node` forms, merged."""
    out: list[NodeSpec] = []
    for value in values:
        if value.isdigit():
            out += [NodeSpec(f"node-{i}") for i in range(1, int(value) + 1)]
        else:
            # a comma inside a spec separates labels; ';' separates nodes
            out += [parse_node(v) for v in value.split(";") if v.strip()]
    names = [n.name for n in out]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ValueError(f"node names must be unique, repeated: {sorted(dupes)}")
    return out


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def node_object(spec: NodeSpec) -> Json:
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": _arch(),
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": _arch(),
        "corral.dev/node-agent": "true",
        **spec.labels,
    }
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels},
        "spec": {},
    }


def node_status(
    spec: NodeSpec, address: str, heartbeat: str, kubelet_port: int, previous: list[Json]
) -> Json:
    before = {c["type"]: c for c in previous}

    def cond(ctype: str, status: str, reason: str, message: str) -> Json:
        old = before.get(ctype)
        since = old["lastTransitionTime"] if old and old.get("status") == status else heartbeat
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": heartbeat,
            "lastTransitionTime": since,
        }

    capacity = spec.full_capacity()
    return {
        "capacity": capacity,
        "allocatable": dict(capacity),
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond("Ready", "True", "KubeletReady", "corral node agent is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": address}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": spec.name,
            "systemUUID": spec.name,
            "bootID": spec.name,
            "kernelVersion": platform.release(),
            "osImage": "corral node agent (host processes)",
            "containerRuntimeVersion": "corral://0.1",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": _arch(),
        },
    }

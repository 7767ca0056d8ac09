"""Pod status as the kubelet computes it: phase, conditions, container statuses.

Pure functions over `ContainerRecord`s, called by `_pod` after every change; the
result is what `_kube.patch_pod_status` sends. Kept free of processes and I/O
so the kubelet's rules (kubelet_pods.go getPhase and friends) are unit-tested.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_time() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class ContainerRecord:
    """What the agent knows about one container of a pod."""

    name: str
    image: str
    init: bool = False
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    last_terminated: Json | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False  # startup probe passed (or none)
    container_id: str = ""
    image_id: str = ""
    extra: Json = field(default_factory=dict)

    def terminated_json(self) -> Json:
        out: Json = {
            "exitCode": self.exit_code if self.exit_code is not None else 0,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
            "signal": self.signal or None,
            "message": self.message or None,
        }
        return out

    def to_status(self) -> Json:
        # Every key of state/lastState is sent, absent ones as null: the status
        # is a strategic merge patch, and a null is what removes the old key.
        state: Json = {"waiting": None, "running": None, "terminated": None}
        if self.state == "running":
            state["running"] = {"startedAt": self.started_at}
        elif self.state == "terminated":
            state["terminated"] = self.terminated_json()
        else:
            state["waiting"] = {"reason": self.reason, "message": self.message or None}
        status: Json = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.state == "running" and self.started,
            "state": state,
            "lastState": {"terminated": self.last_terminated},
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status


def _succeeded(c: ContainerRecord) -> bool:
    return c.state == "terminated" and c.exit_code == 0


def pod_phase(
    restart_policy: str,
    init: list[ContainerRecord],
    regular: list[ContainerRecord],
    *,
    init_failed_for_good: bool = False,
) -> str:
    """kubelet getPhase: Pending, Running, Succeeded or Failed."""
    if init_failed_for_good:
        return "Failed"
    if any(not _succeeded(c) for c in init):
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in regular:
        if c.state == "running":
            running += 1
        elif c.state == "terminated":
            stopped += 1
            succeeded += int(c.exit_code == 0)
        elif c.last_terminated is not None:
            stopped += 1  # waiting to restart after a crash: it ran before
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Running" if restart_policy == "OnFailure" else "Failed"
    return "Pending"


def _condition(ctype: str, ok: bool, reason: str, previous: dict[str, Json]) -> Json:
    status = "True" if ok else "False"
    before = previous.get(ctype)
    since = before.get("lastTransitionTime") if before and before.get("status") == status else None
    cond: Json = {
        "type": ctype,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or now_iso(),
    }
    cond["reason"] = reason if not ok and reason else None  # null clears an old reason
    return cond


def pod_conditions(
    pod: Json,
    phase: str,
    sandbox_ready: bool,
    init: list[ContainerRecord],
    regular: list[ContainerRecord],
    last_sent: list[Json] | None = None,
) -> list[Json]:
    """The conditions the kubelet owns (PodScheduled is the scheduler's, kept as is).

    A condition keeps its lastTransitionTime while its status does not change,
    judged against what the agent sent last (the watch may lag behind).
    """
    previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    previous.update({c["type"]: c for c in last_sent or []})
    terminal = phase in ("Succeeded", "Failed")
    initialized = all(_succeeded(c) for c in init) or (terminal and not init)
    containers_ready = bool(regular) and all(c.ready for c in regular) and not terminal
    gates = [g["conditionType"] for g in (pod.get("spec") or {}).get("readinessGates") or []]
    gates_ok = all(previous.get(g, {}).get("status") == "True" for g in gates)
    not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    return [
        _condition("PodReadyToStartContainers", sandbox_ready and not terminal, "", previous),
        _condition("Initialized", initialized, "ContainersNotInitialized", previous),
        _condition("ContainersReady", containers_ready, not_ready, previous),
        _condition(
            "Ready",
            containers_ready and gates_ok,
            not_ready if not containers_ready else "ReadinessGatesNotReady",
            previous,
        ),
    ]

"""Who a container runs as, and the identities the node agent refuses.

A pure function called by `_pod` before a container starts: the user, group and
supplementary groups of the pod's and the container's securityContext (the
container's win), checked as the kubelet checks them. A refusal is a
`ConfigError`, which `_pod` reports as the kubelet's CreateContainerConfigError
(the container waiting with that reason, and a Failed event).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from corral_local.nodeagent._env import ConfigError

Json = dict[str, Any]


@dataclass(frozen=True)
class Identity:
    uid: int | None = None
    gid: int | None = None
    groups: list[int] = field(default_factory=list)


def container_identity(pod: Json, spec: Json, agent_uid: int, agent_gid: int) -> Identity:
    """The identity `spec` runs as, or ConfigError when it cannot be given.

    runAsNonRoot refuses a container that would run as root (no runAsUser, or
    0), with the kubelet's words.

    Dropping to another user needs root (setgroups, setgid, setuid): an agent
    that is not root can only run a container as itself, so it refuses any
    other runAsUser / runAsGroup / supplementalGroups / fsGroup up front rather
    than let the container crash-loop on a PermissionError.
    """
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = spec.get("securityContext") or {}
    uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
    gid = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if pod_sc.get("fsGroup") is not None:
        groups.append(int(pod_sc["fsGroup"]))
    identity = Identity(
        uid=None if uid is None else int(uid),
        gid=None if gid is None else int(gid),
        groups=groups if uid is not None or gid is not None else [],
    )
    if sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")):
        # the kubelet's verifyRunAsNonRoot; an image here has no USER: it runs as root
        meta = pod["metadata"]
        where = f'(pod: "{meta["name"]}_{meta["namespace"]}({meta.get("uid", "")})", container: {spec["name"]})'
        if identity.uid is None:
            raise ConfigError(f"container has runAsNonRoot and image will run as root {where}")
        if identity.uid == 0:
            raise ConfigError(f"container's runAsUser breaks non-root policy {where}")
    if agent_uid != 0:
        asked = [
            f"{what} {value}"
            for what, value, own in (
                ("runAsUser", identity.uid, agent_uid),
                ("runAsGroup", identity.gid, agent_gid),
            )
            if value is not None and value != own
        ] + [f"supplementalGroups/fsGroup {g}" for g in groups if g != agent_gid]
        if asked:
            raise ConfigError(
                f"container {spec['name']} asks for {', '.join(asked)}, which needs the node "
                f"agent to run as root (it runs as uid {agent_uid} and can start containers "
                "only as itself)"
            )
    return identity

"""Pod volumes materialised as directories under the pod's folder.

Called by `_pod` when a sandbox is built (and again to refresh projected
service-account tokens). Each volume becomes `<pod dir>/volumes/<name>/`;
`_runtime` then binds it onto every mountPath inside the container's private
mount namespace. Supported: emptyDir, secret, configMap, downwardAPI, projected
(secret, configMap, downwardAPI, serviceAccountToken) and hostPath. Files are
written in place, not through the kubelet's atomic `..data` symlink swap, and
are not refreshed when the source object changes (tokens excepted).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral_local.nodeagent._env import (
    ConfigError,
    field_value,
    resource_value,
    secret_data,
)

Json = dict[str, Any]


@dataclass
class VolumeContext:
    pod: Json
    secret: Callable[[str], Json | None]
    config_map: Callable[[str], Json | None]
    token: Callable[[list[str] | None, int], str]  # (audiences, expiration_s) -> JWT
    pod_ip: str
    host_ip: str
    node_allocatable: dict[str, str] = field(default_factory=dict)


def _write(path: Path, content: bytes, mode: int, fs_group: int | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    tmp.chmod(mode)
    if fs_group is not None:
        os.chown(tmp, -1, fs_group)
    tmp.replace(path)


def _keyed(
    data: dict[str, bytes],
    items: list[Json] | None,
    default_mode: int,
    out: Path,
    what: str,
    optional: bool,
    fs_group: int | None,
) -> None:
    if items:
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise ConfigError(f"{what}: key {item['key']!r} not found")
            _write(
                out / item["path"], data[item["key"]], int(item.get("mode", default_mode)), fs_group
            )
    else:
        for key, value in data.items():
            _write(out / key, value, default_mode, fs_group)


def _secret_bytes(obj: Json) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    data.update(
        {k: v.encode() for k, v in secret_data({"stringData": obj.get("stringData")}).items()}
    )
    return data


def _config_map_bytes(obj: Json) -> dict[str, bytes]:
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    return data


def _downward(
    items: list[Json], default_mode: int, out: Path, ctx: VolumeContext, fs_group: int | None
) -> None:
    containers = {c["name"]: c for c in ctx.pod["spec"].get("containers", [])}
    for item in items:
        if "fieldRef" in item:
            value = field_value(
                ctx.pod, item["fieldRef"]["fieldPath"], pod_ip=ctx.pod_ip, host_ip=ctx.host_ip
            )
        elif "resourceFieldRef" in item:
            ref = item["resourceFieldRef"]
            container = containers.get(ref.get("containerName", ""), {})
            value = resource_value(
                container, ref["resource"], ref.get("divisor"), ctx.node_allocatable
            )
        else:
            continue
        _write(out / item["path"], value.encode(), int(item.get("mode", default_mode)), fs_group)


def _source(
    kind: str,
    spec: Json,
    default_mode: int,
    out: Path,
    ctx: VolumeContext,
    fs_group: int | None,
) -> None:
    if kind in ("secret", "configMap"):
        # The same projection for both; only where the object and its bytes come from differ.
        secret = kind == "secret"
        name = (spec.get("secretName") if secret else None) or spec.get("name") or ""
        obj = ctx.secret(name) if secret else ctx.config_map(name)
        what = "secret" if secret else "configmap"
        if obj is None:
            if spec.get("optional"):
                return
            raise ConfigError(f'{what} "{name}" not found')
        data = _secret_bytes(obj) if secret else _config_map_bytes(obj)
        optional = bool(spec.get("optional"))
        _keyed(data, spec.get("items"), default_mode, out, f"{what} {name}", optional, fs_group)
    elif kind == "downwardAPI":
        _downward(spec.get("items") or [], default_mode, out, ctx, fs_group)
    elif kind == "serviceAccountToken":
        audience = spec.get("audience")
        token = ctx.token(
            [audience] if audience else None, int(spec.get("expirationSeconds") or 3600)
        )
        _write(out / spec["path"], token.encode(), int(spec.get("mode", default_mode)), fs_group)
    else:
        raise ConfigError(f"projected volume source {kind!r} is not supported by the node agent")


SUPPORTED = ("emptyDir", "secret", "configMap", "downwardAPI", "projected", "hostPath")


def materialise(volume: Json, root: Path, ctx: VolumeContext) -> tuple[Path, float | None]:
    """Build one volume; return its host path and when it wants a refresh (epoch s)."""
    name = volume["name"]
    out = root / name
    fs_group = (ctx.pod["spec"].get("securityContext") or {}).get("fsGroup")
    if "hostPath" in volume:
        path = Path(volume["hostPath"]["path"])
        if volume["hostPath"].get("type") in ("DirectoryOrCreate",) or not path.exists():
            path.mkdir(parents=True, exist_ok=True)
        return path, None
    out.mkdir(parents=True, exist_ok=True)
    if "emptyDir" in volume:
        out.chmod(0o777)  # as the kubelet: any runAsUser may write
        return out, None
    out.chmod(0o755)
    refresh_at: float | None = None
    if "secret" in volume:
        spec = volume["secret"]
        _source("secret", spec, int(spec.get("defaultMode", 0o644)), out, ctx, fs_group)
    elif "configMap" in volume:
        spec = volume["configMap"]
        _source("configMap", spec, int(spec.get("defaultMode", 0o644)), out, ctx, fs_group)
    elif "downwardAPI" in volume:
        spec = volume["downwardAPI"]
        _source("downwardAPI", spec, int(spec.get("defaultMode", 0o644)), out, ctx, fs_group)
    elif "projected" in volume:
        spec = volume["projected"]
        mode = int(spec.get("defaultMode", 0o644))
        for source in spec.get("sources") or []:
            for kind, sub in source.items():
                _source(kind, sub, mode, out, ctx, fs_group)
                if kind == "serviceAccountToken":
                    # the kubelet renews at 80% of the token's life
                    life = int(sub.get("expirationSeconds") or 3600)
                    at = time.time() + 0.8 * life
                    refresh_at = at if refresh_at is None else min(refresh_at, at)
    else:
        kinds = sorted(k for k in volume if k != "name")
        raise ConfigError(
            f"volume {name!r}: type {kinds} is not supported by the node agent "
            f"(supported: {', '.join(SUPPORTED)})"
        )
    return out, refresh_at

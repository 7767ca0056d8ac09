"""Kubeconfig files for the local control plane's users.

Called by `_cluster.LocalCluster` (admin, controller-manager, scheduler) and by
`LocalCluster.client_kubeconfig` (node agents, tests). Credentials are embedded as
base64 data so a kubeconfig stays valid when copied elsewhere (kopf, the Python
client, kubectl and helm all read the `-data` fields).
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import yaml


def _b64(pem: bytes) -> str:
    return base64.b64encode(pem).decode("ascii")


def render_kubeconfig(
    *,
    server: str,
    ca_pem: bytes,
    client_cert_pem: bytes,
    client_key_pem: bytes,
    user: str,
    cluster: str = "corral",
    namespace: str | None = None,
) -> str:
    """A single-cluster, single-user kubeconfig with one current context."""
    if not server.startswith("https://"):
        raise ValueError(f"kubeconfig server must be an https:// URL, got {server!r}")
    context: dict[str, Any] = {"cluster": cluster, "user": user}
    if namespace:
        context["namespace"] = namespace
    doc: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_pem)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client_cert_pem),
                    "client-key-data": _b64(client_key_pem),
                },
            }
        ],
        "contexts": [{"name": f"{user}@{cluster}", "context": context}],
        "current-context": f"{user}@{cluster}",
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_private(path: Path, text: str) -> None:
    """Write a credential file atomically with mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def kubeconfig_server(path: Path) -> str:
    """The server URL of a kubeconfig's current context (for existing clusters)."""
    doc = yaml.safe_load(path.read_text()) or {}
    current = doc.get("current-context")
    contexts = {c.get("name"): c.get("context", {}) for c in doc.get("contexts") or []}
    clusters = {c.get("name"): c.get("cluster", {}) for c in doc.get("clusters") or []}
    if current not in contexts:
        raise ValueError(f"{path}: current-context {current!r} is not among its contexts")
    cluster_name = contexts[current].get("cluster")
    if cluster_name not in clusters:
        raise ValueError(f"{path}: context {current!r} names unknown cluster {cluster_name!r}")
    server = clusters[cluster_name].get("server")
    if not isinstance(server, str) or not server:
        raise ValueError(f"{path}: cluster {cluster_name!r} has no server URL")
    return server

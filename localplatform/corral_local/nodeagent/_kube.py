"""The node agent's only door to the Kubernetes API.

A small JSON-over-HTTPS client built on urllib3 and the kubeconfig file, used by
`_agent` (nodes, leases, pod watch) and `_pod` (pod status, deletion, secrets,
config maps, service-account tokens). Objects are plain dicts as the API sends
them, so the deciding code (`_status`, `_env`) stays pure and typed on dicts.

Why not the `kubernetes` package's typed client: its generated models reject
fields newer than the client, and the kubelet's job is mostly to copy fields
around; dicts keep that honest.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml

Json = dict[str, Any]


class ApiError(Exception):
    """An API call answered with a non-2xx status."""

    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        try:
            message = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            message = body
        super().__init__(f"{method} {path}: HTTP {status}: {message}")


def _materialise(value: str | None, data: str | None, where: Path, name: str) -> str | None:
    """Return a file path for a kubeconfig `x` / `x-data` pair (data is base64)."""
    if value:
        return value
    if not data:
        return None
    path = where / name
    path.write_bytes(base64.b64decode(data))
    path.chmod(0o600)
    return str(path)


class KubeClient:
    """Thread-safe (urllib3 pools are) JSON client for one API server."""

    def __init__(self, kubeconfig: str | Path, *, timeout_s: float = 30.0) -> None:
        config = yaml.safe_load(Path(kubeconfig).read_text())
        context_name = config.get("current-context")
        contexts = {c["name"]: c["context"] for c in config.get("contexts", [])}
        context = contexts.get(context_name) or next(iter(contexts.values()))
        cluster = {c["name"]: c["cluster"] for c in config["clusters"]}[context["cluster"]]
        user = {u["name"]: u["user"] for u in config.get("users", [])}.get(
            context.get("user", ""), {}
        )
        base = Path(kubeconfig).resolve().parent
        self._files = Path(tempfile.mkdtemp(prefix="corral-nodeagent-kube-"))

        def rel(p: str | None) -> str | None:
            return str(base / p) if p and not os.path.isabs(p) else p

        ca = _materialise(
            rel(cluster.get("certificate-authority")),
            cluster.get("certificate-authority-data"),
            self._files,
            "ca.crt",
        )
        cert = _materialise(
            rel(user.get("client-certificate")),
            user.get("client-certificate-data"),
            self._files,
            "client.crt",
        )
        key = _materialise(
            rel(user.get("client-key")), user.get("client-key-data"), self._files, "client.key"
        )
        self.server: str = cluster["server"].rstrip("/")
        self.ca_file = ca
        self.ca_pem: bytes = Path(ca).read_bytes() if ca else b""
        self._headers = {"Accept": "application/json", "User-Agent": "corral-nodeagent"}
        token = user.get("token")
        if not token and user.get("tokenFile"):
            token = Path(rel(user["tokenFile"]) or "").read_text().strip()
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"maxsize": 16, "retries": False}
        if self.server.startswith("https"):
            if ca:
                kwargs.update(cert_reqs=ssl.CERT_REQUIRED, ca_certs=ca)
            elif cluster.get("insecure-skip-tls-verify"):
                kwargs.update(cert_reqs=ssl.CERT_NONE)
                urllib3.disable_warnings()
            if cert and key:
                kwargs.update(cert_file=cert, key_file=key)
        self._pool = urllib3.PoolManager(**kwargs)
        self._timeout = urllib3.Timeout(connect=5.0, read=timeout_s)

    # -- plumbing -------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> Json:
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        headers = dict(self._headers)
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        try:
            resp = self._pool.request(
                method, url, body=data, headers=headers, timeout=self._timeout
            )
        except urllib3.exceptions.HTTPError as exc:
            raise ApiError(0, method, path, f"API server unreachable: {exc}") from exc
        text = resp.data.decode("utf-8", "replace")
        if resp.status >= 300:
            raise ApiError(resp.status, method, path, text)
        return json.loads(text) if text else {}

    def watch(
        self, path: str, *, query: dict[str, Any], timeout_s: int = 300
    ) -> Iterator[tuple[str, Json]]:
        """Yield (type, object) watch events until the server closes the stream."""
        q = dict(query, watch="true", timeoutSeconds=str(timeout_s), allowWatchBookmarks="true")
        url = f"{self.server}{path}?{urlencode(q)}"
        resp = self._pool.request(
            "GET",
            url,
            headers=self._headers,
            preload_content=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout_s + 30),
        )
        try:
            if resp.status >= 300:
                raise ApiError(resp.status, "WATCH", path, resp.read().decode("utf-8", "replace"))
            buffer = b""
            for chunk in resp.stream(4096, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        event = json.loads(line)
                        yield event["type"], event["object"]
        finally:
            resp.release_conn()

    # -- typed helpers ----------------------------------------------------------
    def get(self, path: str) -> Json | None:
        try:
            return self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def get_secret(self, namespace: str, name: str) -> Json | None:
        return self.get(f"/api/v1/namespaces/{quote(namespace)}/secrets/{quote(name)}")

    def get_config_map(self, namespace: str, name: str) -> Json | None:
        return self.get(f"/api/v1/namespaces/{quote(namespace)}/configmaps/{quote(name)}")

    def get_pod(self, namespace: str, name: str) -> Json | None:
        return self.get(f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}")

    def patch_pod_status(self, namespace: str, name: str, status: Json) -> Json:
        # strategic merge: conditions merge by type, so PodScheduled and the
        # controllers' DisruptionTarget survive our updates.
        return self.request(
            "PATCH",
            f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}/status",
            {"status": status},
            content_type="application/strategic-merge-patch+json",
        )

    def delete_pod_now(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's final delete: grace 0, only this incarnation (uid)."""
        try:
            self.request(
                "DELETE",
                f"/api/v1/namespaces/{quote(namespace)}/pods/{quote(name)}",
                {
                    "kind": "DeleteOptions",
                    "apiVersion": "v1",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": uid},
                },
            )
        except ApiError as exc:
            if exc.status not in (404, 409):
                raise

    def request_token(
        self,
        namespace: str,
        service_account: str,
        *,
        audiences: list[str] | None,
        expiration_s: int,
        pod: Json,
    ) -> Json:
        body: Json = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": expiration_s,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": pod["metadata"]["name"],
                    "uid": pod["metadata"]["uid"],
                },
            },
        }
        if audiences:
            body["spec"]["audiences"] = audiences
        return self.request(
            "POST",
            f"/api/v1/namespaces/{quote(namespace)}/serviceaccounts/{quote(service_account)}/token",
            body,
        )

    def create_event(self, namespace: str, event: Json) -> None:
        # events are best effort, as in the kubelet
        with contextlib.suppress(ApiError):
            self.request("POST", f"/api/v1/namespaces/{quote(namespace)}/events", event)

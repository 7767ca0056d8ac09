"""Client of a running node agent's control socket: the chaos handle for tests.

    from corral_local.nodeagent.chaos import ChaosClient
    chaos = ChaosClient(state_dir / "control.sock")
    chaos.kill_pod("ns", "web-0")      # kill -9 every process of the pod
    chaos.stop_node("node-2")          # its processes die, its Lease stops
    chaos.start_node("node-2")

Also a CLI: `python -m corral_local.nodeagent chaos --socket S kill-pod ns/name`.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout_s: float) -> None:
        super().__init__("localhost", timeout=timeout_s)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ChaosError(RuntimeError):
    pass


class ChaosClient:
    def __init__(self, socket_path: str | Path, timeout_s: float = 30.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout_s = timeout_s

    def _call(self, method: str, path: str) -> Any:
        conn = _UnixConnection(self.socket_path, self.timeout_s)
        try:
            conn.request(method, path)
            resp = conn.getresponse()
            body = json.loads(resp.read() or b"{}")
        finally:
            conn.close()
        if resp.status >= 300:
            raise ChaosError(body.get("error", f"HTTP {resp.status}"))
        return body

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/v1/state")
        return result

    def kill_pod(self, namespace: str, name: str, container: str | None = None) -> list[str]:
        query = f"?container={quote(container)}" if container else ""
        killed: list[str] = self._call(
            "POST", f"/v1/pods/{quote(namespace)}/{quote(name)}/kill{query}"
        )["killed"]
        return killed

    def stop_node(self, node: str) -> int:
        pods: int = self._call("POST", f"/v1/nodes/{quote(node)}/stop")["pods"]
        return pods

    def start_node(self, node: str) -> None:
        self._call("POST", f"/v1/nodes/{quote(node)}/start")

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        for pod in self.state()["pods"]:
            if (pod["namespace"], pod["name"]) == (namespace, name):
                return dict(pod)
        return None

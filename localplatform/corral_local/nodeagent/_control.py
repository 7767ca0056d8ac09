"""The agent's control socket: chaos and inspection over HTTP on a Unix socket.

Served by `__main__` next to the agent; `chaos.ChaosClient` is its client.

    GET  /v1/state                       nodes, pods, pids, log files
    POST /v1/pods/<ns>/<name>/kill       kill -9 a pod's processes (?container=c)
    POST /v1/nodes/<name>/stop           the node dies: pods killed, Lease stops
    POST /v1/nodes/<name>/start          the node comes back
"""

from __future__ import annotations

import json
import os
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from corral_local.nodeagent._agent import NodeAgent
from corral_local.nodeagent._http import send


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    agent: NodeAgent


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def address_string(self) -> str:
        return "control"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        send(self, status, "application/json", json.dumps(body).encode())

    def do_GET(self) -> None:
        if urlparse(self.path).path == "/v1/state":
            self._reply(200, self.server.agent.describe())
        else:
            self._reply(404, {"error": f"no such endpoint {self.path}"})

    def do_POST(self) -> None:
        url = urlparse(self.path)
        parts = url.path.strip("/").split("/")
        query = parse_qs(url.query)
        agent = self.server.agent
        try:
            if len(parts) == 5 and parts[:2] == ["v1", "pods"] and parts[4] == "kill":
                container = query.get("container", [None])[0]
                killed = agent.kill_pod(parts[2], parts[3], container)
                self._reply(200, {"killed": killed})
            elif len(parts) == 4 and parts[:2] == ["v1", "nodes"] and parts[3] == "stop":
                self._reply(200, {"stopped": parts[2], "pods": agent.stop_node(parts[2])})
            elif len(parts) == 4 and parts[:2] == ["v1", "nodes"] and parts[3] == "start":
                agent.start_node(parts[2])
                self._reply(200, {"started": parts[2]})
            else:
                self._reply(404, {"error": f"no such endpoint {url.path}"})
        except KeyError as exc:
            self._reply(404, {"error": str(exc.args[0])})


def serve(agent: NodeAgent, path: Path) -> _Server:
    if path.exists():
        path.unlink()
    server = _Server(str(path), _Handler)
    server.agent = agent
    os.chmod(path, 0o600)
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    return server

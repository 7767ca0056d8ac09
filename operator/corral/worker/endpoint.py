"""The worker's small HTTP endpoint: `/metrics`, `/healthz`, `/readyz`,
`GET /status` and `POST /drain`.

Started by `corral.worker.runtime.Worker`; probed by the kubelet (readiness,
liveness), scraped by Prometheus, and called by `corral worker prestop` (the
pod's preStop hook) to drain before SIGTERM. It is a minimal HTTP/1.1 server
on asyncio streams: no web framework is a dependency of the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

__all__ = ["Endpoint", "EndpointTarget"]

_REASONS = {
    200: "OK",
    202: "Accepted",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


class EndpointTarget(Protocol):
    """What the endpoint asks of the worker."""

    def status(self) -> dict[str, Any]: ...
    def is_ready(self) -> tuple[bool, str]: ...
    def is_healthy(self) -> tuple[bool, str]: ...
    def request_drain(self, reason: str) -> None: ...
    def render_metrics(self) -> bytes: ...


Route = Callable[[], Awaitable[tuple[int, str, bytes]]]


class Endpoint:
    def __init__(self, target: EndpointTarget, host: str, port: int) -> None:
        self._target = target
        self._host = host
        self._port = port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                request = await reader.readline()
                length = 0
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b"\n", b""):
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip() or 0)
                if length:
                    await reader.readexactly(min(length, 65536))
                parts = request.decode("latin-1").split()
                method, path = (parts[0], parts[1]) if len(parts) >= 2 else ("GET", "/")
                code, ctype, body = self._route(method, path.split("?", 1)[0])
                head = (
                    f"HTTP/1.1 {code} {_REASONS.get(code, '')}\r\n"
                    f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n"
                )
                writer.write(head.encode() + (b"" if method == "HEAD" else body))
                await writer.drain()
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _route(self, method: str, path: str) -> tuple[int, str, bytes]:
        t = self._target
        text = "text/plain; charset=utf-8"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", t.render_metrics()
        if path in ("/healthz", "/livez"):
            ok, why = t.is_healthy()
            return (200 if ok else 503), text, (why + "\n").encode()
        if path == "/readyz":
            ok, why = t.is_ready()
            return (200 if ok else 503), text, (why + "\n").encode()
        if path == "/status":
            return 200, "application/json", json.dumps(t.status()).encode()
        if path == "/drain":
            if method != "POST":
                return 405, text, b"POST /drain to drain this worker\n"
            t.request_drain("POST /drain")
            return 202, "application/json", json.dumps(t.status()).encode()
        return 404, text, b"try /metrics, /healthz, /readyz, /status or POST /drain\n"

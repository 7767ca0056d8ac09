"""The worker's small HTTP endpoint: `/metrics`, `/healthz`, `/readyz`,
`GET /status` and `POST /drain`. This module binds its socket and keeps the
drain key; the routes and their HTTP/1.1 server (h11 on asyncio streams) are
`corral.worker.endpoint_http`, imported by `serve` once the worker is
claiming: nothing of them is on the way to the first claim.

Started by `corral.worker.runtime.Worker`; probed by the kubelet (readiness,
liveness), scraped by Prometheus, and called by `corral worker prestop` (the
pod's preStop hook) to drain before SIGTERM.

Reading is open to anyone who reaches the port (Prometheus, the kubelet);
draining is not. `POST /drain` needs the per-process drain key the worker
writes to its state directory at start (`write_drain_key`, mode 0600), sent
as `Authorization: Bearer <key>`: only something that can read the worker's
own files (its preStop hook, `corral worker drain` on the same host as the
same user) can drain it. Another pod, or a job of the built-in `http` kind
aimed at this port, cannot.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from corral.worker.endpoint_http import Endpoint


__all__ = [
    "DRAIN_KEY_FILE",
    "EndpointError",
    "EndpointTarget",
    "Listener",
    "listen",
    "read_drain_key",
    "serve",
    "write_drain_key",
]

DRAIN_KEY_FILE = "drain.key"  # in the worker's --state-dir, mode 0600


class EndpointTarget(Protocol):
    """What the endpoint asks of the worker."""

    def status(self) -> dict[str, Any]: ...
    def is_ready(self) -> tuple[bool, str]: ...
    def is_healthy(self) -> tuple[bool, str]: ...
    def request_drain(self, reason: str) -> None: ...
    def render_metrics(self) -> bytes: ...


def write_drain_key(state_dir: Path) -> str:
    """A fresh random key in `state_dir/drain.key` (0600, written atomically);
    a restarted worker writes a new one, so an old key drains nothing."""
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd, tmp = tempfile.mkstemp(prefix=".drain-", dir=state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(key + "\n")
        os.replace(tmp, state_dir / DRAIN_KEY_FILE)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return key


def read_drain_key(state_dir: Path) -> str:
    """The key a running worker wrote (raises OSError when there is none)."""
    return (state_dir / DRAIN_KEY_FILE).read_text().strip()


class EndpointError(RuntimeError):
    """The endpoint cannot start; the message names the setting to change."""


@dataclass
class Listener:
    """A bound listening socket and the drain key written for it."""

    sock: socket.socket
    drain_key: str

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])


def listen(host: str, port: int, state_dir: Path) -> Listener:
    """Write a fresh drain key into `state_dir` and bind host:port (0: any
    free port), so that a bad setting stops the worker before it claims."""
    try:
        drain_key = write_drain_key(state_dir)
    except OSError as exc:
        raise EndpointError(
            f"--state-dir / CORRAL_STATE_DIR: cannot write {DRAIN_KEY_FILE} in "
            f"{state_dir}: {exc.strerror or exc}"
        ) from None
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise EndpointError(
            f"--http-port / CORRAL_HTTP_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return Listener(sock, drain_key)


async def serve(target: EndpointTarget, listener: Listener) -> Endpoint:
    """Serve the endpoint's routes on `listener`'s socket."""
    from corral.worker.endpoint_http import Endpoint

    endpoint = Endpoint(target, "", listener.port, drain_key=listener.drain_key, sock=listener.sock)
    await endpoint.start()
    return endpoint

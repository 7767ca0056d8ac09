"""The worker's small HTTP endpoint: `/metrics`, `/healthz`, `/readyz`,
`GET /status` and `POST /drain`, served by aiohttp's web server.

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

aiohttp is already installed (kopf depends on it); its router answers HEAD,
404 and 405 (with `Allow`) the way the hand-written server this replaced did
by hand.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web

__all__ = [
    "DRAIN_KEY_FILE",
    "Endpoint",
    "EndpointError",
    "EndpointTarget",
    "read_drain_key",
    "serve",
    "write_drain_key",
]

log = logging.getLogger("corral.worker")

DRAIN_KEY_FILE = "drain.key"  # in the worker's --state-dir, mode 0600
_MAX_BODY_BYTES = 64 * 1024  # nothing we serve takes a body
_TEXT = "text/plain; charset=utf-8"
_METRICS = "text/plain; version=0.0.4; charset=utf-8"


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


def _text(code: int, message: str) -> web.Response:
    return web.Response(status=code, body=(message + "\n").encode(), content_type="text/plain")


class Endpoint:
    def __init__(
        self, target: EndpointTarget, host: str, port: int, *, drain_key: str | None
    ) -> None:
        self._target = target
        self._host = host
        self._port = port
        # None: POST /drain is refused to everyone (the worker could not write
        # a key; the registry and SIGTERM still drain it).
        self._drain_key = drain_key
        self._runner: web.AppRunner | None = None
        self.app = web.Application(client_max_size=_MAX_BODY_BYTES)
        self.app.add_routes(
            [
                web.get("/metrics", self._metrics),
                web.get("/healthz", self._healthz),
                web.get("/livez", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/status", self._status),
                web.post("/drain", self._drain),
            ]
        )

    @property
    def port(self) -> int:
        assert self._runner is not None
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            await web.TCPSite(runner, self._host, self._port, shutdown_timeout=1.0).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()

    # ------------------------------------------------------------------ routes
    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self._target.render_metrics(), headers={"Content-Type": _METRICS})

    async def _healthz(self, request: web.Request) -> web.Response:
        ok, why = self._target.is_healthy()
        return _text(200 if ok else 503, why)

    async def _readyz(self, request: web.Request) -> web.Response:
        ok, why = self._target.is_ready()
        return _text(200 if ok else 503, why)

    async def _status(self, request: web.Request) -> web.Response:
        return web.json_response(self._target.status())

    async def _drain(self, request: web.Request) -> web.Response:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            self._refused(request, "no drain key")
            return web.Response(
                status=401,
                text=f"POST /drain needs the key in {DRAIN_KEY_FILE} of the worker's state "
                "directory (`corral worker prestop` sends it)\n",
                headers={"WWW-Authenticate": 'Bearer realm="corral-worker"'},
            )
        if self._drain_key is None or not hmac.compare_digest(
            given.strip().encode(), self._drain_key.encode()
        ):
            self._refused(request, "wrong drain key")
            return _text(403, "wrong drain key")
        self._target.request_drain("POST /drain")
        return web.Response(
            status=202,
            body=json.dumps(self._target.status()).encode(),
            content_type="application/json",
        )

    @staticmethod
    def _refused(request: web.Request, why: str) -> None:
        log.warning("refused POST /drain from %s: %s", request.remote or "?", why)


class EndpointError(RuntimeError):
    """The endpoint cannot start; the message names the setting to change."""


async def serve(target: EndpointTarget, host: str, port: int, state_dir: Path) -> Endpoint:
    """Write a fresh drain key into `state_dir`, then listen on host:port."""
    try:
        drain_key = write_drain_key(state_dir)
    except OSError as exc:
        raise EndpointError(
            f"--state-dir / CORRAL_STATE_DIR: cannot write {DRAIN_KEY_FILE} in "
            f"{state_dir}: {exc.strerror or exc}"
        ) from None
    endpoint = Endpoint(target, host, port, drain_key=drain_key)
    try:
        await endpoint.start()
    except OSError as exc:
        raise EndpointError(
            f"--http-port / CORRAL_HTTP_PORT: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return endpoint

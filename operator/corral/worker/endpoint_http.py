"""The aiohttp side of the worker's endpoint (`corral.worker.endpoint`): the
routes `/metrics`, `/healthz`, `/livez`, `/readyz`, `GET /status` and
`POST /drain`, and their server.

aiohttp is already installed (kopf depends on it); its router answers HEAD,
404 and 405 (with `Allow`) the way the hand-written server this replaced did
by hand. Importing it costs about a tenth of a second, so the worker imports
this module only once its first claim is on its way (`endpoint.serve`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import socket

from aiohttp import web

from corral.worker.endpoint import DRAIN_KEY_FILE, EndpointTarget

__all__ = ["Endpoint"]

log = logging.getLogger("corral.worker")

_MAX_BODY_BYTES = 64 * 1024  # nothing we serve takes a body
_TEXT = "text/plain; charset=utf-8"
_METRICS = "text/plain; version=0.0.4; charset=utf-8"


def _text(code: int, message: str) -> web.Response:
    return web.Response(status=code, body=(message + "\n").encode(), content_type="text/plain")


class Endpoint:
    """The aiohttp application and its server, on `sock` when given (bound
    by `corral.worker.endpoint.listen`), else on host:port."""

    def __init__(
        self,
        target: EndpointTarget,
        host: str,
        port: int,
        *,
        drain_key: str | None,
        sock: socket.socket | None = None,
    ) -> None:
        self._target = target
        self._host = host
        self._port = port
        self._sock = sock
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
            site: web.BaseSite = (
                web.SockSite(runner, self._sock, shutdown_timeout=1.0)
                if self._sock is not None
                else web.TCPSite(runner, self._host, self._port, shutdown_timeout=1.0)
            )
            await site.start()
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

"""The HTTP side of the worker's endpoint (`corral.worker.endpoint`): the
routes `/metrics`, `/healthz`, `/livez`, `/readyz`, `GET /status` and
`POST /drain`, served over asyncio streams with h11 doing HTTP/1.1.

h11 (python-hyper's sans-I/O HTTP/1.1, what uvicorn and httpcore parse
with) reads requests and frames replies: keep-alive, HEAD, chunked bodies,
malformed input. This module owns only the sockets and the routes. aiohttp's
server did this job before; importing aiohttp cost every worker 230-275 ms of
CPU (its connector builds two TLS contexts at import) and 14 MiB of memory,
a third of an idle worker's, for six routes; h11 costs 12-20 ms and 0.3 MiB.

The worker imports this module once its first claim is on its way
(`endpoint.serve`). Probed by the kubelet, scraped by Prometheus, called by
`corral worker prestop`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus

import h11

from corral.worker.endpoint import DRAIN_KEY_FILE, EndpointTarget

__all__ = ["Endpoint", "Reply"]

log = logging.getLogger("corral.worker")

MAX_BODY_BYTES = 64 * 1024  # nothing we serve takes a body
MAX_HEAD_BYTES = 16 * 1024  # request line and headers
REQUEST_TIMEOUT_S = 10.0  # a started request must arrive whole within this
IDLE_TIMEOUT_S = 60.0  # a kept-alive connection with no request is closed
_SHUTDOWN_S = 1.0
_TEXT = "text/plain; charset=utf-8"
_JSON = "application/json; charset=utf-8"
_METRICS = "text/plain; version=0.0.4; charset=utf-8"


@dataclass(frozen=True)
class Reply:
    """One response: status, body, its media type, and any other headers."""

    status: int
    body: bytes
    content_type: str = _TEXT
    headers: tuple[tuple[str, str], ...] = ()


def _text(status: int, message: str, *headers: tuple[str, str]) -> Reply:
    return Reply(status, (message + "\n").encode(), _TEXT, headers)


class Endpoint:
    """The routes and their server, on `sock` when given (bound by
    `corral.worker.endpoint.listen`), else on host:port."""

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
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        # path -> method -> route; GET routes answer HEAD as well.
        self._routes: dict[str, dict[str, Callable[[Mapping[str, str], str], Reply]]] = {
            "/metrics": {"GET": self._metrics},
            "/healthz": {"GET": self._healthz},
            "/livez": {"GET": self._healthz},
            "/readyz": {"GET": self._readyz},
            "/status": {"GET": self._status},
            "/drain": {"POST": self._drain},
        }

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        if self._sock is not None:
            self._server = await asyncio.start_server(self.serve_connection, sock=self._sock)
        else:
            self._server = await asyncio.start_server(self.serve_connection, self._host, self._port)

    async def stop(self) -> None:
        """Stop listening and close every open connection (within a second)."""
        if self._server is None:
            return
        self._server.close()
        for task in self._connections:
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=_SHUTDOWN_S)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), _SHUTDOWN_S)

    # ------------------------------------------------------------ the routes
    def respond(self, method: str, target: str, headers: Mapping[str, str], peer: str) -> Reply:
        """The reply to one request (`headers` keyed by lower-case name):
        404 for an unknown path, 405 with `Allow` for a method it does not take."""
        path = target.partition("?")[0]
        methods = self._routes.get(path)
        if methods is None:
            return _text(404, "not found")
        route = methods.get("GET" if method == "HEAD" else method)
        if route is None or (method == "HEAD" and "GET" not in methods):
            allowed = ", ".join(sorted({*methods, *(["HEAD"] if "GET" in methods else [])}))
            return _text(405, f"{method} is not allowed on {path}", ("Allow", allowed))
        return route(headers, peer)

    def _metrics(self, headers: Mapping[str, str], peer: str) -> Reply:
        return Reply(200, self._target.render_metrics(), _METRICS)

    def _healthz(self, headers: Mapping[str, str], peer: str) -> Reply:
        ok, why = self._target.is_healthy()
        return _text(200 if ok else 503, why)

    def _readyz(self, headers: Mapping[str, str], peer: str) -> Reply:
        ok, why = self._target.is_ready()
        return _text(200 if ok else 503, why)

    def _status(self, headers: Mapping[str, str], peer: str) -> Reply:
        return Reply(200, json.dumps(self._target.status()).encode(), _JSON)

    def _drain(self, headers: Mapping[str, str], peer: str) -> Reply:
        scheme, _, given = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            log.warning("refused POST /drain from %s: no drain key", peer)
            return _text(
                401,
                f"POST /drain needs the key in {DRAIN_KEY_FILE} of the worker's state "
                "directory (`corral worker prestop` sends it)",
                ("WWW-Authenticate", 'Bearer realm="corral-worker"'),
            )
        if self._drain_key is None or not hmac.compare_digest(
            given.strip().encode(), self._drain_key.encode()
        ):
            log.warning("refused POST /drain from %s: wrong drain key", peer)
            return _text(403, "wrong drain key")
        self._target.request_drain("POST /drain")
        return Reply(202, json.dumps(self._target.status()).encode(), _JSON)

    # ------------------------------------------------------- the connections
    async def serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """Answer the requests of one connection until either side closes it,
        it idles past IDLE_TIMEOUT_S, or a request breaks HTTP/1.1."""
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        who = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "local socket"
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            while await self._one_request(conn, reader, writer, who):
                conn.start_next_cycle()
        except (asyncio.CancelledError, ConnectionError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one_request(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        who: str,
    ) -> bool:
        """Read one request and answer it; False when the connection should close."""
        request: h11.Request | None = None
        size = 0
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    idle = request is None and not conn.trailing_data[0]
                    data = await asyncio.wait_for(
                        reader.read(65536), IDLE_TIMEOUT_S if idle else REQUEST_TIMEOUT_S
                    )
                    conn.receive_data(data)  # b"": the peer closed its side
                elif isinstance(event, h11.Request):
                    request = event
                    length = _content_length(event)
                    if length is not None and length > MAX_BODY_BYTES:
                        return await self._send(conn, writer, _too_large(), close=True)
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > MAX_BODY_BYTES:
                        return await self._send(conn, writer, _too_large(), close=True)
                elif isinstance(event, h11.EndOfMessage):
                    break
                else:  # ConnectionClosed, or PAUSED after a reply we closed on
                    return False
        except h11.RemoteProtocolError as exc:
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                reply = _text(exc.error_status_hint, f"bad request: {exc}")
                await self._send(conn, writer, reply, close=True)
            return False
        assert request is not None
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in request.headers
        }
        method = request.method.decode("ascii")
        try:
            reply = self.respond(method, request.target.decode("latin-1"), headers, who)
        except Exception:
            log.exception("the endpoint's %s %r failed", method, request.target)
            reply = _text(500, "internal error (the worker's log has the traceback)")
        return await self._send(conn, writer, reply, head=method == "HEAD")

    @staticmethod
    async def _send(
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        reply: Reply,
        *,
        head: bool = False,
        close: bool = False,
    ) -> bool:
        headers = [
            ("Date", http_date(time.time())),
            ("Content-Type", reply.content_type),
            ("Content-Length", str(len(reply.body))),
            *reply.headers,
            *([("Connection", "close")] if close else []),
        ]
        reason = HTTPStatus(reply.status).phrase.encode()
        out = conn.send(h11.Response(status_code=reply.status, headers=headers, reason=reason))
        if reply.body and not head:
            out += conn.send(h11.Data(data=reply.body))
        out += conn.send(h11.EndOfMessage())
        writer.write(out)
        await writer.drain()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE


_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(epoch: float) -> str:
    """RFC 9110's IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), which every
    response of a server with a clock carries; English names whatever the
    locale."""
    t = time.gmtime(epoch)
    return (
        f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year} "
        f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT"
    )


def _content_length(request: h11.Request) -> int | None:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is a number
    return None


def _too_large() -> Reply:
    return _text(413, f"request body over {MAX_BODY_BYTES} bytes: nothing here takes a body")

"""Real local servers for the executor tests, all on 127.0.0.1 in the test's
own event loop: an HTTP/HTTPS/WebSocket app (aiohttp), a forward proxy that
also tunnels CONNECT, a DNS responder (dnspython) and a gRPC health server.
Each records what it saw, so a test can tell which way a request went.
`ok_server` is a plain HTTP server in a thread of its own (the worker
process tests)."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import ssl
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import dns.message
import dns.rdatatype
import dns.rrset
from aiohttp import web


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def ok_server(host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """An HTTP server on `host` (a free port) answering every GET with 200,
    serving in a daemon thread until its `shutdown()`."""
    server = http.server.ThreadingHTTPServer((host, 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def http_app() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"service": {"name": "api", "replicas": [1, 2]}})

    async def hop(request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        raise web.HTTPFound(f"/hop/{n - 1}" if n > 1 else "/ok")

    async def to(request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])

    async def auth(request: web.Request) -> web.Response:
        return web.json_response({"authorization": request.headers.get("Authorization")})

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for i in range(int(request.query.get("parts", "5"))):
            await response.write(b"chunk-%d;" % i)
        await response.write_eof()
        return response

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="status")

    async def echo_ws(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(f"echo: {message.data}")
        return ws

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/hop/{n}", hop)
    app.router.add_get("/to", to)
    app.router.add_get("/auth", auth)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/ws", echo_ws)
    return app


@contextlib.asynccontextmanager
async def serve(
    app: web.Application, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=tls)
    await site.start()
    try:
        yield int(runner.addresses[0][1])
    finally:
        await runner.cleanup()


@dataclass
class Proxy:
    """A forward proxy: `GET http://...` is relayed, `CONNECT host:port`
    tunnelled. `seen` holds each request line."""

    seen: list[str] = field(default_factory=list)
    port: int = 0

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            self.seen.append(line)
            method, target, _ = line.split(" ", 2)
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up_reader, up_writer = await asyncio.open_connection(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                rest = target.split("://", 1)[1]
                hostport, _, path = rest.partition("/")
                host, _, port = hostport.partition(":")
                up_reader, up_writer = await asyncio.open_connection(host, int(port or 80))
                up_writer.write(head.replace(target.encode(), b"/" + path.encode(), 1))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Proxy]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(server.sockets[0].getsockname()[1])
        async with server:
            yield self


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            writer.close()


@dataclass
class DnsResponder(asyncio.DatagramProtocol):
    """Answers from `zone` ({(name, type): [values]}); NXDOMAIN for a name it
    does not know. `asked` holds each (name, type) it was asked."""

    zone: dict[tuple[str, str], list[str]]
    asked: list[tuple[str, str]] = field(default_factory=list)
    transport: Any = None
    port: int = 0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = question.name.to_text().rstrip(".")
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, rdtype))
        response = dns.message.make_response(query)
        values = self.zone.get((name, rdtype))
        if values:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 300, "IN", rdtype, values)
            )
        elif not any(n == name for n, _ in self.zone):
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DnsResponder]:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.port = int(transport.get_extra_info("sockname")[1])
        try:
            yield self
        finally:
            transport.close()


@contextlib.asynccontextmanager
async def grpc_health(statuses: dict[str, str]) -> AsyncIterator[int]:
    """A gRPC server with the standard health service; `statuses` maps a
    service name to SERVING or NOT_SERVING."""
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    for name, status in statuses.items():
        await servicer.set(name, health_pb2.HealthCheckResponse.ServingStatus.Value(status))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)

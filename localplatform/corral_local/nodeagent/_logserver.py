"""The kubelet's log endpoint, so that `kubectl logs` works.

Started by `_agent` on the node address (10.244.0.1, or 127.0.0.1 without the
bridge) at a free port that every Node reports in `daemonEndpoints`; the API
server proxies `kubectl logs` to `GET /containerLogs/<ns>/<pod>/<container>`.
HTTPS with a self-signed certificate (the API server does not verify kubelet
certificates unless told to); clients must present a certificate signed by
the cluster CA, as the API server's kubelet client certificate is. Only logs
are served: exec, attach and port-forward answer 501.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

from corral_local.nodeagent._http import send

log = logging.getLogger("corral.nodeagent")

# (namespace, pod, container, previous) -> log file, or None
LogLookup = Callable[[str, str, str, bool], Path | None]


def self_signed(directory: Path, hosts: list[str]) -> tuple[Path, Path] | None:
    """A serving certificate for `hosts`, made with `cryptography` (None without it)."""
    try:
        from corral_local.localcluster import _pki
    except ImportError:
        return None
    pair = _pki.KeyPair(directory / "kubelet.crt", directory / "kubelet.key")
    _pki.self_signed(pair, "corral-nodeagent", hosts)
    return pair.cert, pair.key


def tail_lines(data: bytes, n: int) -> bytes:
    if n < 0:
        return data
    if n == 0:
        return b""
    lines = data.splitlines(keepends=True)
    return b"".join(lines[-n:])


class _Handler(BaseHTTPRequestHandler):
    server: _LogServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("logserver: " + format, *args)

    def _plain(self, status: int, text: str) -> None:
        send(self, status, "text/plain; charset=utf-8", text.encode())

    def do_GET(self) -> None:
        url = urlparse(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        if parts == ["healthz"]:
            self._plain(200, "ok")
            return
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._plain(501, f"{url.path}: the corral node agent serves only /containerLogs")
            return
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        _, namespace, pod, container = parts
        previous = query.get("previous") == "true"
        path = self.server.lookup(namespace, pod, container, previous)
        if path is None or not path.exists():
            what = "previous terminated container" if previous else "container"
            self._plain(404, f'{what} "{container}" in pod "{pod}" not found')
            return
        data = path.read_bytes()
        data = tail_lines(data, int(query.get("tailLines", "-1")))
        limit = int(query.get("limitBytes", "0") or 0)
        if limit > 0:
            data = data[:limit]
        if query.get("follow") != "true":
            self._plain_bytes(data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        offset = path.stat().st_size
        try:
            self._chunk(data)
            while not self.server.stopping.is_set():
                size = path.stat().st_size
                if size > offset:
                    with open(path, "rb") as fh:
                        fh.seek(offset)
                        chunk = fh.read(size - offset)
                    offset = size
                    self._chunk(chunk)
                elif self.server.lookup(namespace, pod, container, False) != path:
                    break  # the container restarted or the pod is gone
                time.sleep(0.2)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _plain_bytes(self, data: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()


class _LogServer(ThreadingHTTPServer):
    daemon_threads = True
    lookup: LogLookup
    stopping: threading.Event
    context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        # TLS handshake in the connection's own thread, not in the accept loop
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            log.debug("logserver: handshake with %s failed: %s", client_address, exc)
            return
        super().finish_request(tls, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("logserver: request from %s failed", client_address, exc_info=True)


def serve_logs(
    host: str, lookup: LogLookup, cert_dir: Path, client_ca: str | None
) -> tuple[_LogServer, int] | None:
    """Start the endpoint; return it and its port, or None without TLS material."""
    pair = self_signed(cert_dir, [host, "127.0.0.1", "localhost"])
    if pair is None:
        log.warning("kubectl logs is not served: the `cryptography` package is missing")
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(pair[0]), str(pair[1]))
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    server = _LogServer((host, 0), _Handler)
    server.context = context
    server.lookup = lookup
    server.stopping = threading.Event()
    threading.Thread(target=server.serve_forever, name="logserver", daemon=True).start()
    return server, int(server.server_address[1])

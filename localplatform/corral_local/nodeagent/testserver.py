"""A tiny HTTP server for node-agent tests: image `corral-test/httpserver`.

Run by the node agent inside a pod (see images.yaml). GET / answers 200 with
the pod's name, GET /healthz answers 200. PORT chooses the port (8080).
"""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"{os.environ.get('HOSTNAME', socket.gethostname())}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stdout.write(f"{self.address_string()} {format % args}\n")
        sys.stdout.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves its own name (getfqdn): not needed, and
        # slow where DNS is unreachable.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "pod", self.server_address[1]


def main() -> None:
    port = int(os.environ.get("PORT", "8080"))
    server = _Server(("0.0.0.0", port), _Handler)

    def stop(signum: int, frame: FrameType | None) -> None:
        sys.stdout.write("SIGTERM: stopping\n")
        sys.stdout.flush()
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    print(f"listening on :{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

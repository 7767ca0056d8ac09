"""The worker's HTTP endpoint: its routes (readiness follows enrollment and
drain, POST /drain drains, /metrics counts by queue and outcome) and its
HTTP/1.1 over a socket pair (keep-alive, HEAD, 405, malformed and oversized
requests), without network sockets."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import stat
from pathlib import Path
from typing import Any

import pytest

from corral.worker.endpoint import DRAIN_KEY_FILE, read_drain_key, write_drain_key
from corral.worker.endpoint_http import MAX_BODY_BYTES, Endpoint, http_date
from corral.worker.metrics import Histogram, WorkerMetrics, parse_text


class FakeWorker:
    def __init__(self) -> None:
        self.state = "active"
        self.metrics = WorkerMetrics(lambda: {"in_flight": 2.0})

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "in_flight": 2}

    def is_ready(self) -> tuple[bool, str]:
        return self.state == "active", self.state

    def is_healthy(self) -> tuple[bool, str]:
        return True, "ok"

    def request_drain(self, reason: str) -> None:
        self.state = "draining"

    def render_metrics(self) -> bytes:
        return self.metrics.render()


KEY = "k3y"


def _call(
    endpoint: Endpoint, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Route a request through the endpoint, without a socket."""
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    reply = endpoint.respond(method, path, lowered, "test")
    return reply.status, reply.body


def _endpoint(worker: FakeWorker) -> Endpoint:
    return Endpoint(worker, "127.0.0.1", 0, drain_key=KEY)


def test_readyz_is_200_while_active_and_503_once_draining() -> None:
    worker = FakeWorker()
    endpoint = _endpoint(worker)
    assert (_call(endpoint, "GET", "/readyz"))[0] == 200
    code, body = _call(endpoint, "POST", "/drain", {"Authorization": f"Bearer {KEY}"})
    assert code == 202 and json.loads(body)["state"] == "draining"
    assert (_call(endpoint, "GET", "/readyz"))[0] == 503
    assert (_call(endpoint, "GET", "/healthz"))[0] == 200  # drained workers stay alive


def test_drain_refuses_get_so_a_probe_cannot_drain_a_worker_by_accident() -> None:
    worker = FakeWorker()
    assert (_call(_endpoint(worker), "GET", "/drain"))[0] == 405
    assert worker.state == "active"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Basic azN5Og=="}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": f"Bearer {KEY}x"}, 403),
    ],
)
def test_drain_without_the_workers_own_key_is_refused(headers: dict[str, str], code: int) -> None:
    worker = FakeWorker()
    assert (_call(_endpoint(worker), "POST", "/drain", headers))[0] == code
    assert worker.state == "active"


def test_a_worker_without_a_drain_key_refuses_every_drain() -> None:
    worker = FakeWorker()
    endpoint = Endpoint(worker, "127.0.0.1", 0, drain_key=None)
    assert (_call(endpoint, "POST", "/drain", {"Authorization": "Bearer "}))[0] == 401
    assert (_call(endpoint, "POST", "/drain", {"Authorization": "Bearer x"}))[0] == 403
    assert worker.state == "active"


def test_metrics_healthz_and_status_stay_open_without_a_key() -> None:
    endpoint = _endpoint(FakeWorker())
    for path in ("/metrics", "/healthz", "/livez", "/readyz", "/status"):
        assert (_call(endpoint, "GET", path))[0] == 200, path
    assert (_call(endpoint, "GET", "/nope"))[0] == 404


def test_the_drain_key_file_is_random_private_and_replaced_on_each_start(tmp_path: Path) -> None:
    first = write_drain_key(tmp_path / "state")
    assert read_drain_key(tmp_path / "state") == first
    assert stat.S_IMODE((tmp_path / "state" / DRAIN_KEY_FILE).stat().st_mode) == 0o600
    second = write_drain_key(tmp_path / "state")
    assert second != first and len(second) >= 40
    assert read_drain_key(tmp_path / "state") == second


def test_metrics_count_jobs_by_queue_and_outcome_and_export_gauges() -> None:
    worker = FakeWorker()
    worker.metrics.count("emails", "completed", 3)
    worker.metrics.count("emails", "timeout")
    worker.metrics.observe_duration("emails", 0.002)
    samples = parse_text(worker.render_metrics().decode())
    assert samples['corral_worker_jobs_total{outcome="completed",queue="emails"}'] == 3
    assert samples['corral_worker_jobs_total{outcome="timeout",queue="emails"}'] == 1
    assert samples['corral_worker_job_duration_seconds_count{queue="emails"}'] == 1
    assert samples["corral_worker_in_flight"] == 2


def test_histogram_buckets_are_cumulative_with_an_inf_bucket() -> None:
    h = Histogram((1.0, 5.0))
    for value in (0.5, 1.0, 3.0, 9.0):
        h.observe(value)
    assert h.buckets() == [("1.0", 2.0), ("5.0", 3.0), ("+Inf", 4.0)]
    assert h.total == 13.5


# ------------------------------------------------- HTTP/1.1 over a socket pair
def _exchange(endpoint: Endpoint, raw: bytes) -> bytes:
    """Send `raw` on one end of a socket pair served by the endpoint, then
    half-close it; everything the endpoint sent back until it closed."""

    async def run() -> bytes:
        ours, theirs = socket.socketpair()
        server_side = asyncio.ensure_future(_serve(endpoint, theirs))
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.write(raw)
        await writer.drain()
        writer.write_eof()
        received = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        await asyncio.wait_for(server_side, 10)
        return received

    return asyncio.run(run())


async def _serve(endpoint: Endpoint, sock: socket.socket) -> None:
    reader, writer = await asyncio.open_connection(sock=sock)
    await endpoint.serve_connection(reader, writer)


def _responses(received: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """(status, headers, body) of each response in `received`, framed by
    Content-Length (every response the endpoint sends carries one)."""
    out = []
    rest = received
    while rest:
        head, _, rest = rest.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        body = b"" if status_line.startswith("HEAD") else rest[:length]
        out.append((int(status_line.split()[1]), headers, body))
        rest = rest[len(body) :]
    return out


def test_one_connection_answers_requests_in_turn_keep_alive() -> None:
    worker = FakeWorker()
    raw = (
        b"GET /readyz HTTP/1.1\r\nHost: w\r\n\r\n"
        b"GET /status?verbose=1 HTTP/1.1\r\nHost: w\r\n\r\n"
        + f"POST /drain HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Length: 0\r\n\r\n".encode()
        + b"GET /readyz HTTP/1.1\r\nHost: w\r\n\r\n"
    )
    replies = _responses(_exchange(_endpoint(worker), raw))
    assert [status for status, _, _ in replies] == [200, 200, 202, 503]
    assert replies[0][2] == b"active\n"
    assert json.loads(replies[1][2]) == {"state": "active", "in_flight": 2}
    assert replies[1][1]["content-type"].startswith("application/json")
    assert worker.state == "draining"
    assert all(email.utils.parsedate_to_datetime(h["date"]) for _, h, _ in replies)


def test_dates_are_rfc_9110_imf_fixdates() -> None:
    assert http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT"  # RFC 9110's own example
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_head_sends_the_headers_of_get_and_no_body() -> None:
    received = _exchange(
        _endpoint(FakeWorker()),
        b"HEAD /healthz HTTP/1.1\r\nHost: w\r\n\r\nGET /healthz HTTP/1.1\r\nHost: w\r\n\r\n",
    )
    head, _, rest = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 3" in head.lower()
    # The next bytes are the GET's response, not a body for the HEAD.
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"\r\n\r\nok\n")


def test_a_wrong_method_is_405_with_allow_and_an_unknown_path_404() -> None:
    replies = _responses(
        _exchange(
            _endpoint(FakeWorker()),
            b"GET /drain HTTP/1.1\r\nHost: w\r\n\r\n"
            b"POST /readyz HTTP/1.1\r\nHost: w\r\nContent-Length: 0\r\n\r\n"
            b"GET /nope HTTP/1.1\r\nHost: w\r\n\r\n",
        )
    )
    assert [(status, headers.get("allow")) for status, headers, _ in replies] == [
        (405, "POST"),
        (405, "GET, HEAD"),
        (404, None),
    ]


def test_a_malformed_request_is_answered_400_and_the_connection_closed() -> None:
    worker = FakeWorker()
    raw = b"this is not http\r\n\r\nGET /readyz HTTP/1.1\r\nHost: w\r\n\r\n"
    replies = _responses(_exchange(_endpoint(worker), raw))
    assert len(replies) == 1 and replies[0][0] == 400
    assert replies[0][1]["connection"] == "close"


def test_a_body_over_the_cap_is_refused_413_without_draining() -> None:
    worker = FakeWorker()
    body = b"x" * (MAX_BODY_BYTES + 1)
    raw = (
        f"POST /drain HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    replies = _responses(_exchange(_endpoint(worker), raw))
    assert [status for status, _, _ in replies] == [413]
    assert worker.state == "active"


def test_a_chunked_body_over_the_cap_is_refused_too() -> None:
    worker = FakeWorker()
    chunk = b"x" * 4096
    chunks = b"".join(b"1000\r\n" + chunk + b"\r\n" for _ in range(MAX_BODY_BYTES // 4096 + 1))
    raw = (
        f"POST /drain HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer {KEY}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
        + chunks
        + b"0\r\n\r\n"
    )
    replies = _responses(_exchange(_endpoint(worker), raw))
    assert [status for status, _, _ in replies] == [413]
    assert worker.state == "active"


def test_a_route_that_raises_is_500_and_the_connection_serves_on() -> None:
    class Broken(FakeWorker):
        def render_metrics(self) -> bytes:
            raise RuntimeError("boom")

    replies = _responses(
        _exchange(
            _endpoint(Broken()),
            b"GET /metrics HTTP/1.1\r\nHost: w\r\n\r\nGET /healthz HTTP/1.1\r\nHost: w\r\n\r\n",
        )
    )
    assert [status for status, _, _ in replies] == [500, 200]


def test_connection_close_from_the_client_is_honoured() -> None:
    replies = _responses(
        _exchange(
            _endpoint(FakeWorker()),
            b"GET /healthz HTTP/1.1\r\nHost: w\r\nConnection: close\r\n\r\n"
            b"GET /healthz HTTP/1.1\r\nHost: w\r\n\r\n",
        )
    )
    assert [status for status, _, _ in replies] == [200]


def test_stop_closes_the_listening_socket_and_every_open_connection(tmp_path: Path) -> None:
    async def run() -> tuple[bytes, bool]:
        listening = socket.socket(socket.AF_UNIX)
        listening.bind(str(tmp_path / "endpoint.sock"))
        listening.listen()
        endpoint = Endpoint(FakeWorker(), "", 0, drain_key=KEY, sock=listening)
        await endpoint.start()
        # A kept-alive connection, served as the server serves one it accepted.
        ours, theirs = socket.socketpair()
        server_side = asyncio.ensure_future(_serve(endpoint, theirs))
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: w\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.readuntil(b"ok\n"), 5)
        await asyncio.wait_for(endpoint.stop(), 5)
        rest = await asyncio.wait_for(reader.read(), 5)  # EOF, nothing more
        await asyncio.wait_for(server_side, 5)
        writer.close()
        return first + rest, listening.fileno() == -1

    received, listener_closed = asyncio.run(run())
    assert received.startswith(b"HTTP/1.1 200 ") and received.endswith(b"\r\n\r\nok\n")
    assert listener_closed


def test_an_http_1_0_probe_gets_its_answer_and_the_connection_closes() -> None:
    """Load balancers' checks (HAProxy's `option httpchk`) still speak HTTP/1.0,
    with no Host header."""
    received = _exchange(
        _endpoint(FakeWorker()),
        b"GET /readyz HTTP/1.0\r\n\r\nGET /readyz HTTP/1.0\r\n\r\n",
    )
    replies = _responses(received)
    assert [(status, body) for status, _, body in replies] == [(200, b"active\n")]
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")

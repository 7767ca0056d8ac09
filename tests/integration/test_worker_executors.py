"""The built-in executors against real local servers (tests/integration/
_local_servers.py): HTTP redirects and their cap, chunked bodies and the size
cap, TLS with a test CA, a forward/CONNECT proxy, a DNS server asked for each
record type, a WebSocket echo, a gRPC health server, and ping as far as this
kernel allows. The executor guard is in the path of each: names resolve
through its lookup (`svc.test` exists nowhere else, so reaching it proves
the connection went to the address the guard judged), and a redirect, a
proxy, a resolver or an answer in a refused range is refused. Last, a real
worker process: a bad payload is dead-lettered naming its field while the
worker runs on, and a job's result is forwarded to its result queue."""

from __future__ import annotations

import asyncio
import http.server
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from corral import queue
from corral.egressrules import Policy, parse_rules
from corral.worker.egress import Guard
from corral.worker.executors import builtin_registry
from corral.worker.executors.ping import unprivileged_ping_allowed
from corral.worker.handlers import HandlerError, Job
from tests.integration import _local_servers as srv
from tests.integration._workers import WorkerProcess, mint_token, wait_until

NAMES = {"svc.test": "127.0.0.1", "meta.test": "169.254.169.254"}


def _guard(deny: str = "") -> Guard:
    async def lookup(host: str, port: int | None, **kw: Any) -> list[Any]:
        if host in NAMES:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (NAMES[host], port))]
        return await asyncio.get_running_loop().getaddrinfo(host, port, **kw)

    policy = Policy(deny=(*Policy().deny, *parse_rules([deny] if deny else [])))
    return Guard(policy, lookup=lookup)


async def _run(kind: str, payload: dict[str, Any], guard: Guard | None = None) -> Any:
    handler = builtin_registry(guard or _guard()).get(kind)
    assert handler is not None
    return await handler.fn(handler.prepare(Job(id=1, kind=kind, queue="q", payload=payload)))


async def _fails(kind: str, payload: dict[str, Any], guard: Guard | None = None) -> str:
    with pytest.raises(HandlerError) as caught:
        await _run(kind, payload, guard)
    return f"{type(caught.value).__name__}: {caught.value}"


def _in_loop(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


# -- http ------------------------------------------------------------------------


def test_http_follows_redirects_through_the_guard_up_to_the_cap() -> None:
    async def test() -> None:
        async with srv.serve(srv.http_app()) as port:
            base = f"http://svc.test:{port}"
            ok = await _run(
                "http", {"url": f"{base}/hop/3", "expect_json": {"service.name": "api"}}
            )
            assert ok["status"] == 200 and ok["url"] == f"{base}/ok"
            assert ok["redirects"] == [f"{base}/hop/3", f"{base}/hop/2", f"{base}/hop/1"]
            capped = await _fails("http", {"url": f"{base}/hop/3", "max_redirects": 2})
            assert "more than 2 redirects (max_redirects)" in capped
            unfollowed = await _run(
                "http", {"url": f"{base}/hop/3", "follow_redirects": False, "expected_status": 302}
            )
            assert unfollowed["redirects"] == []
            # Credentials follow a redirect on the same origin only.
            bearer = {"Authorization": "Bearer secret"}
            for target, seen in [
                ("/auth", "Bearer secret"),
                (f"http://127.0.0.1:{port}/auth", None),
            ]:
                await _run(
                    "http",
                    {
                        "url": f"{base}/to?url={target}",
                        "headers": bearer,
                        "expect_json": {"authorization": seen},
                    },
                )
            # A redirect to a refused target is refused before it is dialled:
            # by address literal, and by a name resolving into the range.
            for target in ("http://169.254.169.254/latest", "http://meta.test/latest"):
                refused = await _fails("http", {"url": f"{base}/to?url={target}"})
                assert refused.startswith("Refused") and "169.254.0.0/16" in refused

    _in_loop(test)


def test_http_reads_chunked_bodies_and_checks_status_keyword_json_and_size() -> None:
    async def test() -> None:
        async with srv.serve(srv.http_app()) as port:
            base = f"http://127.0.0.1:{port}"
            body = await _run("http", {"url": f"{base}/chunked", "expect_body": "chunk-4;"})
            assert body["bytes"] == len(b"chunk-0;") * 5
            too_big = await _fails(
                "http", {"url": f"{base}/chunked?parts=500", "max_body_bytes": 1000}
            )
            assert "over max_body_bytes (1000 bytes)" in too_big
            assert "expect_body" in await _fails(
                "http", {"url": f"{base}/chunked", "expect_body": "chunk-9"}
            )
            listed = await _run(
                "http", {"url": f"{base}/status/503", "expected_status": [200, 503]}
            )
            assert listed["status"] == 503
            assert "status 503, expected [200]" in await _fails(
                "http", {"url": f"{base}/status/503"}
            )
            wrong = await _fails(
                "http", {"url": f"{base}/ok", "expect_json": {"service.replicas.1": 3}}
            )
            assert "field 'service.replicas.1' is 2, expected 3 (expect_json)" in wrong

    _in_loop(test)


@pytest.fixture
def tls_ca(tmp_path: Path) -> Iterator[tuple[trustme.CA, ssl.SSLContext, Path]]:
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("svc.test", "127.0.0.1").configure_cert(server)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    yield ca, server, bundle


def test_https_reports_the_certificate_and_refuses_one_it_cannot_verify(
    tls_ca: tuple[trustme.CA, ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, server, bundle = tls_ca

    async def test() -> None:
        async with srv.serve(srv.http_app(), tls=server) as port:
            url = f"https://svc.test:{port}/ok"
            untrusted = await _fails("http", {"url": url})
            assert "CERTIFICATE_VERIFY_FAILED" in untrusted
            unverified = await _run("http", {"url": url, "verify_tls": False})
            assert unverified["tls"]["verified"] is False
            assert "trustme" in unverified["tls"]["issuer"]
            monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
            trusted = await _run("http", {"url": url})
            tls = trusted["tls"]
            assert tls["verified"] is True and "trustme" in tls["issuer"]
            assert tls["days_left"] > 300 and trusted["cert_expires_in_days"] == tls["days_left"]

    _in_loop(test)


def test_http_goes_through_a_proxy_from_the_payload_or_the_environment(
    tls_ca: tuple[trustme.CA, ssl.SSLContext, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, server, bundle = tls_ca
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)

    async def test() -> None:
        async with (
            srv.serve(srv.http_app()) as port,
            srv.serve(srv.http_app(), tls=server) as tls_port,
            srv.Proxy().running() as proxy,
        ):
            via = f"http://127.0.0.1:{proxy.port}"
            plain = await _run("http", {"url": f"http://127.0.0.1:{port}/ok", "proxy": via})
            assert plain["proxy"] == via and plain["status"] == 200
            secure = await _run("http", {"url": f"https://127.0.0.1:{tls_port}/ok", "proxy": via})
            assert secure["tls"]["verified"] is True
            assert proxy.seen == [
                f"GET http://127.0.0.1:{port}/ok HTTP/1.1",
                f"CONNECT 127.0.0.1:{tls_port} HTTP/1.1",
            ]
            monkeypatch.setenv("http_proxy", via)
            from_env = await _run("http", {"url": f"http://127.0.0.1:{port}/hop/1"})
            # (the redirect's second request rides the same proxied connection)
            assert from_env["proxy"] == via and from_env["redirects"]
            assert proxy.seen[2:] == [f"GET http://127.0.0.1:{port}/hop/1 HTTP/1.1"]
            monkeypatch.setenv("no_proxy", "127.0.0.1")
            direct = await _run("http", {"url": f"http://127.0.0.1:{port}/ok"})
            assert direct["proxy"] is None and len(proxy.seen) == 3
            # The proxy is a target like any other.
            refused = await _fails(
                "http", {"url": f"http://127.0.0.1:{port}/ok", "proxy": "http://meta.test:3128"}
            )
            assert refused.startswith("Refused") and "169.254.0.0/16" in refused

    _in_loop(test)


# -- dns -------------------------------------------------------------------------

ZONE = {
    ("svc.test", "A"): ["127.0.0.1", "127.0.0.2"],
    ("svc.test", "AAAA"): ["::1"],
    ("svc.test", "MX"): ["10 mx1.svc.test.", "20 mx2.svc.test."],
    ("svc.test", "TXT"): ['"v=spf1 -all"'],
    ("svc.test", "NS"): ["ns1.svc.test."],
    ("www.svc.test", "CNAME"): ["svc.test."],
    ("meta.svc.test", "A"): ["169.254.169.254"],
}


def test_dns_asks_the_chosen_resolver_for_each_record_type_and_checks_expected_values() -> None:
    async def test() -> None:
        async with srv.DnsResponder(ZONE).running() as dns:
            at = f"127.0.0.1:{dns.port}"
            for rdtype, name, values in [
                ("A", "svc.test", ["127.0.0.1", "127.0.0.2"]),
                ("AAAA", "svc.test", ["::1"]),
                ("MX", "svc.test", ["10 mx1.svc.test", "20 mx2.svc.test"]),
                ("TXT", "svc.test", ["v=spf1 -all"]),
                ("NS", "svc.test", ["ns1.svc.test"]),
                ("CNAME", "www.svc.test", ["svc.test"]),
            ]:
                got = await _run(
                    "dns", {"name": name, "type": rdtype, "resolver": at, "expected": values}
                )
                assert (got["type"], got["values"], got["resolver"], got["ttl"]) == (
                    rdtype,
                    values,
                    at,
                    300,
                )
            assert ("svc.test", "MX") in dns.asked
            missing = await _fails(
                "dns", {"name": "svc.test", "resolver": at, "expected": ["127.0.0.9"]}
            )
            assert "['127.0.0.9'] not among the answers" in missing and "(expected)" in missing
            assert "NXDOMAIN" in await _fails("dns", {"name": "nope.test", "resolver": at})
            assert "no MX record" in await _fails(
                "dns", {"name": "www.svc.test", "type": "MX", "resolver": at}
            )
            # An answer in a refused range, and a resolver a deny rule names.
            answer = await _fails("dns", {"name": "meta.svc.test", "resolver": at})
            assert answer.startswith("Refused") and "169.254.0.0/16" in answer
            denied = await _fails(
                "dns", {"name": "svc.test", "resolver": at}, _guard(f"127.0.0.1:{dns.port}")
            )
            assert denied.startswith("Refused") and f"deny rule 127.0.0.1:{dns.port}" in denied
            # Without type or resolver: the system's resolution, through the guard.
            system = await _run("dns", {"name": "localhost", "family": "ipv4"})
            assert system["addresses"] == ["127.0.0.1"]

    _in_loop(test)


# -- websocket, grpc, ping ---------------------------------------------------------


def test_websocket_connects_sends_and_expects_the_echo() -> None:
    async def test() -> None:
        async with srv.serve(srv.http_app()) as port:
            url = f"ws://svc.test:{port}/ws"
            echoed = await _run(
                "websocket", {"url": url, "send": "ping 1", "expect": "echo: ping 1"}
            )
            assert echoed["reply"] == "echo: ping 1" and echoed["tls"] is None
            assert "does not contain 'pong' (expect)" in await _fails(
                "websocket", {"url": url, "send": "ping", "expect": "pong"}
            )
            assert (await _run("websocket", {"url": url}))["reply"] is None
            refused = await _fails("websocket", {"url": "ws://meta.test/ws"})
            assert refused.startswith("Refused")

    _in_loop(test)


def test_grpc_asks_the_health_service_and_fails_unless_serving() -> None:
    async def test() -> None:
        async with srv.grpc_health({"": "SERVING", "db": "NOT_SERVING"}) as port:
            ok = await _run("grpc", {"target": f"svc.test:{port}"})
            assert (ok["status"], ok["address"]) == ("SERVING", "127.0.0.1")
            assert "db: NOT_SERVING, expected SERVING" in await _fails(
                "grpc", {"target": f"127.0.0.1:{port}", "service": "db"}
            )
            assert "NOT_FOUND" in await _fails(
                "grpc", {"target": f"127.0.0.1:{port}", "service": "x"}
            )
            assert (await _fails("grpc", {"target": "meta.test:50051"})).startswith("Refused")

    _in_loop(test)


def test_ping_answers_when_the_kernel_allows_unprivileged_icmp_else_names_the_sysctl() -> None:
    allowed, shown = unprivileged_ping_allowed()

    async def test() -> None:
        if allowed:
            got = await _run("ping", {"host": "svc.test", "count": 2, "interval": 0.05})
            assert (got["address"], got["sent"], got["received"]) == ("127.0.0.1", 2, 2)
        else:
            error = await _fails("ping", {"host": "127.0.0.1", "count": 1})
            assert f"net.ipv4.ping_group_range = {shown!r}" in error
            assert "securityContext.sysctls" in error
        assert (await _fails("ping", {"host": "meta.test"})).startswith("Refused")

    _in_loop(test)


# -- a real worker -------------------------------------------------------------------


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"5\r\nhello\r\n0\r\n\r\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.slow
def test_a_worker_dead_letters_a_bad_payload_naming_the_field_and_forwards_a_result(
    database_url: str, tmp_path: Path
) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    worker = WorkerProcess(
        database_url, tmp_path / "w", name="w", token=mint_token(database_url), queues="checks"
    )
    try:
        worker.wait_ready()
        with queue.Queue.connect(database_url) as q:
            bad = q.enqueue("ping", {"host": "x", "count": 0}, queue="checks", max_attempts=3)
            good = q.enqueue(
                "http", {"url": url, "expect_body": "hello"}, queue="checks", result_queue="out"
            )

            def forwarded() -> list[Any] | None:
                jobs = q.list_jobs(queue="out")
                return jobs if jobs and q.get_job(bad).state == "dead" else None

            [result] = wait_until(forwarded, 60, "the bad job to die and the result to arrive")
            dead = q.get_job(bad)
            assert (dead.attempt, dead.last_error_reason) == (1, "payload")
            assert "count: Input should be greater than or equal to 1" in (dead.last_error or "")
            assert (result.kind, result.payload["job_id"]) == ("result", good)
            assert result.payload["result"]["status"] == 200
            assert result.payload["result"]["bytes"] == 5
        assert worker.status()["state"] == "active"
    finally:
        worker.stop()
        server.shutdown()

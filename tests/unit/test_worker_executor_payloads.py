"""The built-in executors' payloads, without a network: a bad payload fails
with a message naming the field (so the job goes to dead as `payload` and
the worker runs on), and every network executor's timeout is capped. The
executors themselves run against real local servers in
tests/integration/test_worker_executors.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.worker.executors import MAX_TIMEOUT_S, builtin_registry
from corral.worker.executors.payloads import DnsCheck
from corral.worker.handlers import Job, PayloadError


def _prepare(kind: str, payload: Any) -> Job[Any]:
    handler = builtin_registry().get(kind)
    assert handler is not None
    return handler.prepare(Job(id=1, kind=kind, queue="q", payload=payload))


@pytest.mark.parametrize(
    ("kind", "payload", "says"),
    [
        ("http", {"url": "ftp://x/"}, "url: String should match pattern"),
        ("http", {"url": "http://x/", "max_redirects": 50}, "max_redirects: Input should be less"),
        ("http", {"url": "http://x/", "expected_status": [200, 99]}, "expected_status"),
        ("http", {"url": "http://x/", "proxy": "socks5://p:1080"}, "proxy: String should match"),
        ("http", {"url": "http://x/", "max_body_bytes": 10**9}, "max_body_bytes"),
        ("http", {"url": "http://x/", "expect_status": 200}, "expect_status: Extra inputs"),
        ("http", {"url": "http://x/", "expect_json": [1]}, "expect_json: Input should be"),
        ("dns", {"name": "example.com", "type": "SRV"}, "type: Input should be 'A'"),
        ("dns", {"name": "example.com", "resolver": "dns.google"}, "resolver: Value error"),
        ("dns", {"name": "example.com", "resolver": "10.0.0.1:99999"}, "resolver port 99999"),
        ("dns", {"name": "a b"}, "name: String should match"),
        ("dns", {"name": "example.com", "expected": "1.2.3.4"}, "expected: Input should be"),
        ("ping", {"host": "x", "count": 0}, "count: Input should be greater"),
        ("ping", {"host": "x", "max_loss": 2}, "max_loss"),
        ("ping", {}, "host: Field required"),
        ("websocket", {"url": "http://x/"}, "url: String should match pattern"),
        ("websocket", {"url": "ws://x/", "sned": "hi"}, "sned: Extra inputs"),
        ("grpc", {"target": "no-port"}, "target: String should match pattern"),
        ("grpc", {"target": "x:50051", "tls": "maybe"}, "tls: Input should be a valid boolean"),
        ("tcp", {"host": "x", "port": 0}, "port: Input should be greater"),
        ("sleep", {"seconds": -1}, "seconds"),
    ],
)
def test_a_bad_payload_is_a_payload_error_naming_the_field(
    kind: str, payload: dict[str, Any], says: str
) -> None:
    with pytest.raises(PayloadError, match="payload does not match") as caught:
        _prepare(kind, payload)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("http", {"url": "http://x/"}),
        ("tcp", {"host": "x", "port": 1}),
        ("dns", {"name": "x"}),
        ("ping", {"host": "x"}),
        ("websocket", {"url": "ws://x/"}),
        ("grpc", {"target": "x:1"}),
    ],
)
def test_every_network_executor_caps_its_timeout(kind: str, payload: dict[str, Any]) -> None:
    _prepare(kind, {**payload, "timeout": MAX_TIMEOUT_S})
    with pytest.raises(PayloadError, match="timeout: Input should be less than or equal to 60"):
        _prepare(kind, {**payload, "timeout": MAX_TIMEOUT_S + 1})


@pytest.mark.parametrize(
    ("text", "server"),
    [("10.0.0.53", "10.0.0.53"), ("10.0.0.53:5353", "10.0.0.53"), ("[fd00::53]:53", "fd00::53")],
)
def test_a_resolver_is_an_address_with_an_optional_port(text: str, server: str) -> None:
    from corral.worker.executors.payloads import resolver_address

    assert DnsCheck.model_validate({"name": "x", "resolver": text}).resolver == text
    assert resolver_address(text)[0] == server
    assert DnsCheck.model_validate({"name": "x", "type": "mx"}).type == "MX"


def test_a_grpc_job_without_the_extra_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from corral.worker.executors.grpchealth import GRPC_EXTRA_MISSING
    from corral.worker.handlers import HandlerError

    monkeypatch.setitem(sys.modules, "grpc", None)  # import grpc raises ImportError
    handler = builtin_registry().get("grpc")
    assert handler is not None
    job = _prepare("grpc", {"target": "127.0.0.1:1"})
    with pytest.raises(HandlerError) as caught:
        asyncio.run(handler.fn(job))
    assert str(caught.value) == GRPC_EXTRA_MISSING
    assert "pip install corral[grpc]" in GRPC_EXTRA_MISSING

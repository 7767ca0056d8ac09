"""The executor guard's rules, without sockets: what is refused by default,
what a deny rule adds and an allow rule opens, the worker's own endpoint,
names judged on what they resolve to, and payloads with CR/LF or uncapped
timeouts refused before anything is sent."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest
from pydantic import ValidationError

from corral.egressrules import DEFAULT_DENY, Policy, parse_rule, parse_rules
from corral.worker.config import ConfigError, WorkerSettings
from corral.worker.egress import Guard, Refused
from corral.worker.executors import MAX_TIMEOUT_S, DnsCheck, HttpCheck, TcpCheck


def ip(text: str) -> Any:
    return ipaddress.ip_address(text)


def refusal(policy: Policy, target: str, port: int | None = 80, name: str | None = None) -> str:
    return policy.refusal(name, ip(target), port) or ""


# -- the grammar ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "network", "host", "ports"),
    [
        ("10.0.0.0/8", "10.0.0.0/8", None, None),
        ("10.96.0.1:443", "10.96.0.1/32", None, (443, 443)),
        ("fd00::/8", "fd00::/8", None, None),
        ("[fd00::/8]:443", "fd00::/8", None, (443, 443)),
        ("*.Internal", None, "*.internal", None),
        ("api.example.com:8000-8999", None, "api.example.com", (8000, 8999)),
        (":6443", None, None, (6443, 6443)),
    ],
)
def test_a_rule_is_an_address_or_cidr_a_host_pattern_and_or_ports(
    text: str, network: str | None, host: str | None, ports: tuple[int, int] | None
) -> None:
    rule = parse_rule(text)
    assert (str(rule.network) if rule.network else None, rule.host, rule.ports) == (
        network,
        host,
        ports,
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("10.0.0.1/8", "has host bits set"),
        ("api:http", "is not a port"),
        (":70000", "1 to 65535"),
        (":", "is not a port"),
        ("db\n.internal", "neither an address"),
        ("a b/c", "neither an address"),
        ("[10.0.0.1]:80", "IPv6 addresses only"),
    ],
)
def test_a_malformed_rule_is_refused_with_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_rule(text)


def test_rules_come_comma_or_space_separated_from_flags_and_the_environment() -> None:
    assert [r.text for r in parse_rules(["10.0.0.0/8, *.internal", ":6443"])] == [
        "10.0.0.0/8",
        "*.internal",
        ":6443",
    ]


# -- what is refused by default --------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack metadata
        "169.254.1.1",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "100.100.100.200",  # Alibaba
        "168.63.129.16",  # Azure WireServer
        "::ffff:169.254.169.254",  # IPv4-mapped
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    ],
)
def test_link_local_and_cloud_metadata_are_refused_by_default(target: str) -> None:
    assert "built-in rule" in refusal(Policy(), target)


@pytest.mark.parametrize("target", ["10.0.0.1", "172.16.5.5", "192.168.1.1", "127.0.0.1", "::1"])
def test_private_and_loopback_addresses_stay_reachable_by_default(target: str) -> None:
    assert refusal(Policy(), target) == ""


def test_the_refusal_names_the_rule_and_why_it_exists() -> None:
    assert refusal(Policy(), "169.254.169.254") == (
        "refused by the executor guard's built-in rule 169.254.0.0/16 "
        "(link-local; cloud metadata at 169.254.169.254)"
    )


# -- deny and allow lists ----------------------------------------------------------


def test_a_deny_rule_refuses_its_cidr_and_names_itself() -> None:
    policy = Policy.build(deny=parse_rules("10.96.0.0/12"))
    assert refusal(policy, "10.96.0.1", 443) == (
        "refused by the executor guard's deny rule 10.96.0.0/12"
    )
    assert refusal(policy, "10.1.0.1", 443) == ""


def test_a_deny_rule_with_a_port_refuses_that_port_only() -> None:
    policy = Policy.build(deny=parse_rules("10.96.0.1:443, :6443"))
    assert refusal(policy, "10.96.0.1", 443)
    assert not refusal(policy, "10.96.0.1", 80)
    assert refusal(policy, "192.168.1.1", 6443)  # any address on that port


def test_a_host_pattern_matches_names_never_address_literals() -> None:
    policy = Policy.build(deny=parse_rules("*.internal, 10.*"))
    assert policy.refusal("db.internal", ip("10.0.0.5"), 5432)
    assert not policy.refusal("db.example.com", ip("10.0.0.5"), 5432)
    assert not policy.refusal(None, ip("10.0.0.5"), 5432)  # "10.*" is a name pattern


def test_an_allow_rule_opens_a_default_refusal_for_exactly_its_target() -> None:
    policy = Policy.build(allow=parse_rules("169.254.169.254:80"))
    assert refusal(policy, "169.254.169.254", 80) == ""
    assert refusal(policy, "::ffff:169.254.169.254", 80) == ""  # the same address, mapped
    assert refusal(policy, "169.254.169.254", 8080)
    assert refusal(policy, "169.254.170.2", 80)


def test_an_allow_rule_opens_a_hole_in_a_wider_deny_rule() -> None:
    policy = Policy.build(deny=parse_rules("0.0.0.0/0"), allow=parse_rules("10.1.0.0/16"))
    assert refusal(policy, "10.1.2.3") == ""
    assert refusal(policy, "10.2.0.1")


def test_with_no_rules_at_all_nothing_is_refused() -> None:
    assert Policy(deny=(), allow=()).refusal(None, ip("169.254.169.254"), 80) is None
    assert Policy().deny == DEFAULT_DENY


# -- the guard: own endpoint, names resolved -----------------------------------------


def _guard(
    policy: Policy | None = None,
    endpoint: tuple[str, int] | None = ("0.0.0.0", 8080),
    local: tuple[str, ...] = ("10.244.0.7",),
    answers: dict[str, list[str]] | None = None,
) -> Guard:
    async def lookup(host: str, port: int | None, **_: Any) -> list[Any]:
        addresses = (answers or {})[host]
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
            for a in addresses
        ]

    return Guard(
        policy or Policy(),
        endpoint=endpoint,
        is_local=lambda a: a.is_loopback or str(a) in local,
        lookup=lookup,
    )


@pytest.mark.parametrize(
    "target", ["127.0.0.1", "127.0.0.2", "0.0.0.0", "::1", "::", "10.244.0.7", "::ffff:127.0.0.1"]
)
def test_the_workers_own_endpoint_is_refused_on_any_of_its_addresses(target: str) -> None:
    with pytest.raises(Refused, match="own endpoint"):
        _guard().check(None, ip(target), 8080)


def test_other_ports_of_the_host_and_the_port_elsewhere_stay_reachable() -> None:
    guard = _guard()
    guard.check(None, ip("127.0.0.1"), 8081)
    guard.check(None, ip("10.244.0.8"), 8080)  # another pod's endpoint (its drain key guards it)


def test_no_allow_rule_opens_the_workers_own_endpoint() -> None:
    guard = _guard(Policy.build(allow=parse_rules("127.0.0.0/8, :8080, localhost")))
    with pytest.raises(Refused, match="no allow rule opens it"):
        guard.check("localhost", ip("127.0.0.1"), 8080)


def test_an_endpoint_on_one_address_is_refused_there_and_on_loopback_only() -> None:
    guard = _guard(endpoint=("10.244.0.7", 9000))
    with pytest.raises(Refused):
        guard.check(None, ip("10.244.0.7"), 9000)
    guard.check(None, ip("10.244.0.9"), 9000)


def test_a_name_is_judged_on_every_address_it_resolves_to() -> None:
    guard = _guard(answers={"rebind.example": ["10.0.0.1", "169.254.169.254"]})
    with pytest.raises(Refused, match=r"rebind\.example \(169\.254\.169\.254\):80: refused"):
        asyncio.run(guard.resolve("rebind.example", 80))


def test_resolve_returns_the_checked_addresses_the_executor_connects_to() -> None:
    guard = _guard(answers={"svc.example": ["10.0.0.1", "10.0.0.1", "fd00::1"]})
    found = asyncio.run(guard.resolve("svc.example", 443))
    assert [str(address) for _, address in found] == ["10.0.0.1", "fd00::1"]


def test_an_address_literal_is_judged_without_any_lookup() -> None:
    guard = _guard(answers={})  # any lookup would raise KeyError
    with pytest.raises(Refused, match="built-in rule"):
        asyncio.run(guard.resolve("[fe80::1]", 80))
    assert [str(a) for _, a in asyncio.run(guard.resolve("10.0.0.1", 80))] == ["10.0.0.1"]


def test_a_denied_host_pattern_is_refused_before_the_name_is_looked_up() -> None:
    guard = _guard(Policy.build(deny=parse_rules("*.internal")), answers={})
    with pytest.raises(Refused, match=r"\*\.internal"):
        asyncio.run(guard.resolve("Metadata.Google.Internal.", 80))


def test_a_dns_check_without_a_port_is_judged_by_address_rules_only() -> None:
    guard = _guard(
        Policy.build(deny=parse_rules(":53")),
        answers={"metadata.example": ["169.254.169.254"], "ok.example": ["10.0.0.1"]},
    )
    with pytest.raises(Refused, match="built-in rule"):
        asyncio.run(guard.resolve("metadata.example", None))
    assert asyncio.run(guard.resolve("ok.example", None))


def test_a_refusal_is_a_payload_error_so_the_job_is_not_retried() -> None:
    from corral.worker.handlers import PayloadError

    assert issubclass(Refused, PayloadError)


# -- payloads: CR/LF and caps -----------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        ({"method": "GET / HTTP/1.1\r\nX-Evil: 1"}, "not an HTTP method"),
        ({"method": "GET\n"}, "not an HTTP method"),
        ({"headers": {"X-A": "ok\r\nX-Injected: 1"}}, "CR, LF"),
        ({"headers": {"X-A\r\nB": "v"}}, "not a token"),
        ({"url": "http://example.com/a b"}, "url"),
        ({"url": "http://example.com/\r\nX: y"}, "url"),
        ({"timeout": MAX_TIMEOUT_S + 1}, "timeout"),
    ],
)
def test_an_http_payload_with_cr_lf_or_an_uncapped_timeout_is_refused(
    payload: dict[str, Any], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        HttpCheck.model_validate({"url": "http://example.com/", **payload})


def test_tcp_and_dns_timeouts_are_capped_too() -> None:
    with pytest.raises(ValidationError, match="timeout"):
        TcpCheck.model_validate({"host": "db", "port": 5432, "timeout": 3600})
    with pytest.raises(ValidationError, match="timeout"):
        DnsCheck.model_validate({"name": "db", "timeout": 3600})


def test_a_plain_method_is_upper_cased_and_headers_with_tabs_pass() -> None:
    check = HttpCheck.model_validate(
        {"url": "https://example.com/", "method": "head", "headers": {"X-A": "a\tb"}}
    )
    assert check.method == "HEAD"


# -- settings ------------------------------------------------------------------------------


def test_a_bad_rule_in_the_worker_settings_names_the_flag_and_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"--egress-deny / CORRAL_EGRESS_DENY: .*'10\.0\.0\.1/8'"):
        WorkerSettings.from_raw(
            database_url="postgresql://db/corral", queues=["q"], egress_deny=["10.0.0.1/8"]
        )


def test_the_settings_policy_holds_the_defaults_then_the_workers_rules() -> None:
    settings = WorkerSettings.from_raw(
        database_url="postgresql://db/corral",
        queues=["q"],
        egress_deny=["10.96.0.1:443"],
        egress_allow=["169.254.169.254:80"],
    )
    policy = settings.egress_policy()
    assert [r.text for r in policy.deny] == [r.text for r in DEFAULT_DENY] + ["10.96.0.1:443"]
    assert [r.text for r in policy.allow] == ["169.254.169.254:80"]


@pytest.mark.parametrize("kind", ["http", "tcp", "websocket"])
def test_the_check_connects_to_the_address_it_judged_never_to_the_name_again(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No DNS-rebinding gap: the name is looked up once, by the guard, and
    every connection (aiohttp's included) dials the addresses it judged."""
    from asyncio import selector_events

    from corral.worker import executors
    from corral.worker.handlers import HandlerError, Job

    dialled: list[str] = []

    async def sock_connect(self: Any, sock: Any, address: Any) -> None:
        dialled.append(address[0])
        raise ConnectionRefusedError(111, "refused")

    monkeypatch.setattr(selector_events.BaseSelectorEventLoop, "sock_connect", sock_connect)
    guard = _guard(answers={"svc.example": ["10.0.0.1", "fd00::1"]})
    handler = executors.builtin_registry(guard).get(kind)
    assert handler is not None
    payload = {
        "http": {"url": "http://svc.example:8000/"},
        "tcp": {"host": "svc.example", "port": 8000},
        "websocket": {"url": "ws://svc.example:8000/"},
    }
    job = handler.prepare(Job(id=1, kind=kind, queue="q", payload=payload[kind]))
    with pytest.raises(HandlerError):
        asyncio.run(handler.fn(job))
    assert sorted(dialled) == ["10.0.0.1", "fd00::1"]

"""What every executor that opens a connection shares: the executor guard
wired into aiohttp, proxy choice, and the timing and certificate summaries in
their results.

aiohttp resolves every host it connects to (the target, each redirect's
target, a proxy) through the connector's resolver; `GuardResolver` is that
resolver, so each address is judged by `corral.worker.egress.Guard` and the
connection goes to the address judged, never to a name looked up again.
aiohttp skips the resolver for address literals, so `judge_url` checks those
before each request. Behind a proxy the worker never resolves the target (the
proxy does): the target is judged by its name (host-pattern rules) or, for a
literal, its address; the proxy itself is judged like any target. Used by
`http` and `websocket`, whose handlers `client_executor` builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from corral.worker.egress import Guard
from corral.worker.handlers import HandlerError, Job

__all__ = [
    "GuardResolver",
    "cert_summary",
    "client_errors",
    "client_executor",
    "env_proxy",
    "guarded_session",
    "judge_route",
    "judge_url",
    "tls_context",
]


class GuardResolver(AbstractResolver):
    """aiohttp's resolver: the guard's lookup, every address judged."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self.guard.resolve(host, port, family)
        return [
            {
                "hostname": host,
                "host": str(address),
                "port": port,
                "family": fam,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for fam, address in found
        ]

    async def close(self) -> None:
        return None


@contextlib.asynccontextmanager
async def client_errors(where: str, timeout: float) -> AsyncIterator[None]:
    """Run an aiohttp exchange within `timeout` seconds; its timeout and
    client errors become a `HandlerError` naming `where` (the guard's
    `Refused` passes through: it is a payload error)."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        raise HandlerError(f"{where}: no answer within {timeout}s (timeout)") from None
    except aiohttp.ClientError as exc:
        raise HandlerError(f"{where}: {exc}") from None


def client_executor(
    guard: Guard,
    where: Callable[[Any], str],
    exchange: Callable[[Guard, Any], Awaitable[dict[str, Any]]],
) -> Callable[[Job[Any]], Awaitable[dict[str, Any]]]:
    """A handler bound to `guard` that runs `exchange(guard, payload)` within
    the payload's `timeout`, its client errors named by `where(payload)`
    (`client_errors`)."""

    async def check(job: Job[Any]) -> dict[str, Any]:
        async with client_errors(where(job.payload), job.payload.timeout):
            return await exchange(guard, job.payload)

    return check


def guarded_session(guard: Guard, **options: Any) -> aiohttp.ClientSession:
    """A session whose every connection obeys `guard`: no DNS cache, no
    environment (the proxy is chosen by `env_proxy`, explicitly)."""
    connector = aiohttp.TCPConnector(resolver=GuardResolver(guard), use_dns_cache=False)
    return aiohttp.ClientSession(
        connector=connector,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=None),
        headers={"User-Agent": "corral-worker"},
        **options,
    )


async def judge_url(guard: Guard, url: URL) -> None:
    """Check a URL's host before a request (raises `Refused`). An address
    literal is judged here, as aiohttp will not ask the resolver; a name is
    judged by its host patterns here, and by its addresses in the resolver
    when the worker connects to it itself (not through a proxy)."""
    host = url.raw_host or ""
    port = url.port
    if _is_literal(host):
        await guard.resolve(host, port)
    else:
        guard.check(host.lower().rstrip("."), None, port)


async def judge_route(guard: Guard, url: URL, proxy: str | None) -> str | None:
    """Judge a request's URL and the proxy it will take (the payload's, else
    the environment's), and return that proxy (None: direct)."""
    proxy = proxy or env_proxy(url)
    await judge_url(guard, url)
    if proxy is not None:
        await judge_url(guard, URL(proxy))
    return proxy


def env_proxy(url: URL) -> str | None:
    """The proxy the standard environment variables (HTTP_PROXY, HTTPS_PROXY,
    NO_PROXY, lower-case too) choose for `url`; None: go direct."""
    host = url.raw_host or ""
    if urllib.request.proxy_bypass_environment(host):  # type: ignore[attr-defined]
        return None
    scheme = {"ws": "http", "wss": "https"}.get(url.scheme, url.scheme)
    return urllib.request.getproxies_environment().get(scheme)


def tls_context(verify: bool) -> ssl.SSLContext:
    """The system's trust store (SSL_CERT_FILE / SSL_CERT_DIR honoured), or
    no verification at all when the payload says `verify_tls: false`."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def cert_summary(ssl_object: Any) -> dict[str, Any] | None:
    """Subject, issuer, expiry and days left of the peer's certificate (None:
    not TLS). An unverified connection gives no parsed certificate, so the
    raw one is parsed with `cryptography` when it is installed."""
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if cert and "notAfter" in cert:
        expires = ssl.cert_time_to_seconds(str(cert["notAfter"]))
        return {
            "subject": _name(cert.get("subject", ())),
            "issuer": _name(cert.get("issuer", ())),
            "not_after": datetime.fromtimestamp(expires, UTC).isoformat(),
            "days_left": round((expires - time.time()) / 86400, 1),
            "verified": True,
        }
    der = ssl_object.getpeercert(binary_form=True)
    try:
        from cryptography import x509
    except ImportError:
        return {"verified": False}
    parsed = x509.load_der_x509_certificate(der)
    expires_at = parsed.not_valid_after_utc
    return {
        "subject": parsed.subject.rfc4514_string(),
        "issuer": parsed.issuer.rfc4514_string(),
        "not_after": expires_at.isoformat(),
        "days_left": round((expires_at - datetime.now(UTC)).total_seconds() / 86400, 1),
        "verified": False,
    }


def _name(rdns: Any) -> str:
    # getpeercert's ((("commonName", "x"),), ...) as "CN=x,O=y", RFC 4514's order.
    short = {"commonName": "CN", "organizationName": "O", "countryName": "C"}
    parts = [f"{short.get(k, k)}={v}" for rdn in rdns for k, v in rdn]
    return ",".join(reversed(parts))


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True

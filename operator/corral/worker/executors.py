"""Built-in job kinds every worker knows: `noop`, `sleep`, `http`, `tcp` and `dns`.

`corral.worker.runtime` starts each worker's registry from `builtin_registry()`
and adds user handlers on top. The checks return a small JSON-able dict (the
job's result): status, latency and, for HTTPS, days until the certificate
expires. A check that does not meet its expectation raises `HandlerError`, so
the job fails through the normal retry path.

The HTTP check speaks just enough HTTP/1.1 over asyncio streams to read the
status line (and nothing past it, `MAX_STATUS_LINE_BYTES` at most): a client
library would follow redirects and resolve names on its own, past the guard.
Every network check goes through the worker's executor guard
(`corral.worker.egress`): the target is resolved and judged first, then
connected to by address; method, URL and headers with CR/LF are refused as
payload errors, and timeouts are capped at `MAX_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from corral.worker.config import WorkerSettings
from corral.worker.egress import Guard
from corral.worker.handlers import HandlerError, HandlerRegistry, Job, PayloadError
from corral.worker.handlers import registry as decorated

__all__ = [
    "MAX_STATUS_LINE_BYTES",
    "MAX_TIMEOUT_S",
    "DnsCheck",
    "HttpCheck",
    "Sleep",
    "TcpCheck",
    "build_registry",
    "builtin_registry",
]


MAX_TIMEOUT_S = 60.0  # the most any check may wait (seconds); the job timeout also applies
MAX_STATUS_LINE_BYTES = 8192  # the http check reads the status line and nothing more

# RFC 9110 token: what a method and a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but tab (CR, LF, NUL...)


class HttpCheck(BaseModel):
    """Payload of an `http` job."""

    url: str = Field(
        pattern=r"^https?://[^\x00-\x20\x7f]+$",
        description="http:// or https:// URL, without spaces or control characters",
    )
    method: str = Field(default="GET", description="an HTTP method token: no spaces, CR or LF")
    expected_status: int | list[int] = 200
    timeout: float = Field(default=10.0, gt=0, le=MAX_TIMEOUT_S, description="seconds")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    verify_tls: bool = True

    @field_validator("method")
    @classmethod
    def _method(cls, value: str) -> str:
        if not _TOKEN.fullmatch(value):
            raise ValueError(
                f"{value[:40]!r} is not an HTTP method (letters such as GET or POST; "
                "CR, LF and spaces are refused)"
            )
        return value.upper()

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, text in value.items():
            if not _TOKEN.fullmatch(name):
                raise ValueError(f"header name {name[:40]!r} is not a token (no CR, LF, spaces, :)")
            if _CONTROL.search(text):
                raise ValueError(
                    f"header {name!r}: CR, LF and other control characters are refused"
                )
        return value


class TcpCheck(BaseModel):
    """Payload of a `tcp` job: can we connect?"""

    host: str = Field(min_length=1, max_length=253, pattern=r"^[^\x00-\x20\x7f]+$")
    port: int = Field(ge=1, le=65535)
    timeout: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, description="seconds")


class DnsCheck(BaseModel):
    """Payload of a `dns` job: does the name resolve?"""

    name: str = Field(min_length=1, max_length=253, pattern=r"^[^\x00-\x20\x7f]+$")
    family: str = Field(default="any", pattern="^(any|ipv4|ipv6)$")
    timeout: float = Field(default=5.0, gt=0, le=MAX_TIMEOUT_S, description="seconds")


class Sleep(BaseModel):
    """Payload of a `sleep` job: hold a slot for a while (a stand-in for real
    work in demos, drain tests and the scaling benchmark)."""

    seconds: float = Field(default=1.0, ge=0, le=86_400, description="how long to sleep")


async def noop(job: Job[Any]) -> None:
    """Does nothing; used for benchmarks and smoke tests."""
    return None


async def sleep(job: Job[Sleep]) -> dict[str, Any]:
    """Sleeps `seconds` and says how long it slept (and on which attempt)."""
    started = time.monotonic()
    await asyncio.sleep(job.payload.seconds)
    return {"slept_s": round(time.monotonic() - started, 3), "attempt": job.attempt}


class _Checks:
    """The network checks, bound to the worker's executor guard: every target
    is resolved and judged once (`Guard.resolve`), then connected to by
    address."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    async def http(self, job: Job[HttpCheck]) -> dict[str, Any]:
        check = job.payload
        parts = urlsplit(check.url)
        tls = parts.scheme == "https"
        host = parts.hostname or ""
        try:
            port = parts.port or (443 if tls else 80)
        except ValueError as exc:
            raise PayloadError(f"url: {exc}") from None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        context: ssl.SSLContext | None = None
        if tls:
            context = ssl.create_default_context()
            if not check.verify_tls:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
        started = time.perf_counter()
        try:
            async with asyncio.timeout(check.timeout):
                addresses = await self.guard.resolve(host, port)
                reader, writer = await _connect(
                    addresses,
                    port,
                    ssl=context,
                    server_hostname=host if tls else None,
                    limit=MAX_STATUS_LINE_BYTES,
                )
                try:
                    cert_days = _cert_days_left(writer) if tls else None
                    body = (check.body or "").encode()
                    headers = {
                        "Host": parts.netloc.rsplit("@", 1)[-1],
                        "User-Agent": "corral-worker",
                        "Connection": "close",
                        "Content-Length": str(len(body)),
                        **check.headers,
                    }
                    head = f"{check.method} {path} HTTP/1.1\r\n" + "".join(
                        f"{k}: {v}\r\n" for k, v in headers.items()
                    )
                    writer.write(head.encode("latin-1") + b"\r\n" + body)
                    await writer.drain()
                    # Only the status line is read, and at most this many bytes of it.
                    status_line = await reader.readline()
                finally:
                    writer.close()
        except TimeoutError:
            raise HandlerError(
                f"{check.method} {check.url}: no response within {check.timeout}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise HandlerError(f"{check.method} {check.url}: {exc}") from None
        except ValueError:  # the StreamReader's limit
            raise HandlerError(
                f"{check.method} {check.url}: status line longer than {MAX_STATUS_LINE_BYTES} bytes"
            ) from None
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        try:
            status = int(status_line.split()[1])
        except (IndexError, ValueError):
            raise HandlerError(f"{check.url}: not an HTTP response: {status_line[:80]!r}") from None
        expected = (
            check.expected_status
            if isinstance(check.expected_status, list)
            else [check.expected_status]
        )
        result = {"status": status, "latency_ms": latency_ms, "cert_expires_in_days": cert_days}
        if status not in expected:
            raise HandlerError(f"{check.method} {check.url}: status {status}, expected {expected}")
        return result

    async def tcp(self, job: Job[TcpCheck]) -> dict[str, Any]:
        check = job.payload
        started = time.perf_counter()
        try:
            async with asyncio.timeout(check.timeout):
                addresses = await self.guard.resolve(check.host, check.port)
                _, writer = await _connect(addresses, check.port)
                writer.close()
        except TimeoutError:
            raise HandlerError(
                f"tcp {check.host}:{check.port}: no connection within {check.timeout}s"
            ) from None
        except OSError as exc:
            raise HandlerError(f"tcp {check.host}:{check.port}: {exc.strerror or exc}") from None
        return {"latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def dns(self, job: Job[DnsCheck]) -> dict[str, Any]:
        check = job.payload
        family = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[
            check.family
        ]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(check.timeout):
                # Judged like a connection's target, minus ports: a name that
                # resolves into a refused range is refused here too.
                found = await self.guard.resolve(check.name, None, family)
        except TimeoutError:
            raise HandlerError(f"dns {check.name}: no answer within {check.timeout}s") from None
        except OSError as exc:
            raise HandlerError(f"dns {check.name}: {exc.strerror or exc}") from None
        addresses = sorted({str(address) for _, address in found})
        return {
            "addresses": addresses,
            "latency_ms": round((time.perf_counter() - started) * 1000, 2),
        }


async def _connect(
    addresses: list[tuple[int, Any]],
    port: int,
    *,
    ssl: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
    limit: int = 2**16,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect to the first of the checked addresses that answers. Each is an
    address literal: nothing is resolved again."""
    last: OSError = OSError(f"no address to connect to on port {port}")
    for _, address in addresses:
        try:
            return await asyncio.open_connection(
                str(address), port, ssl=ssl, server_hostname=server_hostname, limit=limit
            )
        except OSError as exc:
            last = exc
    raise last


def _cert_days_left(writer: asyncio.StreamWriter) -> float | None:
    obj = writer.get_extra_info("ssl_object")
    if obj is None:
        return None
    cert = obj.getpeercert()
    if not cert or "notAfter" not in cert:
        # Unverified connections give no parsed certificate; fall back to the raw one.
        der = obj.getpeercert(binary_form=True)
        return _der_days_left(der) if der else None
    expires = ssl.cert_time_to_seconds(str(cert["notAfter"]))
    return round((expires - time.time()) / 86400, 1)


def _der_days_left(der: bytes) -> float | None:
    try:
        from cryptography import x509
    except ImportError:
        return None
    cert = x509.load_der_x509_certificate(der)
    return round((cert.not_valid_after_utc - datetime.now(UTC)).total_seconds() / 86400, 1)


def builtin_registry(guard: Guard | None = None) -> HandlerRegistry:
    """A fresh registry holding the built-in kinds; the network checks obey
    `guard` (the default policy, without knowing the worker's endpoint, when
    none is given)."""
    checks = _Checks(guard if guard is not None else Guard())
    reg = HandlerRegistry()
    reg.register("noop", noop)
    # No timeout of its own: a sleep longer than the worker's job timeout
    # fails like any overrunning job would.
    reg.register("sleep", sleep, payload=Sleep)
    reg.register("http", checks.http, payload=HttpCheck)
    reg.register("tcp", checks.tcp, payload=TcpCheck)
    reg.register("dns", checks.dns, payload=DnsCheck)
    return reg


def build_registry(settings: WorkerSettings, guard: Guard | None = None) -> HandlerRegistry:
    """Built-ins (their network checks obeying `guard`), then entry points,
    then `--handlers` modules (whose `@corral.handler` decorators fill the
    module-level registry)."""
    reg = builtin_registry(guard if guard is not None else Guard(settings.egress_policy()))
    reg.load_entry_points()
    for path in settings.handlers:
        reg.load_module(path)
    for h in decorated:
        if h.name not in reg or reg.get(h.name) is not h:
            reg.register(h.name, h.fn, payload=h.payload_model, timeout_s=h.timeout_s, replace=True)
    return reg

"""Built-in job kinds every worker knows: `noop`, `sleep`, `http`, `tcp` and `dns`.

`corral.worker.runtime` starts each worker's registry from `builtin_registry()`
and adds user handlers on top. The checks return a small JSON-able dict (the
job's result): status, latency and, for HTTPS, days until the certificate
expires. A check that does not meet its expectation raises `HandlerError`, so
the job fails through the normal retry path.

The HTTP check speaks just enough HTTP/1.1 over asyncio streams to read the
status line: no client library is a dependency of the worker.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from corral.worker.handlers import HandlerError, HandlerRegistry, Job

__all__ = ["DnsCheck", "HttpCheck", "Sleep", "TcpCheck", "builtin_registry"]


class HttpCheck(BaseModel):
    """Payload of an `http` job."""

    url: str = Field(pattern=r"^https?://", description="http:// or https:// URL")
    method: str = "GET"
    expected_status: int | list[int] = 200
    timeout: float = Field(default=10.0, gt=0, description="seconds")
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    verify_tls: bool = True


class TcpCheck(BaseModel):
    """Payload of a `tcp` job: can we connect?"""

    host: str
    port: int = Field(ge=1, le=65535)
    timeout: float = Field(default=5.0, gt=0)


class DnsCheck(BaseModel):
    """Payload of a `dns` job: does the name resolve?"""

    name: str
    family: str = Field(default="any", pattern="^(any|ipv4|ipv6)$")
    timeout: float = Field(default=5.0, gt=0)


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


async def http_check(job: Job[HttpCheck]) -> dict[str, Any]:
    check = job.payload
    parts = urlsplit(check.url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
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
            reader, writer = await asyncio.open_connection(
                host, port, ssl=context, server_hostname=host if tls else None
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
                head = f"{check.method.upper()} {path} HTTP/1.1\r\n" + "".join(
                    f"{k}: {v}\r\n" for k, v in headers.items()
                )
                writer.write(head.encode("latin-1") + b"\r\n" + body)
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
    except TimeoutError:
        raise HandlerError(
            f"{check.method} {check.url}: no response within {check.timeout}s"
        ) from None
    except (OSError, ssl.SSLError) as exc:
        raise HandlerError(f"{check.method} {check.url}: {exc}") from None
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


async def tcp_check(job: Job[TcpCheck]) -> dict[str, Any]:
    check = job.payload
    started = time.perf_counter()
    try:
        async with asyncio.timeout(check.timeout):
            _, writer = await asyncio.open_connection(check.host, check.port)
            writer.close()
    except TimeoutError:
        raise HandlerError(
            f"tcp {check.host}:{check.port}: no connection within {check.timeout}s"
        ) from None
    except OSError as exc:
        raise HandlerError(f"tcp {check.host}:{check.port}: {exc.strerror or exc}") from None
    return {"latency_ms": round((time.perf_counter() - started) * 1000, 2)}


async def dns_check(job: Job[DnsCheck]) -> dict[str, Any]:
    check = job.payload
    family = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[
        check.family
    ]
    started = time.perf_counter()
    try:
        async with asyncio.timeout(check.timeout):
            infos = await asyncio.get_running_loop().getaddrinfo(
                check.name, None, family=family, type=socket.SOCK_STREAM
            )
    except TimeoutError:
        raise HandlerError(f"dns {check.name}: no answer within {check.timeout}s") from None
    except OSError as exc:
        raise HandlerError(f"dns {check.name}: {exc.strerror or exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    return {"addresses": addresses, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def builtin_registry() -> HandlerRegistry:
    """A fresh registry holding the built-in kinds."""
    reg = HandlerRegistry()
    reg.register("noop", noop)
    # No timeout of its own: a sleep longer than the worker's job timeout
    # fails like any overrunning job would.
    reg.register("sleep", sleep, payload=Sleep)
    reg.register("http", http_check, payload=HttpCheck)
    reg.register("tcp", tcp_check, payload=TcpCheck)
    reg.register("dns", dns_check, payload=DnsCheck)
    return reg

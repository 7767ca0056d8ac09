"""The payloads of the built-in kinds with one (`sleep`, `http`, `tcp`,
`dns`, `ping`, `websocket`, `grpc`): pydantic models only, so the worker
validates a payload without importing the libraries that run the check
(aiohttp, dnspython, icmplib load when a job of that kind first runs; see
`corral.worker.executors`). This module, and pydantic with it, is itself
imported by the first job that has a payload to validate, never by a
worker's start. Unknown fields are refused, and every validation error names
its field.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.worker.executors.basic import MAX_TIMEOUT_S

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_REDIRECTS",
    "DnsCheck",
    "GrpcCheck",
    "HttpCheck",
    "PingCheck",
    "Sleep",
    "TcpCheck",
    "WebsocketCheck",
    "resolver_address",
]

MAX_BODY_BYTES = 16 * 1024 * 1024  # the most `max_body_bytes` may allow
MAX_REDIRECTS = 20  # the most `max_redirects` may allow

# RFC 9110 token: what a method and a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls but tab (CR, LF, NUL...)

# A host name or address: no spaces or control characters, 253 at most.
HostName = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^\x00-\x20\x7f]+$")]


def timeout_field(default: float, description: str = "seconds, in all") -> Any:
    """A check's `timeout`: more than 0, at most MAX_TIMEOUT_S seconds."""
    return Field(default=default, gt=0, le=MAX_TIMEOUT_S, description=description)


class Payload(BaseModel):
    """A built-in kind's payload: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class HttpCheck(Payload):
    """Payload of an `http` job."""

    url: str = Field(
        pattern=r"^https?://[^\x00-\x20\x7f]+$",
        description="http:// or https:// URL, without spaces or control characters",
    )
    method: str = Field(default="GET", description="an HTTP method token: no spaces, CR or LF")
    expected_status: int | list[int] = Field(default=200, description="a status or a list")
    timeout: float = timeout_field(10.0)
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    verify_tls: bool = True
    follow_redirects: bool = True
    max_redirects: int = Field(default=5, ge=0, le=MAX_REDIRECTS)
    proxy: str | None = Field(
        default=None,
        pattern=r"^http://[^\x00-\x20\x7f]+$",
        description="http://host:port of a forward proxy (CONNECT for https)",
    )
    expect_body: str | None = Field(default=None, description="text the body must contain")
    expect_json: dict[str, Any] | None = Field(
        default=None, description='{"dotted.path": value}: fields the JSON body must hold'
    )
    max_body_bytes: int = Field(default=1024 * 1024, ge=0, le=MAX_BODY_BYTES)

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

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, value: int | list[int]) -> int | list[int]:
        statuses = value if isinstance(value, list) else [value]
        if not statuses or any(not 100 <= s <= 599 for s in statuses):
            raise ValueError("statuses are 100 to 599, and at least one is expected")
        return value


_RESOLVER = re.compile(
    r"^(?:\[(?P<v6>[0-9a-fA-F:.]+)\]|(?P<host>[^\[\]:]+|[0-9a-fA-F:]+))(?::(?P<port>\d{1,5}))?$"
)


class DnsCheck(Payload):
    """Payload of a `dns` job."""

    name: HostName
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "NS"] | None = Field(
        default=None, description="record type; unset: the addresses a connection would use"
    )
    resolver: str | None = Field(
        default=None, description="the server to ask: an address, [IPv6]:PORT or IPv4:PORT"
    )
    expected: list[str] = Field(
        default_factory=list, description="values every one of which must be answered"
    )
    family: Literal["any", "ipv4", "ipv6"] = Field(
        default="any", description="without type or resolver: which addresses"
    )
    timeout: float = timeout_field(5.0, "seconds")

    @field_validator("type", mode="before")
    @classmethod
    def _type(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("resolver")
    @classmethod
    def _resolver(cls, value: str | None) -> str | None:
        if value is not None:
            resolver_address(value)
        return value


def resolver_address(text: str) -> tuple[str, int]:
    """A resolver's address and port (53 unless given)."""
    text = text.strip()
    try:
        return str(ipaddress.ip_address(text)), 53
    except ValueError:
        pass
    match = _RESOLVER.fullmatch(text)
    address = (match.group("v6") or match.group("host")) if match else ""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(
            f"{text[:60]!r} is not a resolver address: give an IP address, "
            "IPv4:PORT or [IPv6]:PORT (names are not resolved to find the resolver)"
        ) from None
    port = int(match.group("port") or 53) if match else 53
    if not 1 <= port <= 65535:
        raise ValueError(f"resolver port {port} is not 1 to 65535")
    return str(parsed), port


class PingCheck(Payload):
    """Payload of a `ping` job."""

    host: HostName
    count: int = Field(default=3, ge=1, le=20, description="echo requests to send")
    interval: float = Field(default=0.2, ge=0.01, le=5, description="seconds between them")
    max_loss: float = Field(default=0.0, ge=0, le=1, description="fraction lost before failing")
    timeout: float = timeout_field(5.0)


class WebsocketCheck(Payload):
    """Payload of a `websocket` job."""

    url: str = Field(
        pattern=r"^wss?://[^\x00-\x20\x7f]+$",
        description="ws:// or wss:// URL, without spaces or control characters",
    )
    send: str | None = Field(default=None, description="a text message to send once open")
    expect: str | None = Field(default=None, description="text the first reply must contain")
    verify_tls: bool = True
    proxy: str | None = Field(default=None, pattern=r"^http://[^\x00-\x20\x7f]+$")
    timeout: float = timeout_field(10.0)


class Sleep(Payload):
    """Payload of a `sleep` job: hold a slot for a while (a stand-in for real
    work in demos, drain tests and the scaling benchmark)."""

    seconds: float = Field(default=1.0, ge=0, le=86_400, description="how long to sleep")


class TcpCheck(Payload):
    """Payload of a `tcp` job: can we connect?"""

    host: HostName
    port: int = Field(ge=1, le=65535)
    timeout: float = timeout_field(5.0, "seconds")


class GrpcCheck(Payload):
    """Payload of a `grpc` job."""

    target: str = Field(
        pattern=r"^(\[[0-9a-fA-F:.]+\]|[^\s:\[\]/]+):\d{1,5}$",
        description="host:port or [IPv6]:port of the gRPC server",
    )
    service: str = Field(
        default="", max_length=200, description="the service to ask about; '' is the server"
    )
    tls: bool = Field(default=False, description="TLS, verified against the system's roots")
    timeout: float = timeout_field(5.0, "seconds")

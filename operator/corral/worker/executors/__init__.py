"""Built-in job kinds every worker knows: `noop`, `sleep`, `http`, `tcp`,
`dns`, `ping`, `websocket` and `grpc`, one module per family.

`corral.worker.runtime` and `corral.worker.cli` start each worker's registry
from `build_registry()` (built-ins, then user handlers on top). A check
returns a small JSON-able dict (the job's result); one that does not meet
its expectation raises `HandlerError`, so the job fails through the normal
retry path. Every payload is a pydantic model (unknown fields refused) whose
validation error names the field: the job goes to dead with reason `payload`
and the worker runs on. Every network executor goes through the worker's
executor guard (`corral.worker.egress`): targets are resolved and judged
first, then connected to by address, and each has a `timeout` capped at
`MAX_TIMEOUT_S`.

| module | kinds |
|---|---|
| `basic` | `noop`, `sleep`, and `MAX_TIMEOUT_S` |
| `guarded` | the guard inside aiohttp (resolver, literal and proxy checks), TLS summaries |
| `httpcheck` | `http` (aiohttp: redirects, proxies, body and JSON expectations, size cap) |
| `websocket` | `websocket` (aiohttp) |
| `tcp` | `tcp` |
| `dnscheck` | `dns` (the system resolver, or dnspython for record types and a chosen server) |
| `ping` | `ping` (icmplib, unprivileged ICMP) |
| `grpchealth` | `grpc` (grpc.health.v1; the `corral[grpc]` extra) |
"""

from __future__ import annotations

from corral.worker.config import WorkerSettings
from corral.worker.egress import Guard
from corral.worker.executors.basic import MAX_TIMEOUT_S, Sleep, noop, sleep
from corral.worker.executors.dnscheck import DnsCheck, dns_executor
from corral.worker.executors.grpchealth import GrpcCheck, grpc_executor
from corral.worker.executors.httpcheck import HttpCheck, http_executor
from corral.worker.executors.ping import PingCheck, ping_executor
from corral.worker.executors.tcp import TcpCheck, tcp_executor
from corral.worker.executors.websocket import WebsocketCheck, websocket_executor
from corral.worker.handlers import HandlerRegistry
from corral.worker.handlers import registry as decorated

__all__ = [
    "MAX_TIMEOUT_S",
    "DnsCheck",
    "GrpcCheck",
    "HttpCheck",
    "PingCheck",
    "Sleep",
    "TcpCheck",
    "WebsocketCheck",
    "build_registry",
    "builtin_registry",
]


def builtin_registry(guard: Guard | None = None) -> HandlerRegistry:
    """A fresh registry holding the built-in kinds; the network checks obey
    `guard` (the default policy, without knowing the worker's endpoint, when
    none is given)."""
    guard = guard if guard is not None else Guard()
    reg = HandlerRegistry()
    reg.register("noop", noop)
    # No timeout of its own: a sleep longer than the worker's job timeout
    # fails like any overrunning job would.
    reg.register("sleep", sleep, payload=Sleep)
    reg.register("http", http_executor(guard), payload=HttpCheck)
    reg.register("tcp", tcp_executor(guard), payload=TcpCheck)
    reg.register("dns", dns_executor(guard), payload=DnsCheck)
    reg.register("ping", ping_executor(guard), payload=PingCheck)
    reg.register("websocket", websocket_executor(guard), payload=WebsocketCheck)
    reg.register("grpc", grpc_executor(guard), payload=GrpcCheck)
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

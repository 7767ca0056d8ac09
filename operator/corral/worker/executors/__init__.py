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

Start-up is on the path of every scale-up, so building the registry imports
neither the payload models (nor pydantic under them: each kind names its
model, `LazyPayload`, which the first job with a payload imports) nor the
modules imported *on first run* below (nor aiohttp, dnspython or icmplib
under them: the first job of their kind imports them, `_on_first_run`).

| module | kinds | imported |
|---|---|---|
| `basic` | `noop`, `sleep`, `MAX_TIMEOUT_S` and `elapsed_ms` | at start-up |
| `payloads` | the payloads of `sleep`, `http`, `tcp`, `websocket`, `dns`, `ping` and `grpc` | by the first job with a payload |
| `tcp` | `tcp` | at start-up |
| `grpchealth` | `grpc` (grpc.health.v1; the `corral[grpc]` extra) | at start-up; grpc by the job |
| `guarded` | the guard inside aiohttp (resolver, literal and proxy checks), TLS | on first run |
| `httpcheck` | `http` (aiohttp: redirects, proxies, body and JSON expectations, size cap) | on first run |
| `websocket` | `websocket` (aiohttp) | on first run |
| `dnscheck` | `dns` (the system resolver, or dnspython for types and a chosen server) | on first run |
| `ping` | `ping` (icmplib, unprivileged ICMP) | on first run |
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from corral.worker.config import WorkerSettings
from corral.worker.egress import Guard
from corral.worker.executors.basic import MAX_TIMEOUT_S, noop, sleep
from corral.worker.executors.grpchealth import grpc_executor
from corral.worker.executors.tcp import tcp_executor
from corral.worker.handlers import HandlerRegistry, Job, LazyPayload
from corral.worker.handlers import registry as decorated

if TYPE_CHECKING:
    # The payload models, which `__getattr__` imports on first use: re-exported
    # for the type checker (`X as X`), so they stay out of the runtime's
    # `__all__`, which would otherwise list `payloads.__all__` a second time.
    from corral.worker.executors.payloads import DnsCheck as DnsCheck
    from corral.worker.executors.payloads import GrpcCheck as GrpcCheck
    from corral.worker.executors.payloads import HttpCheck as HttpCheck
    from corral.worker.executors.payloads import PingCheck as PingCheck
    from corral.worker.executors.payloads import Sleep as Sleep
    from corral.worker.executors.payloads import TcpCheck as TcpCheck
    from corral.worker.executors.payloads import WebsocketCheck as WebsocketCheck

__all__ = ["MAX_TIMEOUT_S", "build_registry", "builtin_registry"]


def builtin_registry(guard: Guard | None = None) -> HandlerRegistry:
    """A fresh registry holding the built-in kinds; the network checks obey
    `guard` (the default policy, without knowing the worker's endpoint, when
    none is given)."""
    guard = guard if guard is not None else Guard()
    reg = HandlerRegistry()
    # Started in the claim loop's task (Handler.eager): neither enters a
    # timeout or sets a context variable before it first waits; the network
    # checks do (their own timeouts), so each runs in a Task of its own.
    reg.register("noop", noop, eager=True)
    # No timeout of its own: a sleep longer than the worker's job timeout
    # fails like any overrunning job would.
    reg.register("sleep", sleep, payload=_payload("Sleep"), eager=True)
    reg.register("http", _on_first_run("http", _httpcheck, guard), payload=_payload("HttpCheck"))
    reg.register("tcp", tcp_executor(guard), payload=_payload("TcpCheck"))
    reg.register("dns", _on_first_run("dns", _dnscheck, guard), payload=_payload("DnsCheck"))
    reg.register("ping", _on_first_run("ping", _ping, guard), payload=_payload("PingCheck"))
    reg.register(
        "websocket",
        _on_first_run("websocket", _websocket, guard),
        payload=_payload("WebsocketCheck"),
    )
    reg.register("grpc", grpc_executor(guard), payload=_payload("GrpcCheck"))
    return reg


_PAYLOADS = "corral.worker.executors.payloads"


def _payload(name: str) -> LazyPayload:
    return LazyPayload(_PAYLOADS, name)


def __getattr__(name: str) -> Any:
    """The payload models by name (`from corral.worker.executors import
    HttpCheck`), imported on first use like the registry's."""
    if not name.startswith("__"):  # a probe such as __path__ never imports them
        payloads = importlib.import_module(_PAYLOADS)
        if name in payloads.__all__:
            return getattr(payloads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


_Check = Callable[[Job[Any]], Awaitable[dict[str, Any]]]
_Factory = Callable[[Guard], _Check]


def _on_first_run(kind: str, load: Callable[[], _Factory], guard: Guard) -> _Check:
    """The `kind` handler, its module (and the library under it) imported when
    the first job of the kind runs, in a thread so the event loop (heartbeats,
    other jobs) keeps turning. A worker that never runs the kind never pays
    for it; `tests/unit/test_worker_executors_lazy.py` keeps it so."""
    bound: _Check | None = None

    async def run(job: Job[Any]) -> dict[str, Any]:
        nonlocal bound
        if bound is None:
            factory = await asyncio.to_thread(load)
            bound = factory(guard)
        return await bound(job)

    run.__name__ = run.__qualname__ = f"{kind}_check"
    return run


# One loader per module that imports a heavy library (aiohttp, dnspython,
# icmplib); `noop`, `sleep`, `tcp` and `grpc` import nothing heavy up front.


def _httpcheck() -> _Factory:
    from corral.worker.executors.httpcheck import http_executor

    return http_executor


def _websocket() -> _Factory:
    from corral.worker.executors.websocket import websocket_executor

    return websocket_executor


def _dnscheck() -> _Factory:
    from corral.worker.executors.dnscheck import dns_executor

    return dns_executor


def _ping() -> _Factory:
    from corral.worker.executors.ping import ping_executor

    return ping_executor

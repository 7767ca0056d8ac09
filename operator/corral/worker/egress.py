"""The executor guard: where the built-in executors that open connections
(`http`, `tcp`, `dns`, `ping`, `websocket`, `grpc`: `corral.worker.executors`)
may go.

A job's payload comes from whoever can enqueue, and the worker runs inside
the cluster network: without a guard, an `http` job could read the cloud
metadata service (instance credentials) or drain the worker through its own
endpoint. Checking internal services is what monitoring workers are for, so
private and loopback addresses stay reachable by default; what is refused:

- link-local addresses (169.254.0.0/16, fe80::/10), where the cloud metadata
  services answer, and the metadata addresses outside that range
  (fd00:ec2::254, 100.100.100.200, 168.63.129.16) — `DEFAULT_DENY`;
- the worker's own endpoint (its port on any of its own addresses): never
  opened by an allow rule;
- whatever the worker's and the pool's deny lists add (`--egress-deny`,
  `spec.egress.deny`), unless an allow rule (`--egress-allow`,
  `spec.egress.allow`) matches the same target.

A rule is `TARGET[:PORTS]`: TARGET is an address or CIDR (`10.96.0.1`,
`10.0.0.0/8`, `[fd00::/8]` when a port follows an IPv6 one), a host pattern
(`*.internal`, `api.example.com`; shell wildcards, matched against the name
the job gave, never against an address literal) or empty; PORTS is a port or
a range (`:6443`, `:8000-8999`). A target is judged after resolving its name,
on every address the name resolves to, and the executor then connects to the
address it judged (`Guard.resolve`), so a name that answers differently the
second time (DNS rebinding) reaches nothing that was not checked.
IPv4-mapped, 6to4 and NAT64 forms of an IPv4 address are judged as that
address too.

A refused target raises `Refused` (a `PayloadError`): the job goes straight
to dead with reason `payload` and a message naming the rule.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from corral.egressrules import Address, Policy, forms
from corral.worker.handlers import PayloadError

__all__ = ["Guard", "Refused", "is_local_address"]


class Refused(PayloadError):
    """The guard refused a target; the message names the rule."""


def is_local_address(address: Address) -> bool:
    """Whether `address` is one of this host's own (loopback, unspecified, or
    an address of one of its interfaces: binding to it succeeds)."""
    if address.is_loopback or address.is_unspecified:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.bind((str(address), 0))
    except OSError:
        return False
    return True


@dataclass
class Guard:
    """The policy plus what only the running worker knows: its own endpoint.
    `Worker` sets `endpoint` once the endpoint listens."""

    policy: Policy = field(default_factory=Policy)
    endpoint: tuple[str, int] | None = None  # (listen host, port)
    is_local: Callable[[Address], bool] = is_local_address
    # The resolver (the loop's getaddrinfo unless a test gives another).
    lookup: Callable[..., Awaitable[list[Any]]] | None = None

    def _own_endpoint(self, address: Address, port: int | None) -> bool:
        if self.endpoint is None or port != self.endpoint[1]:
            return False
        host = self.endpoint[0]
        listens_everywhere = host in ("", "0.0.0.0", "::")
        for form in forms(address):
            if form.is_unspecified:
                return True  # connecting to 0.0.0.0 reaches the local host
            if listens_everywhere and self.is_local(form):
                return True
            if not listens_everywhere and (form.is_loopback or str(form) == host):
                return True
        return False

    def check(self, name: str | None, address: Address | None, port: int | None) -> None:
        """Raise `Refused` for a target the worker must not reach."""
        shown = f"{name} ({address})" if name and address else (name or str(address))
        if address is not None and self._own_endpoint(address, port):
            raise Refused(
                f"{shown}:{port} is this worker's own endpoint: refused by the executor guard "
                "(no allow rule opens it)"
            )
        why = self.policy.refusal(name, address, port)
        if why:
            raise Refused(f"{shown}" + (f":{port}" if port else "") + f": {why}")

    async def resolve(
        self, host: str, port: int | None, family: int = socket.AF_UNSPEC
    ) -> list[tuple[int, Address]]:
        """Every address `host` resolves to, each checked; the caller connects
        to these (never resolving again). Raises `Refused` when any is
        refused, OSError when the name does not resolve."""
        literal = _literal(host)
        name = None if literal is not None else host.lower().rstrip(".")
        if name is not None:
            self.check(name, None, port)  # host-pattern rules, before any lookup
        found: list[tuple[int, Address]]
        if literal is not None:
            found = [(socket.AF_INET6 if literal.version == 6 else socket.AF_INET, literal)]
        else:
            lookup = self.lookup or asyncio.get_running_loop().getaddrinfo
            infos = await lookup(host, port, family=family, type=socket.SOCK_STREAM)
            found = []
            for info in infos:
                entry = (int(info[0]), ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]))
                if entry not in found:
                    found.append(entry)
        for _, address in found:
            self.check(name, address, port)
        return found


def _literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None

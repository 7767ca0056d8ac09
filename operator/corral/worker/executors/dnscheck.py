"""The `dns` executor: does a name resolve, and to what?

Without `type` or `resolver`, the name is resolved the way a connection
would resolve it (the system's resolver, /etc/hosts included, through the
executor guard). With either, dnspython asks for that record type (A, AAAA,
CNAME, MX, TXT, NS) of `resolver` (an address, judged by the guard like any
target on its port) or of the servers in /etc/resolv.conf. Either way, an
A or AAAA answer in a refused range is refused like a connection's target,
and `expected` values must all be among the answers.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.rdatatype
import dns.resolver

from corral.worker.egress import Guard
from corral.worker.executors.basic import elapsed_ms, socket_errors
from corral.worker.executors.payloads import DnsCheck, resolver_address
from corral.worker.handlers import HandlerError, Job

__all__ = ["dns_executor"]


def _normal(value: str) -> str:
    return value.lower().rstrip(".")


def dns_executor(guard: Guard) -> Any:
    """The `dns` handler, bound to the worker's guard."""

    async def dns_check(job: Job[DnsCheck]) -> dict[str, Any]:
        check = job.payload
        started = time.perf_counter()
        async with socket_errors(f"dns {check.name}", check.timeout, "answer"):
            if check.type is None and check.resolver is None:
                result = await _system(guard, check)
            else:
                result = await _query(guard, check)
        result["latency_ms"] = elapsed_ms(started)
        answered = {_normal(v) for v in result["values"]}
        missing = [v for v in check.expected if _normal(v) not in answered]
        if missing:
            raise HandlerError(
                f"dns {check.name} {result['type']}: {missing} not among the answers "
                f"{result['values']} (expected)"
            )
        return result

    return dns_check


async def _system(guard: Guard, check: DnsCheck) -> dict[str, Any]:
    family = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}
    # Judged like a connection's target, minus ports: a name that resolves
    # into a refused range is refused here too.
    found = await guard.resolve(check.name, None, family[check.family])
    addresses = sorted({str(address) for _, address in found})
    return {"type": "address", "values": addresses, "addresses": addresses, "resolver": None}


async def _query(guard: Guard, check: DnsCheck) -> dict[str, Any]:
    server = None
    if check.resolver is not None:
        address, port = resolver_address(check.resolver)
        await guard.resolve(address, port)  # the resolver is a target like any other
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [address]
        resolver.port = port
        server = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    else:
        try:
            resolver = dns.asyncresolver.Resolver()  # /etc/resolv.conf
        except dns.exception.DNSException as exc:
            raise HandlerError(
                f"dns {check.name}: no resolver configured on this worker ({exc}): "
                "name one in the payload's resolver field"
            ) from None
    rdtype = check.type or "A"
    name = check.name.lower().rstrip(".")
    guard.check(name, None, None)  # host-pattern rules, before the query
    try:
        answer = await resolver.resolve(name, rdtype, lifetime=check.timeout, search=False)
    except dns.resolver.NXDOMAIN:
        raise HandlerError(f"dns {name} {rdtype}: no such name (NXDOMAIN)") from None
    except dns.resolver.NoAnswer:
        raise HandlerError(f"dns {name} {rdtype}: the name has no {rdtype} record") from None
    except dns.resolver.NoNameservers as exc:
        raise HandlerError(f"dns {name} {rdtype}: no server answered: {exc}") from None
    except dns.exception.Timeout:
        raise TimeoutError from None
    except dns.exception.DNSException as exc:
        raise HandlerError(f"dns {name} {rdtype}: {exc}") from None
    values = [_text(rdata) for rdata in answer]
    if rdtype in ("A", "AAAA"):
        for value in values:
            guard.check(name, ipaddress.ip_address(value), None)
    result: dict[str, Any] = {
        "type": rdtype,
        "values": sorted(values),
        "ttl": answer.rrset.ttl if answer.rrset is not None else None,
        "resolver": server,
    }
    if rdtype in ("A", "AAAA"):
        result["addresses"] = result["values"]
    return result


def _text(rdata: Any) -> str:
    """One answer as text: names without the final dot, TXT strings joined."""
    if rdata.rdtype == dns.rdatatype.TXT:
        return b"".join(rdata.strings).decode("utf-8", "replace")
    if rdata.rdtype == dns.rdatatype.MX:
        return f"{rdata.preference} {_normal(rdata.exchange.to_text())}"
    return _normal(rdata.to_text())

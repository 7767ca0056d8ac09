"""The executor guard's rules: their grammar and how deny and allow combine.

A leaf module (standard library only), read by the WorkerPool model that
validates `spec.egress` (`corral.api.v1alpha1`), by the worker's settings
(`corral.worker.config`) and by the guard that applies the rules at run time
(`corral.worker.egress`, which has the whole story).

A rule is `TARGET[:PORTS]`: TARGET is an address or CIDR (`10.96.0.1`,
`10.0.0.0/8`, `fd00::/8`, `[fd00::/8]` when a port follows an IPv6 one), a
host pattern (`*.internal`, `api.example.com`: shell wildcards, matched
against the name a job gave, never against an address literal) or empty;
PORTS is a port or a range (`:6443`, `:8000-8999`). A rule matches a target
when every part it has matches. A target is refused when a deny rule
(`DEFAULT_DENY` first) matches it and no allow rule does.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_DENY",
    "RULE_PATTERN",
    "Address",
    "Policy",
    "Rule",
    "forms",
    "parse_rule",
    "parse_rules",
]

# What one rule may look like, for the CRD's schema (the parser has the
# precise message): address/CIDR/host pattern characters and an optional port.
RULE_PATTERN = r"^[A-Za-z0-9*?._:/\[\]-]{1,253}$"

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

_HOST_PATTERN = re.compile(r"^[a-z0-9*?._-]+$")
_PORTS = re.compile(r"^(\d{1,5})(?:-(\d{1,5}))?$")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


@dataclass(frozen=True)
class Rule:
    """One deny or allow entry. A part left out matches anything; a rule
    matches a target when every part it has matches."""

    text: str  # as written (what a refusal names)
    network: Network | None = None
    host: str | None = None  # lower-case shell pattern, for names only
    ports: tuple[int, int] | None = None  # inclusive range
    label: str = ""  # why a built-in rule exists

    def matches(self, name: str | None, address: Address | None, port: int | None) -> bool:
        if self.ports is not None and (port is None or not self.ports[0] <= port <= self.ports[1]):
            return False
        if self.network is not None and (address is None or address not in self.network):
            return False
        return self.host is None or (name is not None and fnmatch.fnmatchcase(name, self.host))

    def describe(self) -> str:
        return f"{self.text} ({self.label})" if self.label else self.text


def _ports(text: str, rule: str) -> tuple[int, int]:
    found = _PORTS.fullmatch(text)
    if not found:
        raise ValueError(f"{rule!r}: {text!r} is not a port or a range such as 8000-8999")
    low = int(found.group(1))
    high = int(found.group(2) or low)
    if not 1 <= low <= high <= 65535:
        raise ValueError(f"{rule!r}: ports go from 1 to 65535, low to high")
    return low, high


def _network(text: str, rule: str) -> Network:
    try:
        return ipaddress.ip_network(text)
    except ValueError as exc:
        raise ValueError(f"{rule!r}: {exc}") from None


def parse_rule(text: str, label: str = "") -> Rule:
    """`10.0.0.0/8`, `10.96.0.1:443`, `[fd00::/8]:443`, `fd00::/8`,
    `*.internal`, `api.example.com:8443`, `:6443`, `:8000-8999`."""
    rule = text.strip()
    if not rule:
        raise ValueError("an empty rule")
    target, ports = rule, None
    if rule.startswith("["):
        close = rule.find("]")
        if close < 0 or (rule[close + 1 :] and not rule[close + 1 :].startswith(":")):
            raise ValueError(f"{rule!r}: write an IPv6 target with a port as [fd00::/8]:443")
        target, ports = rule[1:close], rule[close + 2 :] or None
        if ":" not in target:
            raise ValueError(f"{rule!r}: brackets are for IPv6 addresses only")
    elif rule.count(":") == 1:
        target, ports = rule.split(":")
    elif rule.count(":") > 1:
        target = rule  # a bare IPv6 address or network
    port_range = _ports(ports, rule) if ports is not None else None
    if not target:
        if port_range is None:
            raise ValueError(f"{rule!r}: name an address, a CIDR, a host pattern or :PORT")
        return Rule(rule, ports=port_range, label=label)
    if ":" in target or re.fullmatch(r"[\d./]+", target):
        return Rule(rule, network=_network(target, rule), ports=port_range, label=label)
    host = target.lower().rstrip(".")
    if not _HOST_PATTERN.fullmatch(host):
        raise ValueError(
            f"{rule!r}: {target!r} is neither an address, a CIDR nor a host pattern "
            "(letters, digits, . - _ and the wildcards * ?)"
        )
    return Rule(rule, host=host, ports=port_range, label=label)


def parse_rules(value: str | Iterable[str] | None) -> tuple[Rule, ...]:
    """Rules from 'a, b c' or ['a', 'b,c'] (flags, environment, the pool spec)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(
        parse_rule(text) for item in items for text in re.split(r"[,\s]+", item) if text.strip()
    )


DEFAULT_DENY: tuple[Rule, ...] = (
    parse_rule("169.254.0.0/16", "link-local; cloud metadata at 169.254.169.254"),
    parse_rule("fe80::/10", "IPv6 link-local"),
    parse_rule("fd00:ec2::254", "AWS metadata over IPv6"),
    parse_rule("100.100.100.200", "Alibaba Cloud metadata"),
    parse_rule("168.63.129.16", "Azure WireServer"),
)


def forms(address: Address) -> list[Address]:
    """The address, and the IPv4 address it carries (mapped, 6to4, NAT64)."""
    forms: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            forms.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            forms.append(address.sixtofour)
        if address in _NAT64:
            forms.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return forms


@dataclass(frozen=True)
class Policy:
    """Deny and allow rules; `DEFAULT_DENY` comes first unless left out."""

    deny: tuple[Rule, ...] = DEFAULT_DENY
    allow: tuple[Rule, ...] = ()

    @classmethod
    def build(cls, deny: Iterable[Rule] = (), allow: Iterable[Rule] = ()) -> Policy:
        return cls(DEFAULT_DENY + tuple(deny), tuple(allow))

    def refusal(self, name: str | None, address: Address | None, port: int | None) -> str | None:
        """Why the target is refused (naming the rule), or None when it is not."""
        for form in [None] if address is None else forms(address):
            for rule in self.deny:
                if rule.matches(name, form, port) and not any(
                    allowed.matches(name, form, port) for allowed in self.allow
                ):
                    kind = "built-in rule" if rule.label else "deny rule"
                    return f"refused by the executor guard's {kind} {rule.describe()}"
        return None

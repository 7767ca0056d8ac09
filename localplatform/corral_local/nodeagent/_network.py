"""Pod sandboxes: one network namespace and veth pair per pod on bridge corral0.

Called by `_pod` (create/delete a sandbox) and `_agent` (bridge up/down). The
bridge holds the host side 10.244.0.1/16; each pod gets an address from
`_ipam.FileIpam`, a loopback, and a default route via the bridge, so pods reach
the API server and Postgres on 10.244.0.1. The bridge is shared by every agent on
the machine (a file per agent under /run/corral/bridge-users), and the last one
out removes it. When the machine cannot do this (not root, no `ip`), `HostNetwork`
is the documented fallback: pods share the host's network and its address.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from corral_local.nodeagent._ipam import FileIpam

RUN_DIR = Path(os.environ.get("CORRAL_RUN_DIR", "/run/corral"))


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def netns_problem() -> str | None:
    """Why a network namespace per pod cannot be made here, or None when it can
    (root, `ip` and `nsenter` present, and a namespace really made)."""
    if os.geteuid() != 0:
        return f"needs root (the agent runs as uid {os.geteuid()})"
    missing = [tool for tool in ("ip", "nsenter") if not shutil.which(tool)]
    if missing:
        return f"{' and '.join(missing)} not found on PATH"
    probe = f"corral-probe-{os.getpid()}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns add {probe}: {made.stderr.strip() or f'exit status {made.returncode}'}"
    _ip("netns", "del", probe, check=False)
    return None


def netns_possible() -> bool:
    return netns_problem() is None


@dataclass(frozen=True)
class Sandbox:
    pod_ip: str
    netns: str | None  # None: host network
    veth: str | None = None

    @property
    def netns_path(self) -> str | None:
        return f"/run/netns/{self.netns}" if self.netns else None


class BridgeNetwork:
    """Per-pod network namespaces on a shared Linux bridge."""

    def __init__(self, bridge: str = "corral0", cidr: str = "10.244.0.0/16") -> None:
        self.bridge = bridge
        self.network = ipaddress.IPv4Network(cidr)
        self.gateway = str(self.network.network_address + 1)
        self.ipam = FileIpam(cidr, RUN_DIR / "ipam" / bridge)
        self._users = RUN_DIR / "bridge-users" / bridge
        self.host_ip = self.gateway

    @property
    def bridge_mac(self) -> str:
        """The bridge's own MAC: fixed, locally administered, from its name.

        A Linux bridge left to itself takes the lowest MAC among its ports, so
        adding or deleting a pod's veth can change the gateway's MAC under
        every running pod. Their ARP caches keep the old one for tens of
        seconds, during which their traffic to the host (the database, the
        API server) goes nowhere: a worker in a pod whose neighbour was just
        replaced lost its database connection 30 s later and its lease with
        it. An address set by hand stays put.
        """
        digest = hashlib.sha256(self.bridge.encode()).digest()
        return ":".join(f"{b:02x}" for b in (0x02, *digest[:5]))

    def up(self) -> None:
        self._users.mkdir(parents=True, exist_ok=True)
        (self._users / str(os.getpid())).write_text("nodeagent\n")
        if _ip("link", "show", self.bridge, check=False).returncode != 0:
            _ip("link", "add", self.bridge, "type", "bridge", check=False)
        if self.bridge_mac not in _ip("link", "show", self.bridge).stdout:
            _ip("link", "set", self.bridge, "address", self.bridge_mac)
        addr = f"{self.gateway}/{self.network.prefixlen}"
        if addr not in _ip("-4", "addr", "show", "dev", self.bridge).stdout:
            _ip("addr", "add", addr, "dev", self.bridge, check=False)
        _ip("link", "set", self.bridge, "up")

    def down(self) -> None:
        """Leave the bridge; remove it when no live agent uses it any more."""
        (self._users / str(os.getpid())).unlink(missing_ok=True)
        for entry in self._users.iterdir() if self._users.exists() else []:
            try:
                os.kill(int(entry.name), 0)
                return  # someone else still uses it
            except (ValueError, ProcessLookupError):
                entry.unlink(missing_ok=True)
            except PermissionError:
                return
        _ip("link", "del", self.bridge, check=False)

    def create(self, pod_uid: str) -> Sandbox:
        address = self.ipam.allocate(pod_uid)
        short = pod_uid.replace("-", "")[:10]
        netns, host_if, pod_if = f"corral-{short}", f"cvh{short}", f"cvp{short}"
        try:
            _ip("netns", "del", netns, check=False)  # a stale one from a crashed agent
            _ip("link", "del", host_if, check=False)
            _ip("netns", "add", netns)
            _ip("link", "add", host_if, "type", "veth", "peer", "name", pod_if)
            _ip("link", "set", pod_if, "netns", netns)
            _ip("link", "set", host_if, "master", self.bridge)
            _ip("link", "set", host_if, "up")
            _ip("-n", netns, "link", "set", pod_if, "name", "eth0")
            _ip("-n", netns, "addr", "add", f"{address}/{self.network.prefixlen}", "dev", "eth0")
            _ip("-n", netns, "link", "set", "eth0", "up")
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "route", "add", "default", "via", self.gateway)
        except NetworkError:
            self.delete(Sandbox(str(address), netns, host_if))
            raise
        return Sandbox(str(address), netns, host_if)

    def delete(self, sandbox: Sandbox) -> None:
        if sandbox.veth:
            _ip("link", "del", sandbox.veth, check=False)
        if sandbox.netns:
            _ip("netns", "del", sandbox.netns, check=False)
        with contextlib.suppress(ValueError):
            self.ipam.release(ipaddress.IPv4Address(sandbox.pod_ip))


class HostNetwork:
    """Fallback: every pod shares the host network; pod IP is the host's address."""

    def __init__(self, host_ip: str = "127.0.0.1") -> None:
        self.host_ip = host_ip
        self.gateway = host_ip

    def up(self) -> None:
        pass

    def down(self) -> None:
        pass

    def create(self, pod_uid: str) -> Sandbox:
        return Sandbox(self.host_ip, None)

    def delete(self, sandbox: Sandbox) -> None:
        pass

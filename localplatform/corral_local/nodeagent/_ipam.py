"""Pod IP allocation from the pod network (10.244.0.0/16 by default).

Called by `_network` when a pod sandbox is created. Several node agents may run
on one machine at once (a `make dev` and an e2e session, say) and share the
bridge, so a lease is a file named after the address, created with O_EXCL and
holding the owner's pid: an address whose owner is dead is free again.
`next_free` is the pure choice, unit-tested on its own.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from pathlib import Path

from corral_local._pids import exists as pid_exists


def next_free(
    network: ipaddress.IPv4Network, reserved: Iterable[ipaddress.IPv4Address], start_after: int = 0
) -> ipaddress.IPv4Address | None:
    """The first host address after offset `start_after` (wrapping) that is not reserved.

    Network, broadcast and the gateway (first host) are never handed out.
    """
    taken = set(reserved)
    gateway = network.network_address + 1
    size = network.num_addresses
    for step in range(size):
        offset = (start_after + 1 + step) % size
        candidate = network.network_address + offset
        if candidate in (network.network_address, network.broadcast_address, gateway):
            continue
        if candidate not in taken:
            return candidate
    return None


class FileIpam:
    """Address leases as files under `directory` (shared by every agent on the host)."""

    def __init__(self, network: str, directory: Path) -> None:
        self.network = ipaddress.IPv4Network(network)
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._last = 0

    def _held(self) -> set[ipaddress.IPv4Address]:
        held: set[ipaddress.IPv4Address] = set()
        for entry in self.directory.iterdir():
            try:
                pid = int(entry.read_text().split()[0])
                address = ipaddress.IPv4Address(entry.name)
            except (ValueError, IndexError, OSError):
                continue
            if pid_exists(pid):
                held.add(address)
            else:
                entry.unlink(missing_ok=True)
        return held

    def allocate(self, owner: str) -> ipaddress.IPv4Address:
        for _ in range(8):
            address = next_free(self.network, self._held(), self._last)
            if address is None:
                raise RuntimeError(f"pod network {self.network} is full")
            try:
                fd = os.open(self.directory / str(address), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue  # another agent won the race: pick again
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {owner}\n")
            self._last = int(address) - int(self.network.network_address)
            return address
        raise RuntimeError("could not lease a pod IP after 8 tries (contention)")

    def release(self, address: ipaddress.IPv4Address | str) -> None:
        path = self.directory / str(address)
        try:
            if int(path.read_text().split()[0]) == os.getpid():
                path.unlink()
        except (OSError, ValueError, IndexError):
            pass

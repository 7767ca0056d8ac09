"""The `ping` executor: ICMP echo with icmplib over an unprivileged datagram
socket, so the worker needs no raw-socket capability.

Linux opens such sockets only to the groups in the sysctl
`net.ipv4.ping_group_range`; when the worker's group is outside it, the job
fails with a message naming the sysctl and how to open it (a pod sets it in
`securityContext.sysctls`). The host is resolved and judged by the executor
guard, and the address judged is the one pinged.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import icmplib

from corral.worker.egress import Guard
from corral.worker.executors.payloads import PingCheck
from corral.worker.handlers import HandlerError, Job

__all__ = ["PING_GROUP_RANGE", "ping_executor", "unprivileged_ping_allowed"]

PING_GROUP_RANGE = Path("/proc/sys/net/ipv4/ping_group_range")


def unprivileged_ping_allowed() -> tuple[bool, str]:
    """Whether this process's groups fall in net.ipv4.ping_group_range, and
    the range as the kernel shows it."""
    try:
        text = PING_GROUP_RANGE.read_text().strip()
        low, high = (int(x) for x in text.split())
    except (OSError, ValueError):
        return False, "unreadable"
    groups = {os.getgid(), *os.getgroups()}
    return any(low <= g <= high for g in groups), text.replace("\t", " ")


def ping_executor(guard: Guard) -> Any:
    """The `ping` handler, bound to the worker's guard."""

    async def ping(job: Job[PingCheck]) -> dict[str, Any]:
        check = job.payload
        try:
            async with asyncio.timeout(check.timeout):
                found = await guard.resolve(check.host, None)
                address = str(found[0][1])
                host = await icmplib.async_ping(
                    address,
                    count=check.count,
                    interval=check.interval,
                    timeout=max(check.timeout / check.count, 0.1),
                    privileged=False,
                )
        except TimeoutError:
            raise HandlerError(f"ping {check.host}: no answer within {check.timeout}s") from None
        except icmplib.SocketPermissionError:
            _, shown = unprivileged_ping_allowed()
            raise HandlerError(
                f"ping {check.host}: the kernel refuses unprivileged ICMP sockets to this "
                f"worker's group (sysctl net.ipv4.ping_group_range = {shown!r}); set it to "
                "include the worker's group, e.g. net.ipv4.ping_group_range='0 2147483647' "
                "on the host or in the pod's securityContext.sysctls"
            ) from None
        except (icmplib.ICMPLibError, OSError) as exc:
            raise HandlerError(f"ping {check.host}: {exc}") from None
        result = {
            "address": address,
            "sent": host.packets_sent,
            "received": host.packets_received,
            "loss": host.packet_loss,
            "rtt_min_ms": host.min_rtt,
            "rtt_avg_ms": host.avg_rtt,
            "rtt_max_ms": host.max_rtt,
        }
        if host.packet_loss > check.max_loss:
            raise HandlerError(
                f"ping {check.host} ({address}): {host.packet_loss:.0%} of "
                f"{host.packets_sent} lost, over max_loss {check.max_loss:.0%}"
            )
        return result

    return ping

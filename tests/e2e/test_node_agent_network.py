"""The node agent's pod network: the bridge's MAC address does not move when
pods come and go.

A Linux bridge left to itself takes the lowest MAC among its ports. Then a
pod's veth added or deleted changed the gateway's MAC under every running
pod, whose ARP caches kept the old one for tens of seconds: a worker whose
neighbour pod was replaced lost its database connection (30 s TCP timeout)
and, mid-drain, its job's lease. Uses its own bridge and addresses, so it
runs beside a node agent.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from corral_local.nodeagent._network import BridgeNetwork, netns_problem

pytestmark = pytest.mark.local_platform


def _mac(interface: str, netns: str | None = None) -> str:
    where = ["-n", netns] if netns else []
    out = subprocess.run(
        ["ip", *where, "-br", "link", "show", interface], check=True, capture_output=True, text=True
    ).stdout
    return out.split()[2]


@pytest.fixture
def network() -> Iterator[BridgeNetwork]:
    problem = netns_problem()
    assert problem is None, f"the node agent's bridge network cannot be made: {problem}"
    net = BridgeNetwork(bridge="corraltest0", cidr="10.251.7.0/24")
    net.up()
    try:
        yield net
    finally:
        net.down()


def test_the_bridge_keeps_its_mac_when_a_pod_veth_with_a_lower_one_comes_and_goes(
    network: BridgeNetwork,
) -> None:
    first = network.create("pod-a")
    try:
        gateway_mac = _mac(network.bridge)
        second = network.create("pod-b")
        assert second.veth is not None
        # The lowest MAC there is: a bridge that follows its ports takes it.
        subprocess.run(
            ["ip", "link", "set", second.veth, "address", "02:00:00:00:00:01"], check=True
        )
        assert _mac(network.bridge) == gateway_mac
        network.delete(second)
        assert _mac(network.bridge) == gateway_mac
    finally:
        network.delete(first)
    # A second agent bringing the same bridge up leaves the address as it is.
    BridgeNetwork(bridge="corraltest0", cidr="10.251.7.0/24").up()
    assert _mac(network.bridge) == gateway_mac == network.bridge_mac

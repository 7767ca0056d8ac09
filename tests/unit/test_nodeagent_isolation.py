"""Why the node agent cannot isolate pods: the reason is kept, not thrown away
(corral_local.nodeagent._network.netns_problem, _runtime.mount_namespaces_problem)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

import pytest

from corral_local.nodeagent import _network, _runtime

DENIED = "mount --make-shared /run/netns failed: Operation not permitted"


def test_a_failing_ip_netns_add_is_the_reason_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert args[:2] == ("netns", "add"), args
        return subprocess.CompletedProcess(["ip", *args], 1, "", DENIED + "\n")

    monkeypatch.setattr(_network, "_ip", ip)
    problem = _network.netns_problem()
    assert problem is not None and problem.startswith("ip netns add corral-probe-")
    assert problem.endswith(DENIED)
    assert not _network.netns_possible()


def test_no_root_and_missing_tools_are_reasons_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert _network.netns_problem() == "needs root (the agent runs as uid 1000)"
    assert _runtime.mount_namespaces_problem() == "needs root (the agent runs as uid 1000)"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "nsenter" else tool)
    assert _network.netns_problem() == "nsenter not found on PATH"


def test_a_failing_unshare_is_the_reason_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(shutil, "which", lambda tool: f"/usr/bin/{tool}")

    def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(
            argv, 1, "", "unshare: unshare failed: Operation not permitted\n"
        )

    monkeypatch.setattr(subprocess, "run", run)
    assert _runtime.mount_namespaces_problem() == (
        "unshare --mount --uts: unshare: unshare failed: Operation not permitted"
    )

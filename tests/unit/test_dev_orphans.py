"""Nothing `make dev` starts outlives it (corral_local.dev, corral_local._parentdeath,
the node agent's launcher): its children die with it, a container dies with
its agent, and `dev up` / `dev down` stop what an earlier run left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from corral_local import _pids, dev

SLEEPER = "import time; time.sleep(60)"


def _gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _pids.running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _parent(script: str, *args: str) -> tuple[subprocess.Popen[str], int]:
    """A stand-in for `dev up` (or the agent) running `script`, which prints
    its child's pid; returns the parent and that pid."""
    parent = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args], stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    line = parent.stdout.readline()
    assert line.strip().isdigit(), line
    return parent, int(line)


def _kill(parent: subprocess.Popen[str]) -> None:
    parent.kill()
    parent.wait()


def test_the_node_agent_and_the_dashboard_get_sigterm_when_make_dev_is_killed(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "terminated"
    child = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: (open(sys.argv[1], 'w').write('TERM'), sys.exit(0)))\n"
        "open(sys.argv[2], 'w').write('up')\n"
        "time.sleep(60)\n"
    )
    script = f"""
        import os, sys, time
        from pathlib import Path
        from corral_local import dev
        tmp = Path(sys.argv[1])
        child = dev._spawn(
            [sys.executable, "-c", {child!r}, str(tmp / "terminated"), str(tmp / "up")],
            tmp / "child.log", dict(os.environ), tmp / "child.pid",
        )
        print(child.pid, flush=True)
        time.sleep(60)
    """
    parent, pid = _parent(script, str(tmp_path))
    try:
        assert (tmp_path / "child.pid").read_text() == str(pid)
        deadline = time.monotonic() + 10
        while not (tmp_path / "up").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        _kill(parent)  # as SIGKILL, an OOM kill or a closed terminal would
        assert _gone(pid), "the child outlived make dev"
        assert marker.read_text() == "TERM"  # its handler ran: the agent stops its pods
    finally:
        _kill(parent)
        if _pids.running(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_container_dies_with_its_node_agent_even_after_dropping_to_its_run_as_user(
    tmp_path: Path,
) -> None:
    user = "65532" if os.geteuid() == 0 else "None"  # the user switch clears the signal
    script = f"""
        import os, sys, time
        from pathlib import Path
        from corral_local.nodeagent._runtime import ContainerProcess, LaunchSpec, Namespaces
        tmp = Path(sys.argv[1])
        spec = LaunchSpec(
            argv=["sleep", "60"], env={{"PATH": os.environ["PATH"]}},
            uid={user}, gid={user},
        )
        proc = ContainerProcess.start(spec, Namespaces(None, False), tmp / "c.log", tmp / "run")
        print(proc.pid, flush=True)
        time.sleep(60)
    """
    parent, pid = _parent(script, str(tmp_path))
    try:
        time.sleep(0.5)  # the launcher has exec'd sleep
        assert _pids.running(pid), (tmp_path / "c.log").read_text()
        _kill(parent)
        assert _gone(pid), "the container outlived its node agent"
    finally:
        _kill(parent)
        if _pids.running(pid):
            os.killpg(pid, signal.SIGKILL)


def test_dev_down_stops_a_node_agent_an_earlier_make_dev_left_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "dev"
    state.mkdir()
    monkeypatch.setenv("CORRAL_DEV_DIR", str(state))
    agent = subprocess.Popen(
        [sys.executable, "-c", SLEEPER, "corral_local.nodeagent", "--state-dir", str(state)],
        start_new_session=True,
    )
    stranger = subprocess.Popen([sys.executable, "-c", SLEEPER, "dashboard"])
    try:
        for proc in (agent, stranger):  # exec'd: its command line is there
            while not Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                time.sleep(0.01)
        (state / "nodeagent.pid").write_text(str(agent.pid))
        (state / "dashboard.pid").write_text(str(stranger.pid))  # not ours: left alone
        assert dev.down() == 0
        out = capsys.readouterr().out
        assert "make dev is not running" in out
        assert f"stopped the node agent (pid {agent.pid})" in out
        assert agent.wait(timeout=10) is not None
        assert stranger.poll() is None
        assert not (state / "nodeagent.pid").exists()
    finally:
        for proc in (agent, stranger):
            proc.kill()
            proc.wait()


def test_a_closed_terminal_stops_make_dev_as_ctrl_c_does() -> None:
    done = threading.Event()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)}
    try:
        dev._on_stop_signals(done)
        os.kill(os.getpid(), signal.SIGHUP)
        assert done.wait(5)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)

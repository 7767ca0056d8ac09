"""Container processes: start one in the pod's namespaces, signal it, exec into it.

The agent's container runtime, used by `_pod`. A container is a process group
led by its main process (started through `_launch.py`); stdout and stderr go to
its log file. SIGTERM goes to the main process only (as a runtime signals PID 1),
SIGKILL to the whole group (as a runtime tears down the container's cgroup).
The main process dies with the agent (SIGKILL on the agent's death, armed by
the launcher), and so do exec'd probes and hooks.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

LAUNCHER = Path(__file__).with_name("_launch.py")


@dataclass
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str = "/"
    mounts: list[tuple[str, str, bool]] = field(default_factory=list)
    read_only_root: bool = False
    hostname: str | None = None
    uid: int | None = None
    gid: int | None = None
    groups: list[int] = field(default_factory=list)
    # (directory a non-root user cannot cross, child to expose): see interpreter_shadow
    shadow: list[tuple[str, str]] = field(default_factory=list)
    # the agent: the launcher makes the container die with it (PR_SET_PDEATHSIG)
    parent_pid: int | None = None


class Namespaces:
    """How to enter a pod: its netns, and whether private mount/UTS namespaces work."""

    def __init__(self, netns_path: str | None, private_mounts: bool) -> None:
        self.netns_path = netns_path
        self.private_mounts = private_mounts

    def prefix(self) -> list[str]:
        out: list[str] = []
        if self.netns_path:
            out += ["nsenter", f"--net={self.netns_path}", "--"]
        if self.private_mounts:
            out += ["unshare", "--mount", "--uts", "--propagation", "private", "--"]
        return out


@functools.cache
def interpreter_shadow() -> list[tuple[str, str]]:
    """Where the Python installation hides behind a directory others cannot cross.

    pyenv installs under /root (mode 0700): a container running as non-root
    could not even start the venv's python. The launcher then mounts an empty
    tmpfs over that directory with only the installation bound into it, which
    also keeps the rest of root's home out of the container.
    """
    prefix = Path(sys.base_prefix).resolve()
    for ancestor in reversed(prefix.parents):
        if ancestor == Path("/"):
            continue
        if not ancestor.stat().st_mode & stat.S_IXOTH:
            child = ancestor / prefix.relative_to(ancestor).parts[0]
            return [(str(ancestor), str(child))]
    return []


def mount_namespaces_problem() -> str | None:
    """Why a container cannot get a private mount namespace here, or None when it can."""
    if os.geteuid() != 0:
        return f"needs root (the agent runs as uid {os.geteuid()})"
    missing = [tool for tool in ("unshare", "mount") if not shutil.which(tool)]
    if missing:
        return f"{' and '.join(missing)} not found on PATH"
    proc = subprocess.run(
        ["unshare", "--mount", "--uts", "--", "true"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        return f"unshare --mount --uts: {proc.stderr.strip() or f'exit status {proc.returncode}'}"
    return None


def mount_namespaces_possible() -> bool:
    return mount_namespaces_problem() is None


def _write_spec(spec: LaunchSpec, directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="launch-", suffix=".json", dir=directory)
    with os.fdopen(fd, "w") as fh:
        json.dump(spec.__dict__, fh)
    return path


class ContainerProcess:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self.popen = popen
        self.pid = popen.pid

    @classmethod
    def start(
        cls, spec: LaunchSpec, ns: Namespaces, log_path: Path, spec_dir: Path
    ) -> ContainerProcess:
        if not ns.private_mounts:
            # Without a mount namespace volumes cannot be bound to their
            # mountPath, the hostname cannot be set and the root stays writable.
            spec = LaunchSpec(
                **{
                    **spec.__dict__,
                    "mounts": [],
                    "read_only_root": False,
                    "hostname": None,
                    "shadow": [],
                }
            )
        # a container dies with the agent (its pods are started again by the
        # next agent anyway): no process is left behind by an agent's SIGKILL
        spec = LaunchSpec(**{**spec.__dict__, "parent_pid": os.getpid()})
        path = _write_spec(spec, spec_dir)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [*ns.prefix(), sys.executable, "-I", "-S", str(LAUNCHER), path],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        return cls(popen)

    def poll(self) -> int | None:
        return self.popen.poll()

    def signal_main(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def kill_all(self) -> None:
        """SIGKILL the container's process group (its main process and children)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        self.signal_main(signal.SIGKILL)

    def reap_group(self) -> None:
        """After the main process exited: kill what it left behind in its group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def exit_code_of(returncode: int) -> tuple[int, int | None]:
    """(exitCode, signal) as a runtime reports them: a signal N is 128+N."""
    if returncode < 0:
        return 128 - returncode, -returncode
    return returncode, None


def exec_in(
    target_pid: int | None,
    netns_path: str | None,
    spec: LaunchSpec,
    timeout_s: float,
    running: set[subprocess.Popen[bytes]] | None = None,
) -> tuple[int, str]:
    """Run a command inside a running container (exec probes, preStop exec hooks).

    Enters the main process's mount, network and UTS namespaces when it is alive,
    else only the pod's network namespace; returns (exit code, output tail).
    While it runs the process is in `running`, so a dying node can kill it.
    """
    prefix: list[str] = []
    if target_pid is not None and os.geteuid() == 0 and shutil.which("nsenter"):
        prefix = ["nsenter", f"--target={target_pid}", "--mount", "--net", "--uts", "--"]
    elif netns_path:
        prefix = ["nsenter", f"--net={netns_path}", "--"]
    quiet = LaunchSpec(
        **{
            **spec.__dict__,
            "mounts": [],
            "read_only_root": False,
            "hostname": None,
            "shadow": [],
            "parent_pid": os.getpid(),
        }
    )
    # After nsenter --mount the agent's own directories may be hidden (a pod
    # with an emptyDir at /tmp hides a checkout under /tmp, its virtualenv and
    # its launcher script): every preStop hook of such a pod failed. So the
    # spec goes on stdin, the launcher as `-c` source, and the interpreter is
    # the base one the virtualenv points at (the launcher needs only the
    # standard library), not the virtualenv's.
    spec_line = (json.dumps(quiet.__dict__) + "\n").encode()
    python = getattr(sys, "_base_executable", None) or sys.executable
    popen = subprocess.Popen(
        [*prefix, python, "-I", "-S", "-c", LAUNCHER.read_text(), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if running is not None:
        running.add(popen)
    try:
        out, _ = popen.communicate(input=spec_line, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # the whole group, or a child holding the pipe would keep us waiting
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        out, _ = popen.communicate()
        tail = out[-500:].decode("utf-8", "replace")
        return -1, f"command timed out after {timeout_s}s: {tail}"
    finally:
        if running is not None:
            running.discard(popen)
    return popen.returncode, out[-2000:].decode("utf-8", "replace")

"""Last step of a container start, run as a script inside the pod's namespaces.

`_runtime` starts `nsenter --net=<pod netns> unshare --mount --uts <python> -I -S
_launch.py <spec.json>`: here, already in a private mount namespace, it binds
each volume onto its mountPath, makes the root read-only when asked, sets the
hostname to the pod's name, drops to runAsUser/runAsGroup, asks the kernel to
SIGKILL it when the agent dies, changes directory and execs the container's command. Each step execs the next, so the pid the agent
holds is the container's main process. Standard library only, and the spec file
(which holds the environment, secrets included) is removed once read.
"""

import ctypes
import json
import os
import sys
import warnings  # noqa: F401  (os.execvpe imports it lazily, maybe after the drop of root)

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC = 1, 32, 4096, 16384
PR_SET_PDEATHSIG, SIGKILL = 1, 9
_libc = ctypes.CDLL(None, use_errno=True)


def _mount(source: bytes | None, target: str, flags: int) -> None:
    # mount(2) itself: a source given as /proc/self/fd/N is the file opened
    # before any mount, even once a volume mounted over /tmp hides its path.
    if _libc.mount(source, target.encode(), None, flags, None) != 0:
        err = ctypes.get_errno()
        sys.stderr.write(f"corral-launch: mount {target}: {os.strerror(err)}\n")
        raise SystemExit(128)


def _bind(fd: int, is_dir: bool, target: str, read_only: bool) -> None:
    if is_dir:
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    _mount(f"/proc/self/fd/{fd}".encode(), target, MS_BIND | MS_REC)
    if read_only:
        _mount(None, target, MS_REMOUNT | MS_BIND | MS_RDONLY)


def main() -> None:
    path = sys.argv[1]
    if path == "-":
        # exec: the spec comes on stdin, since the container's mount namespace
        # (entered first) may hide the agent's directories (a /tmp emptyDir)
        spec = json.loads(sys.stdin.readline())
    else:
        with open(path) as fh:
            spec = json.load(fh)
        os.unlink(path)
    # open every source first: a later mount may hide an earlier source's path
    shadows = [
        (blocked, expose, os.open(expose, os.O_PATH)) for blocked, expose in spec.get("shadow", [])
    ]
    opened = [
        (os.open(source, os.O_PATH), os.path.isdir(source), target, bool(read_only))
        for source, target, read_only in spec.get("mounts", [])
    ]
    for blocked, expose, fd in shadows:
        # a non-root user cannot cross `blocked` (say /root, 0700) to reach the
        # interpreter: an empty tmpfs over it, holding only the interpreter's tree
        if _libc.mount(b"tmpfs", blocked.encode(), b"tmpfs", 0, b"mode=755") != 0:
            sys.stderr.write(
                f"corral-launch: tmpfs on {blocked}: {os.strerror(ctypes.get_errno())}\n"
            )
            raise SystemExit(128)
        _bind(fd, True, expose, True)
        os.close(fd)
    for fd, is_dir, target, read_only in opened:
        _bind(fd, is_dir, target, read_only)
        os.close(fd)
    if spec.get("read_only_root"):
        _mount(None, "/", MS_REMOUNT | MS_BIND | MS_RDONLY)
    hostname = spec.get("hostname")
    if hostname:
        name = hostname.encode()
        _libc.sethostname(name, len(name))
    gid = spec.get("gid")
    uid = spec.get("uid")
    if (gid is not None or uid is not None) and os.geteuid() == 0:
        # (not root: the agent started this only because it is that identity already)
        os.setgroups([int(g) for g in spec.get("groups", [])])
        if gid is not None:
            os.setgid(int(gid))
        if uid is not None:
            os.setuid(int(uid))
    cwd = spec.get("cwd") or "/"
    try:
        os.chdir(cwd)
    except OSError as exc:
        sys.stderr.write(f"corral-launch: workingDir {cwd}: {exc}\n")
        raise SystemExit(128) from exc
    parent = spec.get("parent_pid")
    if parent:
        # Die with the agent. Armed last: the user switch above clears it.
        _libc.prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the agent died before it was armed
            raise SystemExit(137)
    argv = spec["argv"]
    env = spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        sys.stderr.write(f"corral-launch: exec {argv[0]}: {exc}\n")
        raise SystemExit(127) from exc


if __name__ == "__main__":
    main()

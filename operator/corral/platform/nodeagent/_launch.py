"""Last step of a container start, run as a script inside the pod's namespaces.

`_runtime` starts `nsenter --net=<pod netns> unshare --mount --uts <python> -I -S
_launch.py <spec.json>`: here, already in a private mount namespace, it binds
each volume onto its mountPath, makes the root read-only when asked, sets the
hostname to the pod's name, drops to runAsUser/runAsGroup, changes directory and
execs the container's command. Each step execs the next, so the pid the agent
holds is the container's main process. Standard library only, and the spec file
(which holds the environment, secrets included) is removed once read.
"""

import ctypes
import json
import os
import subprocess
import sys


def _mount(args: list[str]) -> None:
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(f"corral-launch: mount {' '.join(args)}: {proc.stderr.strip()}\n")
        raise SystemExit(128)


def _bind(source: str, target: str, read_only: bool) -> None:
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
        if not os.path.exists(target):
            open(target, "a").close()
    _mount(["--bind", source, target])
    if read_only:
        _mount(["-o", "remount,bind,ro", target])


def main() -> None:
    path = sys.argv[1]
    with open(path) as fh:
        spec = json.load(fh)
    os.unlink(path)
    for source, target, read_only in spec.get("mounts", []):
        _bind(source, target, bool(read_only))
    if spec.get("read_only_root"):
        _mount(["-o", "remount,bind,ro", "/"])
    hostname = spec.get("hostname")
    if hostname:
        libc = ctypes.CDLL(None, use_errno=True)
        name = hostname.encode()
        libc.sethostname(name, len(name))
    gid = spec.get("gid")
    uid = spec.get("uid")
    if gid is not None or uid is not None:
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
    argv = spec["argv"]
    env = spec["env"]
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        sys.stderr.write(f"corral-launch: exec {argv[0]}: {exc}\n")
        raise SystemExit(127) from exc


if __name__ == "__main__":
    main()

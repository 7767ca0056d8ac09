"""Whether a process id is in use. The local cluster's pid files
(`localcluster._process`) and the node agent's address leases
(`nodeagent._ipam`) both ask, each before reusing what a process held."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def exists(pid: int) -> bool:
    """A process with this id exists (a zombie counts, and so does one we may not signal)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(pid: int) -> bool:
    """Like `exists`, but a zombie (exited, not yet collected by its parent) does not count."""
    if not exists(pid):
        return False
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True

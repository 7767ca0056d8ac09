"""The `corral` console script (`[project.scripts]` in pyproject.toml): runs
`corral.cli.main` with Python's cyclic garbage collector paused while the
command's modules are imported.

Imports build tens of thousands of objects that live as long as the process
does; collector passes over them free nothing and cost a worker about 7 % of
its way to the first claim (`make bench-start`), which is on the path of
every scale-up. The collector is turned back on with `resume_collector()`:
by `corral.cli` before any command but `corral worker` runs, and by the
worker runtime once its first claim is sent (`corral.worker.runtime`).
Importing `corral.cli` or running a `Worker` in-process never pauses it.

Before the command's imports, `main` also has psycopg's version modules
read their versions without importlib.metadata (`corral.distinfo`), which
saves a worker about 20 ms more; and a bare `corral worker` (every pod's
command) starts from its CORRAL_* variables without importing click
(`corral.worker.launch`). A leaf: it imports nothing of corral until
`main` runs.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

__all__ = ["main", "resume_collector"]

_paused = False


def main() -> Any:
    """The console script: pause the collector, then run the command line."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True
    from corral.distinfo import serve_psycopg_versions

    serve_psycopg_versions()  # psycopg's import without importlib.metadata's
    if sys.argv[1:] == ["worker"]:
        # A pod's command: its settings are all in CORRAL_* variables. Started
        # from them without click, unless they need click to say what is wrong.
        from corral.worker.launch import start_from_environment

        start_from_environment()
    from corral.cli import main as run

    return run()


def resume_collector() -> None:
    """Turn the collector back on if `main` paused it (once; otherwise a no-op)."""
    global _paused
    if _paused:
        _paused = False
        gc.enable()

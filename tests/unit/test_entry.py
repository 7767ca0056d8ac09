"""The `corral` console script (`corral.entry`) pauses Python's garbage
collector while a command's modules load: a worker's way to its first claim
runs no collection (about 7 % of its start-up, `make bench-start`), and
every other command gets the collector back before it runs. That the worker
turns it back on once its first claim is sent is checked on a real worker
(tests/integration/test_worker_runtime.py).

Each case runs in a fresh interpreter: the collector's state is the process's.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.unit._worker_start import start_until_connect

_SCRIPT = """
import gc, json, sys
from corral.entry import main

before = sum(generation["collections"] for generation in gc.get_stats())
sys.argv = ["corral", *ARGS]
try:
    main()
except SystemExit as exc:
    code = exc.code
after = sum(generation["collections"] for generation in gc.get_stats())
print(json.dumps({"code": code, "collections": after - before, "enabled": gc.isenabled()}))
"""


def _run(*args: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", f"ARGS = {list(args)!r}\n{_SCRIPT}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_workers_start_runs_no_garbage_collection(tmp_path: Path) -> None:
    # The real start (settings, registry, runtime, psycopg), stopped at the
    # connection (no server at that socket), where the claim would begin.
    ran = _run(*start_until_connect(tmp_path))
    assert ran["code"] == 1  # cannot connect
    assert ran["collections"] == 0


def test_every_other_command_runs_with_the_collector_on() -> None:
    ran = _run("queues", "--help")
    assert ran["code"] == 0
    assert ran["enabled"] is True


def test_the_worker_prestop_hook_runs_with_the_collector_on() -> None:
    ran = _run("worker", "prestop", "--help")
    assert ran["code"] == 0
    assert ran["enabled"] is True

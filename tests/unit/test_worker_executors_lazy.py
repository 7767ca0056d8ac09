"""A worker's start-up does not pay for its executors' libraries: importing
`corral.worker.executors` (and the worker's command line and runtime) and
building the registry import neither aiohttp, dnspython, icmplib nor grpc;
each is imported when the first job of its kind runs, and that job runs the
real executor. Start-up is on the path of every scale-up (`make bench-start`).

Each case runs in a fresh interpreter, as `sys.modules` in the test process
holds whatever other tests imported."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

HEAVY = ("aiohttp", "yarl", "dns", "icmplib", "grpc")

_START = """
import json, sys
import corral.cli, corral.worker.cli, corral.worker.runtime
from corral.worker.config import WorkerSettings
from corral.worker.executors import build_registry

registry = build_registry(WorkerSettings(database_url="postgresql:///x", queues=["q"]))
assert {"http", "websocket", "dns", "ping", "grpc", "tcp"} <= set(registry.names())
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))))
"""

_FIRST_JOB = """
import asyncio, json, sys
from corral.worker.egress import Refused
from corral.worker.executors import builtin_registry
from corral.worker.handlers import Job

handler = builtin_registry().get(KIND)
job = handler.prepare(Job(id=1, kind=KIND, queue="q", payload=PAYLOAD))
try:
    asyncio.run(handler.fn(job))
except Refused as exc:  # the executor ran, and its guard refused the metadata address
    refused = str(exc)
else:
    refused = None
print(json.dumps([refused, sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))]))
"""


def _run(script: str, **names: object) -> Any:
    prelude = "".join(f"{k} = {v!r}\n" for k, v in {"HEAVY": HEAVY, **names}.items())
    done = subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_start_up_and_the_registry_import_no_executor_library() -> None:
    assert _run(_START) == []


@pytest.mark.parametrize(
    ("kind", "payload", "library"),
    [
        ("http", {"url": "http://169.254.169.254/latest/"}, "aiohttp"),
        ("websocket", {"url": "ws://169.254.169.254/"}, "aiohttp"),
        ("dns", {"name": "example.com", "resolver": "169.254.169.254"}, "dns"),
        ("ping", {"host": "169.254.169.254"}, "icmplib"),
    ],
)
def test_the_first_job_of_a_kind_imports_its_library_and_runs_the_real_executor(
    kind: str, payload: dict[str, str], library: str
) -> None:
    refused, loaded = _run(_FIRST_JOB, KIND=kind, PAYLOAD=payload)
    assert refused is not None and "169.254" in refused
    assert library in loaded

"""A worker's way to its first claim does not import what only a scrape, a
preStop hook, a config file, the HTTP endpoint, a payload or a plugin needs:
prometheus_client (the first `/metrics` scrape imports it), urllib.request
and http.client (`corral worker prestop`), tomllib (`--config`), h11 and the
endpoint's routes (imported in a thread once the claims run; aiohttp not even
then), pydantic (a bad setting,
the first payload validated, the first result converted), importlib.metadata
(no distribution declares a `corral.handlers` entry point).
Start-up is on the path of every scale-up (`make bench-start`).

The real command runs, in a fresh interpreter under `-X importtime`, against
a database whose Unix socket does not exist: everything the worker imports
before it connects is listed, and the worker exits with its connection error
(no database, no network)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit._worker_start import start_until_connect

# Imported by the first scrape, the preStop hook or the endpoint, never before.
DEFERRED = (
    "prometheus_client",
    "urllib.request",
    "urllib.error",
    "http.client",
    "aiohttp",
    "h11",
    "corral.worker.endpoint_http",
    "tomllib",  # --config only
    # Settings pass a quick check of their rules (corral.worker.config); the
    # built-ins' payload models load with the first payload (LazyPayload).
    "pydantic",
    "pydantic_core",
    "corral.worker.settingsmodel",
    "corral.worker.executors.payloads",
    # The records only reads show (jobs as get_job shows them, stats, workers,
    # tokens, schedules, regions): corral.queue.records names them lazily.
    "corral.queue.view_records",
    # Schedules (the firing pass, handlers that declare one) and the
    # dashboard's records: corral.queue names them lazily.
    "corral.queue.schedules",
    "cronsim",
    "corral.queue.insight_records",
    # psycopg's version modules read their METADATA plainly, and the handler
    # registry asks for entry points only when a distribution declares some
    # (corral.distinfo): about 20 ms of imports, email and zipfile among them.
    "importlib.metadata",
    "email",
    "zipfile",
)

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def _worker_imports(tmp_path: Path) -> tuple[set[str], str]:
    done = subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-c",
            # The console script's way (pyproject.toml's [project.scripts]).
            "import sys; from corral.entry import main; sys.exit(main())",
            *start_until_connect(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return set(_IMPORTED.findall(done.stderr)), done.stderr


def test_the_start_path_imports_none_of_the_deferred_modules(tmp_path: Path) -> None:
    imported, stderr = _worker_imports(tmp_path)
    # It ran the real start (settings, registry, runtime, psycopg) and
    # stopped at the connection, where the claim would begin.
    assert "corral worker: error: cannot connect" in stderr, stderr[-2000:]
    assert {"corral.worker.runtime", "corral.worker.executors", "psycopg"} <= imported
    assert sorted(imported & set(DEFERRED)) == []


def test_a_scrape_still_renders_every_family() -> None:
    """The deferred import is the scrape's: metrics render as before."""
    from corral.worker.metrics import WorkerMetrics, parse_text

    metrics = WorkerMetrics(lambda: {"in_flight": 1.0})
    metrics.count("q", "completed", 3)
    metrics.observe_duration("q", 0.002)
    samples = parse_text(metrics.render().decode())
    assert samples['corral_worker_jobs_total{outcome="completed",queue="q"}'] == 3.0
    assert samples['corral_worker_job_duration_seconds_count{queue="q"}'] == 1.0
    assert samples["corral_worker_in_flight"] == 1.0


def test_the_endpoint_serves_without_importing_aiohttp() -> None:
    """aiohttp costs a worker a quarter of a second of CPU and 14 MiB; its
    endpoint (loaded once the claims run) must not bring it back."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, corral.worker.endpoint_http; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('aiohttp', 'yarl')))",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.strip() == "[]"


def test_the_names_corral_queue_defers_are_the_modules_own() -> None:
    """`corral.queue.ScheduleSpec` and the dashboard's records resolve on first
    use to the very classes their modules define; an unknown name still
    raises AttributeError."""
    import corral
    import corral.queue as q
    from corral.queue import insight_records, schedules

    assert q.ScheduleSpec is schedules.ScheduleSpec is corral.ScheduleSpec
    assert q.InvalidSchedule is schedules.InvalidSchedule is corral.InvalidSchedule
    assert (q.AuditEntry, q.DepthMinute, q.ThroughputMinute) == (
        insight_records.AuditEntry,
        insight_records.DepthMinute,
        insight_records.ThroughputMinute,
    )
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        q.Nope  # noqa: B018

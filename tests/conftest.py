"""Shared pytest plumbing for every tier.

Writes the per-tier counts that `tests/tiers.py` prints, and makes skips loud:
a skipped test fails the run unless it says why in a `CORRAL_ALLOW_SKIP` way
(there is none today: every test must run).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

import pytest

# Postgres fixtures (pg_server, database_url, empty_database_url) for every tier.
pytest_plugins = ["tests._postgres"]

_counts: Counter[str] = Counter()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome: str = report.outcome
        if report.when == "setup" and outcome == "failed":
            outcome = "error"
        _counts[outcome] += 1
    elif report.when == "teardown" and report.outcome == "failed":
        _counts["error"] += 1


def pytest_sessionfinish(session: pytest.Session, exitstatus: Any) -> None:
    path = os.environ.get("CORRAL_TIER_REPORT")
    if path:
        with open(path, "w") as fh:
            json.dump(dict(_counts), fh)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # No silent skips: a test marked skip/skipif fails collection with its reason.
    for item in items:
        for mark in item.iter_markers():
            if mark.name in {"skip", "skipif"}:
                raise pytest.UsageError(
                    f"{item.nodeid}: skip markers are not allowed; a tier that cannot run must fail"
                )

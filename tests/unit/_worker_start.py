"""The `corral worker` arguments of a real start that stops where the first
claim would begin: everything up to the connection runs (settings, handler
registry, runtime, psycopg), and the database's Unix socket does not exist,
so the worker exits with its connection error (no database, no network).
Used by the start-up tests (test_worker_start_imports, test_entry,
test_worker_launch)."""

from __future__ import annotations

from pathlib import Path


def start_until_connect(tmp_path: Path) -> list[str]:
    return [
        "worker",
        "--database-url",
        f"postgresql://corral@/corral?host={tmp_path / 'no-server'}",
        "--queues",
        "start",
        "--state-dir",
        str(tmp_path / "state"),
    ]


def bare_start_until_connect(tmp_path: Path) -> dict[str, str]:
    """The same start as a pod runs it, `corral worker` with no argument:
    the variables to add to a clean environment (no other CORRAL_*)."""
    return {
        "CORRAL_DATABASE_URL": f"postgresql://corral@/corral?host={tmp_path / 'no-server'}",
        "CORRAL_QUEUES": "start",
        "CORRAL_STATE_DIR": str(tmp_path / "state"),
    }

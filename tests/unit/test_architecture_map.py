"""ARCHITECTURE.md's module map names the modules a reader looks for and
once could not find there."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "module",
    [
        "operator/corral/durations.py",
        "operator/corral/queuenames.py",
        "operator/corral/worker/loopwatch.py",
        "operator/corral/queue/_connect.py",
        "operator/corral/queue/_sql.py",
    ],
)
def test_the_module_map_names_it(module: str) -> None:
    assert (ROOT / module).is_file()
    assert f"`{module}`" in (ROOT / "ARCHITECTURE.md").read_text(), module

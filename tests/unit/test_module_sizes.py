"""The worker runtime and the queue layer stay in parts small enough to read
at once (issue 14): every module under `corral/worker` and `corral/queue` is
under 450 lines. A module that grows past it is split where its parts meet
(as `worker/claims.py`, `completions.py`, `heartbeat.py`, `drain.py` were
split from the runtime), not trimmed to pass."""

from __future__ import annotations

from pathlib import Path

import corral

LIMIT = 450
PACKAGES = ("worker", "queue")


def test_every_worker_and_queue_module_is_under_the_limit() -> None:
    root = Path(corral.__file__).parent
    sizes = {
        str(path.relative_to(root)): len(path.read_text(encoding="utf-8").splitlines())
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
    }
    assert len(sizes) > 30  # the packages were found
    assert {name: n for name, n in sizes.items() if n >= LIMIT} == {}

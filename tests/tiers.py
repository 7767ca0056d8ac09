"""Runs the test tiers one pytest session each and prints a per-tier count.

`make test` calls `python -m tests.tiers unit integration browser e2e chaos`. Each tier runs
in its own pytest process so that a tier's servers (Postgres, the local control
plane) start and stop with it. A tier that runs no test counts as a failure:
every tier is required.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run_tier(tier: str, extra: list[str]) -> dict[str, int | float | str]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        started = time.monotonic()
        env = dict(os.environ, CORRAL_TIER_REPORT=str(report))
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", f"tests/{tier}", *extra],
            cwd=ROOT,
            env=env,
            check=False,
        )
        counts: dict[str, int | float | str] = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
        if report.exists():
            counts.update(json.loads(report.read_text()))
        counts["exit"] = proc.returncode
        counts["seconds"] = round(time.monotonic() - started, 1)
        counts["tier"] = tier
        return counts


def main(argv: list[str]) -> int:
    tiers = [a for a in argv if not a.startswith("-")]
    extra = [a for a in argv if a.startswith("-")]
    results = [
        _run_tier(t, extra) for t in tiers or ["unit", "integration", "browser", "e2e", "chaos"]
    ]
    print("\n== tests per tier ==")
    failed = 0
    for r in results:
        ran = int(r["passed"]) + int(r["failed"]) + int(r["error"])
        bad = r["exit"] != 0 or int(r["failed"]) or int(r["error"]) or ran == 0
        why = " (NO TESTS RAN: every tier is required)" if ran == 0 else ""
        print(
            f"{r['tier']:<12} passed={r['passed']} failed={r['failed']} errors={r['error']} "
            f"skipped={r['skipped']} in {r['seconds']}s exit={r['exit']}{why}"
        )
        failed += int(bool(bad))
    passed_total = sum(int(r["passed"]) for r in results)
    failed_total = sum(int(r["failed"]) + int(r["error"]) for r in results)
    print(f"tiers: {passed_total} passed, {failed_total} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

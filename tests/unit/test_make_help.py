"""`make help`: colour only on a terminal, and every description in one
column however long a target's name."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_make_help_piped_has_no_colour_and_one_column() -> None:
    make = shutil.which("make")
    assert make is not None
    out = subprocess.run(
        [make, "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True,
        check=True, env={"PATH": "/usr/bin:/bin"},
    ).stdout  # fmt: skip
    assert "\x1b" not in out, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) > 20, out
    columns = {re.match(r"  \S+ +", line).end() for line in lines}  # type: ignore[union-attr]
    assert len(columns) == 1, out
    assert any(line.split()[0] == "bench-ack-versions" for line in lines)

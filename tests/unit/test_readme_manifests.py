"""The WorkerPool the README shows is examples/workerpool.yaml (which the e2e
tier applies and runs jobs on), shortened but never different: every field
the README sets has the example's value."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _subset(shown: Any, full: Any, path: str = "") -> list[str]:
    if isinstance(shown, dict) and isinstance(full, dict):
        return [p for k, v in shown.items() for p in _subset(v, full.get(k), f"{path}.{k}")]
    return [] if shown == full else [f"{path}: README {shown!r}, example {full!r}"]


def test_the_readme_workerpool_is_the_example_one() -> None:
    blocks = re.findall(r"^```yaml\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    (shown,) = [d for d in map(yaml.safe_load, blocks) if d.get("kind") == "WorkerPool"]
    example = yaml.safe_load((ROOT / "examples" / "workerpool.yaml").read_text())
    assert _subset(shown, example) == []

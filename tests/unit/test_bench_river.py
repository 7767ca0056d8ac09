"""bench/_river.py: River's Go harness for `make bench-queue` (built from the
module proxy) fails loudly, naming what to install, when Go is missing or too
old; its pin and its result lines are what bench/queue.py relies on."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

_ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_river", _ROOT / "bench/_river.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


river = _load()


def _fake_go(bindir: Path, goversion: str) -> None:
    """A `go` on PATH that answers `go env GOVERSION` like an installed Go would."""
    bindir.mkdir(parents=True, exist_ok=True)
    go = bindir / "go"
    go.write_text(
        f'#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo {goversion} && exit 0\nexit 3\n'
    )
    go.chmod(0o755)


def test_without_go_the_harness_names_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(river.HarnessError, match=r"go not found on PATH.*install Go"):
        river.harness()


def test_a_go_older_than_the_pin_needs_is_refused_with_the_version_it_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_go(tmp_path, "go1.22.5")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(river.HarnessError, match=r"is go1\.22\.5.*needs Go >= 1\.26"):
        river.harness()


def test_bench_queue_stops_before_measuring_anything_when_go_is_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PATH"}
    env.update(PATH=str(tmp_path), PYTHONPATH=str(_ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "bench.queue", "--quick"],
        cwd=_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2, out.stderr
    assert "bench-queue: error: go not found on PATH" in out.stderr
    assert "Traceback" not in out.stderr
    assert "server:" not in out.stdout  # no PostgreSQL started, nothing measured


def test_the_go_mod_pins_the_river_version_the_report_names() -> None:
    go_mod = (_ROOT / "bench/river/go.mod").read_text()
    for module in (
        "github.com/riverqueue/river",
        "github.com/riverqueue/river/riverdriver/riverpgxv5",
    ):
        assert re.search(
            rf"^\s*{re.escape(module)} v{re.escape(river.RIVER_VERSION)}$", go_mod, re.M
        )
    go_sum = (_ROOT / "bench/river/go.sum").read_text()
    assert f"github.com/riverqueue/river v{river.RIVER_VERSION} h1:" in go_sum


def test_result_lines_parse_to_their_keys_and_a_missing_line_is_an_error() -> None:
    stdout = "some log\nriver-bench work: worked=50000 cpu_s=1.625\n"
    assert river.parse_result(stdout, "work") == {"worked": "50000", "cpu_s": "1.625"}
    with pytest.raises(river.HarnessError, match="printed no result line"):
        river.parse_result(stdout, "enqueue")

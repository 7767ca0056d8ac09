"""The kind path's make targets, where they cannot run: each stops at once with
a message naming what is missing and what to do, never half-way through. (The
targets themselves need Docker and kind, which this machine lacks; README
"With Docker: kind" says so.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = "corral-test-no-such-command"


def _make(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "-s", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("target", ["images", "kind-up", "kind-load", "kind-down"])
def test_a_target_that_needs_docker_says_so_when_there_is_none(target: str) -> None:
    result = _make(target, f"DOCKER={MISSING}")
    assert result.returncode != 0
    assert f"make {target}: '{MISSING}' is not on PATH" in result.stderr
    assert "container engine" in result.stderr


def test_a_docker_without_an_engine_is_named_as_such() -> None:
    result = _make("images", "DOCKER=false")  # `false info` fails like an engine that is down
    assert result.returncode != 0
    assert "its engine does not answer" in result.stderr


@pytest.mark.parametrize("target", ["kind-up", "kind-load", "kind-down"])
def test_a_target_that_needs_kind_says_where_to_get_it(target: str) -> None:
    result = _make(target, "DOCKER=true", f"KIND={MISSING}")
    assert result.returncode != 0
    assert f"make {target}: '{MISSING}' is not on PATH: install kind" in result.stderr


def test_deploy_without_a_kind_cluster_asks_for_make_kind_up(tmp_path: Path) -> None:
    result = _make("deploy", f"KIND_KUBECONFIG={tmp_path / 'none'}")
    assert result.returncode != 0
    assert "run 'make kind-up' first" in result.stderr


def test_deploy_without_helm_says_how_to_get_it(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = _make("deploy", f"KIND_KUBECONFIG={kubeconfig}", "KUBECTL=true", f"HELM={MISSING}")
    assert result.returncode != 0
    assert f"{MISSING} not found: install kubectl and helm, or run 'make cluster-bins'" in (
        result.stderr
    )

"""The kind path's make targets, where they cannot run: each stops at once with
a message naming what is missing and what to do, never half-way through. (The
targets themselves need Docker and kind, which this machine lacks; README
"With Docker: kind" says so.)"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

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


def test_deploy_gives_the_chart_the_worker_roles_url_and_the_example_pools_namespace(
    tmp_path: Path,
) -> None:
    # `make -n` prints the recipe without running it.
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    result = _make("-n", "deploy", f"KIND_KUBECONFIG={kubeconfig}", "KUBECTL=true", "HELM=helm")
    assert result.returncode == 0, result.stderr
    sets = dict(s.strip("'").split("=", 1) for s in re.findall(r"--set (\S+)", result.stdout))
    kind = ROOT / "examples" / "kind"
    secrets = {
        d["metadata"]["name"]: d["stringData"]
        for d in yaml.safe_load_all((kind / "postgres.yaml").read_text())
        if d and d["kind"] == "Secret"
    }
    operator = secrets[sets["database.secretName"]][sets["database.secretKey"]]
    workers = secrets[sets["workerDatabase.secretName"]]
    # A worker role's URL (migrate.yaml creates the role), never the operator's.
    assert workers[sets["workerDatabase.secretKey"]] != operator
    assert workers[sets["workerDatabase.secretKey"]].startswith(f"postgresql://{workers['role']}:")
    assert sets["workerDatabase.secretName"] in (kind / "migrate.yaml").read_text()
    # The chart grants Secrets and pods only where pools live: the example's.
    pool = yaml.safe_load((ROOT / "examples" / "workerpool.yaml").read_text())
    assert pool["metadata"]["namespace"] in sets["rbac.poolNamespaces"].strip("{}").split(",")

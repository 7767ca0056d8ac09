"""tools/k8s/gen_gomod.py: the wrapper go.mod that builds Kubernetes from the module proxy."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

_ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_gomod", _ROOT / "tools/k8s/gen_gomod.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the class is created.
    sys.modules["gen_gomod"] = module
    spec.loader.exec_module(module)
    return module


gen = _load()

SERVED = """\
// This is a generated file. Do not edit directly.

module k8s.io/kubernetes

go 1.26.0

godebug default=go1.26

require (
	github.com/spf13/cobra v1.10.2
	k8s.io/api v0.0.0
	k8s.io/client-go v0.0.0
)

require k8s.io/kubectl v0.0.0 // indirect

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go // the client
	k8s.io/kubectl => ./staging/src/k8s.io/kubectl
)

replace github.com/example/forked => github.com/example/fork v1.2.3
"""


def test_every_staging_replace_points_at_the_published_module_of_the_same_release() -> None:
    replaces = gen.wrapper_replaces(SERVED, "1.36.3")
    rendered = [r.render() for r in replaces]
    assert rendered == [
        "k8s.io/api => k8s.io/api v0.36.3",
        "k8s.io/client-go => k8s.io/client-go v0.36.3",
        "k8s.io/kubectl => k8s.io/kubectl v0.36.3",
        "github.com/example/forked => github.com/example/fork v1.2.3",
    ]


def test_the_wrapper_requires_kubernetes_keeps_go_and_godebug_and_lists_the_tools() -> None:
    text = gen.render_wrapper(SERVED, "v1.36.3", ["k8s.io/kubernetes/cmd/kubectl"])
    lines = text.splitlines()
    assert "go 1.26.0" in lines
    assert "godebug default=go1.26" in lines
    assert "require k8s.io/kubernetes v1.36.3" in lines
    assert "\tk8s.io/kubernetes/cmd/kubectl" in lines
    assert lines.count("replace (") == 1
    assert sum(1 for line in lines if "=> k8s.io/" in line) == 3


def test_the_generated_go_mod_in_the_repo_covers_every_staging_module() -> None:
    # tools/k8s/build.sh regenerates this file; if it is checked in, it must be whole.
    checked_in = _ROOT / "tools/k8s/kubernetes/go.mod"
    text = checked_in.read_text()
    staging = [r for r in gen.parse_replaces(text) if r.old.startswith("k8s.io/")]
    assert len(staging) >= 30
    assert all(r.new == r.old and r.version == staging[0].version for r in staging)


@pytest.mark.parametrize(
    ("k8s", "staging"),
    [("1.36.3", "v0.36.3"), ("v1.30.0", "v0.30.0"), ("1.37.0-rc.1", "v0.37.0-rc.1")],
)
def test_staging_modules_are_versioned_v0_minor_patch(k8s: str, staging: str) -> None:
    assert gen.staging_version(k8s) == staging


@pytest.mark.parametrize("bad", ["2.0.0", "1.36", "latest"])
def test_an_unusable_kubernetes_version_is_rejected_with_its_value(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        gen.staging_version(bad)


def test_a_local_replace_outside_staging_is_refused_rather_than_silently_dropped() -> None:
    served = SERVED + "replace example.com/x => ../x\n"
    with pytest.raises(ValueError, match=re.escape("example.com/x")):
        gen.wrapper_replaces(served, "1.36.3")


def test_a_go_mod_without_staging_replaces_is_not_mistaken_for_kubernetes() -> None:
    with pytest.raises(ValueError, match="no staging replace"):
        gen.wrapper_replaces("module example.com/x\n\ngo 1.26\n", "1.36.3")

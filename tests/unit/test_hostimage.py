"""Host images: a source change gives a new image, and only paths every user
can reach count as runnable by a pod's non-root user."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from corral_local import hostimage


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "operator" / "corral").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[project]\nname='corral'\n")
    (tmp_path / "operator" / "corral" / "a.py").write_text("x = 1\n")
    return tmp_path


def test_changing_a_source_file_changes_the_image_digest(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    before = hostimage._digest(tree, "/usr/bin/python3")
    (tree / "operator" / "corral" / "a.py").write_text("x = 2\n")
    assert hostimage._digest(tree, "/usr/bin/python3") != before


def test_bytecode_caches_do_not_change_the_image_digest(tmp_path: Path) -> None:
    tree = _tree(tmp_path)
    before = hostimage._digest(tree, "/usr/bin/python3")
    cache = tree / "operator" / "corral" / "__pycache__"
    cache.mkdir()
    (cache / "a.cpython-311.pyc").write_bytes(b"\0")
    assert hostimage._digest(tree, "/usr/bin/python3") == before


def test_a_program_behind_a_private_directory_is_not_runnable_by_others(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir()
    program = private / "python"
    program.write_text("#!/bin/sh\n")
    program.chmod(0o755)
    os.chmod(tmp_path, 0o755)
    private.chmod(0o700)
    reachable = hostimage._world_executable(program)
    private.chmod(0o755)
    assert not reachable
    # every ancestor of tmp_path must also be open for the positive case
    expected = all(os.stat(p).st_mode & 0o001 for p in [*program.resolve().parents])
    assert hostimage._world_executable(program) == bool(expected)


def test_the_checkout_corral_runs_from_is_found() -> None:
    tree = hostimage.source_tree()
    assert tree is not None
    assert (tree / "localplatform" / "corral_local" / "hostimage.py").exists()
    assert (tree / "operator" / "corral").is_dir()


def test_a_source_change_keeps_the_dependency_layer_and_a_pin_change_replaces_it(
    tmp_path: Path,
) -> None:
    tree = _tree(tmp_path)
    deps = hostimage._deps_digest(tree, "/usr/bin/python3")
    (tree / "operator" / "corral" / "x.py").write_text("changed = True\n")
    assert hostimage._deps_digest(tree, "/usr/bin/python3") == deps
    (tree / "constraints.txt").write_text("kopf==9.9\n")
    assert hostimage._deps_digest(tree, "/usr/bin/python3") != deps


def _layer(root: Path, name: str, age_s: float) -> Path:
    layer = root / name
    (layer / "lib" / "python3.11" / "site-packages").mkdir(parents=True)
    (layer / ".complete").write_text(f"{name}\n")
    stamp = 1_000_000_000 - age_s
    os.utime(layer, (stamp, stamp))
    return layer


def _image(root: Path, name: str, deps: Path, age_s: float) -> Path:
    image = _layer(root, name, age_s)
    site = image / "lib" / "python3.11" / "site-packages"
    (site / "_corral_deps.pth").write_text(f"{deps / 'lib' / 'python3.11' / 'site-packages'}\n")
    os.utime(image, (1_000_000_000 - age_s,) * 2)
    return image


def test_an_image_whose_dependency_layer_is_gone_is_not_reused(tmp_path: Path) -> None:
    deps = _layer(tmp_path, "deps-a", 10)
    image = _image(tmp_path, "corral-a", deps, 5)
    assert hostimage._runnable(image)
    shutil.rmtree(deps)
    assert not hostimage._runnable(image)


def test_pruning_keeps_every_dependency_layer_a_kept_image_uses(tmp_path: Path) -> None:
    # Images for three pin sets (three branches), newest first: building a
    # fourth must not take a layer from under an image it keeps.
    old_deps = _layer(tmp_path, "deps-old", 400)
    mid_deps = _layer(tmp_path, "deps-mid", 300)
    orphan = _layer(tmp_path, "deps-orphan", 350)
    new_deps = _layer(tmp_path, "deps-new", 10)
    kept_old = _image(tmp_path, "corral-1", old_deps, 50)
    kept_mid = _image(tmp_path, "corral-2", mid_deps, 60)
    dropped = _image(tmp_path, "corral-3", orphan, 70)
    current = _image(tmp_path, "corral-4", new_deps, 0)
    hostimage._prune(tmp_path, keep=current, deps=new_deps)
    assert {p.name for p in tmp_path.iterdir()} == {
        "corral-1", "corral-2", "corral-4", "deps-old", "deps-mid", "deps-new",
    }  # fmt: skip
    assert all(hostimage._runnable(i) for i in (kept_old, kept_mid, current))
    assert not dropped.exists() and not orphan.exists()


def test_pruning_never_removes_an_image_a_running_node_agent_holds(tmp_path: Path) -> None:
    # Another checkout's builds make this agent's image the oldest of five:
    # it stays, with its dependency layer, while the agent holds it.
    deps = _layer(tmp_path, "deps-a", 500)
    used = _image(tmp_path, "corral-used", deps, 400)
    for n in range(3):
        _image(tmp_path, f"corral-{n}", deps, 100 - n)
    current = _image(tmp_path, "corral-current", deps, 0)
    other_deps = _layer(tmp_path, "deps-b", 0)
    held = hostimage.hold(used)
    os.utime(used, (1_000_000_000 - 400,) * 2)  # held since long before those builds
    try:
        hostimage._prune(tmp_path, keep=current, deps=other_deps)
        assert hostimage._runnable(used)
        assert not (tmp_path / "corral-0").exists()  # the oldest of the unheld ones went
    finally:
        held.close()
    hostimage._prune(tmp_path, keep=current, deps=other_deps)
    assert not used.exists()  # released: an old image like any other


def test_reusing_an_image_makes_it_the_newest(tmp_path: Path) -> None:
    # so that a build elsewhere prunes older ones first
    deps = _layer(tmp_path, "deps-a", 500)
    image = _image(tmp_path, "corral-x", deps, 400)
    hostimage._touch(image)
    assert image.stat().st_mtime > 1_000_000_000

"""corral.distinfo reads what importlib.metadata would answer, or leaves the
question to it: psycopg's versions at a worker's start, and whether any
distribution declares `corral.handlers` entry points."""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import psycopg
import pytest

from corral import distinfo
from corral.worker.handlers import HandlerRegistry


def _dist(folder: Path, name: str, version: str, entry_points: str | None = None) -> Path:
    info = folder / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA description.\n"
    )
    if entry_points is not None:
        (info / "entry_points.txt").write_text(entry_points)
    return info


def _package(folder: Path, name: str) -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "__init__.py").write_text("")


@pytest.mark.parametrize(
    ("package", "distribution"),
    [("psycopg", "psycopg"), ("psycopg_binary", "psycopg-binary"), ("click", "click")],
)
def test_the_installed_version_is_the_one_importlib_metadata_reads(
    package: str, distribution: str
) -> None:
    assert distinfo.installed_version(package, distribution) == importlib.metadata.version(
        distribution
    )


def test_psycopgs_version_modules_define_nothing_but_the_version() -> None:
    """What the served modules hold must be all the real ones define: a
    psycopg release that adds a name there has to be looked at here first."""
    for module in distinfo.PSYCOPG_VERSION_MODULES:
        package, _, _ = module.partition(".")
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.origin is not None
        tree = ast.parse((Path(spec.origin).parent / "version.py").read_text())
        assigned = {
            target.id
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        assert assigned == {"__version__"}, (module, assigned)


def test_psycopg_imports_with_its_versions_but_without_importlib_metadata() -> None:
    script = (
        "import sys\n"
        "from corral import distinfo\n"
        "assert distinfo.serve_psycopg_versions()\n"
        "import psycopg, psycopg_binary\n"
        "assert 'importlib.metadata' not in sys.modules, 'importlib.metadata was imported'\n"
        "assert not any(isinstance(f, distinfo._VersionModules) for f in sys.meta_path)\n"
        "print(psycopg.__version__, psycopg_binary.__version__, psycopg.version.__version__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    expected = importlib.metadata.version("psycopg")
    assert done.stdout.split() == [
        expected,
        importlib.metadata.version("psycopg-binary"),
        expected,
    ]


def test_nothing_is_served_once_psycopg_is_imported() -> None:
    assert psycopg.__version__
    before = list(sys.meta_path)
    assert distinfo.serve_psycopg_versions() is False
    assert sys.meta_path == before


def test_a_version_that_is_not_plain_to_read_is_left_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    _package(tmp_path, "pkg")
    assert distinfo.installed_version("pkg", "pkg") is None  # no dist-info
    info = _dist(tmp_path, "pkg", "1.2.3")
    assert distinfo.installed_version("pkg", "pkg") == "1.2.3"
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\n\nVersion: 9\n")
    assert distinfo.installed_version("pkg", "pkg") is None  # not among the headers
    _dist(tmp_path, "pkg", "1.2.4")
    assert distinfo.installed_version("pkg", "pkg") is None  # two side by side


def test_the_first_folder_holding_the_package_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _package(first, "my_pkg")
    _dist(first, "My.Pkg", "2.0")  # a dist-info name as wheels normalise it
    _package(second, "my_pkg")
    _dist(second, "my_pkg", "1.0")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "missing"), str(first), str(second)])
    assert distinfo.installed_version("my_pkg", "my-pkg") == "2.0"


def _only(monkeypatch: pytest.MonkeyPatch, *folders: Path) -> None:
    monkeypatch.setattr(sys, "path", [str(f) for f in folders])


def test_a_group_is_declared_only_where_an_entry_points_file_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _only(monkeypatch, tmp_path)
    _dist(tmp_path, "plain", "1.0")
    _dist(tmp_path, "tool", "1.0", "[console_scripts]\ntool = tool:main\n")
    (tmp_path / "old.egg-info").write_text("Name: old\n")  # an egg-info file: no entry points
    assert distinfo.may_declare("corral.handlers") is False
    assert distinfo.may_declare("console_scripts") is True
    _dist(tmp_path, "plugin", "1.0", "[corral.handlers]\nmine = json:dumps\n")
    assert distinfo.may_declare("corral.handlers") is True


def test_a_zip_an_egg_or_another_finder_leaves_the_answer_to_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "deps.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("x.py", "")
    _only(monkeypatch, archive)
    assert distinfo.may_declare("corral.handlers") is True
    egg = tmp_path / "thing-1.0.egg"
    egg.mkdir()
    _only(monkeypatch, egg)
    assert distinfo.may_declare("corral.handlers") is True

    class Finder:
        def find_spec(self, *args: object) -> None:
            return None

        def find_distributions(self, *args: object) -> list[object]:
            return []

    _only(monkeypatch, tmp_path / "empty")
    assert distinfo.may_declare("corral.handlers") is False
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    assert distinfo.may_declare("corral.handlers") is True


def test_an_installed_plugin_registers_through_importlib_metadata(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real lookup, end to end: a distribution on sys.path declaring a
    `corral.handlers` entry point registers its handler."""
    _dist(tmp_path, "corral_plugin", "0.1", "[corral.handlers]\njson-dump = json:dumps\n")
    monkeypatch.setattr(sys, "path", [str(tmp_path), *sys.path])
    assert HandlerRegistry().load_entry_points() == ["json-dump"]


def test_this_environment_agrees_with_importlib_metadata() -> None:
    """On the real sys.path: a group no entry_points.txt names has no entry
    points, and the groups installed packages declare are found."""
    for group in ("corral.handlers", "console_scripts", "pytest11", "no.such.group"):
        if not distinfo.may_declare(group):
            assert list(importlib.metadata.entry_points(group=group)) == [], group
    assert distinfo.may_declare("console_scripts") is True

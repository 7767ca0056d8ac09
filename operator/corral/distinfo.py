"""What a worker's start reads of the installed distributions, without
importing importlib.metadata.

Importing importlib.metadata (email, zipfile and csv come with it) takes
about 20 ms here, on the way to the first claim of every scaled-up worker
(`make bench-start`), and two things would import it there:

- psycopg and psycopg-binary look their own versions up with it when they
  are imported (their `version` modules);
- the handler registry asks it for the `corral.handlers` entry points.

`serve_psycopg_versions()` (called by the console script, `corral.entry`,
before anything imports psycopg) lets the import system build those two
`version` modules from the `Version:` of the METADATA file in the
`.dist-info` folder beside each package, so psycopg's own lookups never run.
`may_declare(group)` reads the `entry_points.txt` files on sys.path as plain
text and says whether any distribution could declare entry points of
`group`; `entry_points(group)` asks importlib.metadata only then, so a
worker without plugins never imports it.

Both are cautious: what they cannot read plainly (a zip or an egg on
sys.path, a finder of distributions other than the standard one, two
versions side by side, a missing file) they leave to importlib.metadata,
which then does what it always did. `tests/unit/test_distinfo.py` checks
them against it. A leaf: standard library only.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec, PathFinder
from types import ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from importlib.abc import Loader
    from importlib.metadata import EntryPoint

__all__ = ["entry_points", "installed_version", "may_declare", "serve_psycopg_versions"]

# The modules that call importlib.metadata.version() when imported, by the
# distribution they name. Each defines `__version__` and nothing else
# (test_distinfo checks the installed files, so an upgrade that adds a name
# fails there rather than in a worker).
PSYCOPG_VERSION_MODULES = {"psycopg.version": "psycopg", "psycopg_binary.version": "psycopg_binary"}


def _path_entries() -> Iterator[str]:
    for entry in sys.path:
        yield entry or os.curdir


def _dist_info(folder: str, distribution: str) -> str | None:
    """The one `<distribution>-<version>.dist-info` folder in `folder`
    (names compared as wheels normalise them), else None."""
    wanted = distribution.lower().replace("-", "_").replace(".", "_") + "-"
    try:
        names = [
            name
            for name in os.listdir(folder)
            if name.endswith(".dist-info") and name.lower().replace(".", "_").startswith(wanted)
        ]
    except OSError:
        return None
    return os.path.join(folder, names[0]) if len(names) == 1 else None


def installed_version(package: str, distribution: str) -> str | None:
    """The version in the METADATA of `distribution`'s dist-info folder in the
    first sys.path folder holding the package `package`; None when that is
    not plain to see (importlib.metadata should be asked instead)."""
    for folder in _path_entries():
        if not os.path.isfile(os.path.join(folder, package, "__init__.py")):
            continue
        info = _dist_info(folder, distribution)
        if info is None:
            return None
        try:
            with open(os.path.join(info, "METADATA"), encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        return None  # the headers ended without a Version
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "version":
                        return value.strip() or None
        except OSError:
            return None
        return None
    return None


class _VersionModules:
    """Finder and loader (sys.meta_path's protocols; importlib.abc would cost
    more to import than this saves) of the `version` modules named in
    `versions` (module -> version), once each; any other name is left to
    the next finder."""

    def __init__(self, versions: dict[str, str]) -> None:
        self.versions = versions

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname not in self.versions:
            return None
        return ModuleSpec(fullname, cast("Loader", self))

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None  # the default module object

    def exec_module(self, module: ModuleType) -> None:
        module.__version__ = self.versions.pop(module.__name__)  # type: ignore[attr-defined]
        if not self.versions:
            sys.meta_path.remove(self)


def serve_psycopg_versions() -> bool:
    """Have psycopg's and psycopg-binary's `version` modules built from their
    METADATA when psycopg is imported (True), or leave them be (False: psycopg
    was imported already, or a version is not plain to read)."""
    if "psycopg" in sys.modules or any(isinstance(f, _VersionModules) for f in sys.meta_path):
        return False
    versions = {}
    for module, distribution in PSYCOPG_VERSION_MODULES.items():
        version = installed_version(module.partition(".")[0], distribution)
        if version is None:
            return False
        versions[module] = version
    sys.meta_path.insert(0, _VersionModules(versions))
    return True


def _only_standard_finders() -> bool:
    """Whether importlib.metadata would look for distributions on sys.path
    only (no finder on sys.meta_path but the path finder lists any)."""
    return all(
        finder is PathFinder or not hasattr(finder, "find_distributions")
        for finder in sys.meta_path
    )


def may_declare(group: str) -> bool:
    """False only when no distribution on sys.path has an entry_points.txt
    that mentions `group`: importlib.metadata would find no entry point of
    it. True whenever that cannot be told from plain folders and files."""
    if not _only_standard_finders():
        return True
    for folder in _path_entries():
        if folder.lower().endswith(".egg") or os.path.isfile(folder):
            return True  # an egg or a zip: importlib.metadata reads those itself
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # a missing folder holds no distribution
        for entry in entries:
            if not entry.name.lower().endswith((".dist-info", ".egg-info")):
                continue
            try:
                with open(os.path.join(entry.path, "entry_points.txt"), encoding="utf-8") as fh:
                    if group in fh.read():
                        return True
            except (FileNotFoundError, NotADirectoryError):
                continue  # declares no entry points (an egg-info file declares none either)
            except OSError:
                return True
    return False


def entry_points(group: str) -> list[EntryPoint]:
    """The entry points of `group`, as importlib.metadata lists them; it is
    not even imported when `may_declare(group)` is False."""
    if not may_declare(group):
        return []
    from importlib.metadata import entry_points as listed

    return list(listed(group=group))

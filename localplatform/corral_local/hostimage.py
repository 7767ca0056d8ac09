"""Host "images": corral installed into a virtualenv any pod user can run.

The node agent has no container runtime, so an image is a host command
(`nodeagent/images.yaml`). A pod that runs as a non-root user (every worker
pod: the restricted Pod Security Standard demands it) must be able to execute
that command — but the developer's virtualenv usually sits behind a directory
only root may enter (pyenv under /root, or a checkout in a home directory).

So, like `docker build`, this module snapshots the source tree into a
world-readable virtualenv made from the system's Python, keyed by a hash of the
sources: a rebuilt tree gives a new image, an unchanged one is reused in well
under a second. Called by the node agent at start-up when it runs as root.

Two layers, as a Dockerfile would have them: the dependencies (kopf,
kubernetes, pydantic, psycopg...) in their own virtualenv keyed by the
pinned versions only, built once (a minute or more); and per source tree a
small virtualenv holding just corral, installed without dependencies, whose
site-packages points at the dependency layer through a `.pth` file: a few
seconds per edit instead of a full install.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

__all__ = ["HostImageError", "default_root", "ensure_image", "hold", "source_tree"]

# Images are kept under a directory every user can traverse when we are root;
# otherwise (a developer without root) pods run as the developer anyway. Not
# under /var/lib/corral: worker pods mount their state emptyDir there, which
# would hide the image from them. CORRAL_HOST_IMAGE_ROOT overrides it.
_ROOT_SYSTEM = Path("/opt/corral/images")
_KEEP = 3  # images kept after a build; older ones are removed, unless held (see hold)
_IN_USE = ".in-use"  # an image's lock file: shared-locked by each process using it
# This package's folder in the checkout. The image holds it beside the product
# for the test images of nodeagent/images.yaml (`corral-test/httpserver` runs
# `corral_local.nodeagent.testserver`); what worker and operator pods run is
# the product alone (`corral`), as in worker-image/Dockerfile.
_PLATFORM = "localplatform"


class HostImageError(RuntimeError):
    """The image could not be built; the message says which step failed and why."""


def default_root() -> Path:
    if os.environ.get("CORRAL_HOST_IMAGE_ROOT"):
        return Path(os.environ["CORRAL_HOST_IMAGE_ROOT"])
    if os.geteuid() == 0:
        return _ROOT_SYSTEM
    cache = Path(os.environ.get("CORRAL_CACHE", Path.home() / ".cache" / "corral"))
    return cache / "images"


def source_tree() -> Path | None:
    """The checkout corral and this package are installed from (editable
    installs), or None."""
    here = Path(__file__).resolve()
    root = here.parents[2]  # localplatform/corral_local/hostimage.py -> repo
    if (root / "pyproject.toml").exists() and (root / "operator" / "corral").is_dir():
        return root
    return None


def _world_executable(path: Path) -> bool:
    """True when every directory on the way and the file itself allow others in."""
    try:
        real = path.resolve(strict=True)
    except OSError:
        return False
    for part in [*reversed(real.parents), real]:
        mode = part.stat().st_mode
        if not mode & stat.S_IXOTH:
            return False
    return True


def _base_python() -> str:
    """A Python >= 3.11 that any user may execute: the system's, else our own."""
    candidates = [os.environ.get("CORRAL_IMAGE_BASE_PYTHON", "")]
    candidates += [f"/usr/bin/python3.{minor}" for minor in range(14, 10, -1)]
    candidates += ["/usr/bin/python3", sys.executable]
    for candidate in candidates:
        if candidate and _world_executable(Path(candidate)):
            return candidate
    raise HostImageError(
        "no Python >= 3.11 that a non-root pod user can execute was found "
        "(tried /usr/bin/python3.X and this interpreter); install Debian's python3 "
        "or set CORRAL_IMAGE_BASE_PYTHON"
    )


def _distributions(tree: Path) -> list[Path]:
    """The source folders installed into an image: the product, and this package."""
    return [tree] + ([tree / _PLATFORM] if (tree / _PLATFORM / "pyproject.toml").exists() else [])


def _deps_digest(tree: Path, base_python: str) -> str:
    """What the dependency layer depends on: the interpreter and the pins."""
    h = hashlib.sha256(base_python.encode())
    for path in [tree / "constraints.txt", *(d / "pyproject.toml" for d in _distributions(tree))]:
        if path.exists():
            h.update(str(path.relative_to(tree)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _digest(tree: Path, base_python: str) -> str:
    h = hashlib.sha256(_deps_digest(tree, base_python).encode())
    files: list[Path] = []
    for package in (tree / "operator" / "corral", tree / _PLATFORM / "corral_local"):
        files += sorted(
            p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        )
    for path in files:
        h.update(str(path.relative_to(tree)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def _run(argv: list[str], what: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise HostImageError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def _pip(venv: Path, *args: str) -> list[str]:
    return [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args]


def _site_packages(venv: Path) -> Path:
    (found,) = (venv / "lib").glob("python3.*/site-packages")
    return found


def _publish(building: Path, target: Path) -> None:
    """Make `building` readable by every pod user and move it to `target`."""
    _run(["chmod", "-R", "a+rX", str(building)], "making the image readable")
    (building / ".complete").write_text(f"{target.name}\n")
    try:
        building.rename(target)
    except OSError:
        if not (target / ".complete").exists():  # nobody else won the race
            raise
        shutil.rmtree(building, ignore_errors=True)


def _ensure_deps(tree: Path, root: Path, base: str, say: Callable[[str], None]) -> Path:
    """The dependency layer: every pinned dependency, no corral."""
    target = root / f"deps-{_deps_digest(tree, base)}"
    if (target / ".complete").exists():
        return target
    building = root / f".{target.name}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    started = time.monotonic()
    constraints = tree / "constraints.txt"  # the versions CI passed with
    say(f"building the dependency layer {target.name} with {base} (once per pin set)")
    try:
        _run([base, "-m", "venv", str(building)], "creating the dependency layer")
        _run(
            _pip(
                building, "install", "--quiet",
                *(["-c", str(constraints)] if constraints.exists() else []),
                "setuptools>=77", "wheel", *(str(d) for d in _distributions(tree)),
            ),
            "installing the dependencies",
        )  # fmt: skip
        # The sources come with each image; only their dependencies stay here.
        _run(
            _pip(building, "uninstall", "--quiet", "--yes", "corral", "corral-localplatform"),
            "keeping corral out of the dependency layer",
        )
        _publish(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    say(f"dependency layer {target.name} ready in {time.monotonic() - started:.0f}s")
    return target


def ensure_image(
    tree: Path | None = None,
    root: Path | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> Path:
    """The virtualenv holding corral as built from `tree`; built when missing.

    Returns the virtualenv's directory; its `bin/` holds `python` and `corral`.
    """
    tree = tree or source_tree()
    if tree is None:
        raise HostImageError("corral is not installed from a source checkout; nothing to build")
    root = root or default_root()
    base = _base_python()
    target = root / f"corral-{_digest(tree, base)}"
    if _runnable(target):
        _touch(target)  # the newest again: a build elsewhere prunes older ones first
        return target
    if (target / ".complete").exists():
        # Its dependency layer is gone (pruned by a build for another pin set,
        # or removed by hand): every pod would die on its first import.
        say(f"host image {target.name} lost its dependency layer; building it again")
        shutil.rmtree(target, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o755)
    deps = _ensure_deps(tree, root, base, say)
    building = root / f".{target.name}.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    started = time.monotonic()
    say(f"building host image {target.name} from {tree} on {deps.name}")
    try:
        # No pip or setuptools of its own: the dependency layer's (pip, and the
        # setuptools the build backend needs) come through the .pth file.
        _run(
            [base, "-m", "venv", "--without-pip", str(building)], "creating the image's virtualenv"
        )
        # The dependency layer sits after the image's own site-packages on sys.path.
        (_site_packages(building) / "_corral_deps.pth").write_text(f"{_site_packages(deps)}\n")
        _run(
            _pip(
                building, "install", "--quiet", "--no-deps", "--no-build-isolation",
                *(str(d) for d in _distributions(tree)),
            ),
            "installing corral into the image",
        )  # fmt: skip
        # Rewrite the scripts' shebangs to the final path before moving in place.
        for script in (building / "bin").iterdir():
            if script.is_file() and not script.is_symlink():
                data = script.read_bytes()
                if data.startswith(b"#!") and str(building).encode() in data[:400]:
                    script.write_bytes(data.replace(str(building).encode(), str(target).encode()))
        _publish(building, target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    say(f"host image {target.name} ready in {time.monotonic() - started:.0f}s")
    _prune(root, keep=target, deps=deps)
    return target


def _deps_of(image: Path) -> Path | None:
    """The dependency layer `image`'s `.pth` file puts on its path, if any."""
    for pth in (image / "lib").glob("python3.*/site-packages/_corral_deps.pth"):
        with contextlib.suppress(OSError):
            # <deps>/lib/python3.X/site-packages
            return Path(pth.read_text().strip()).parents[2]
    return None


def _runnable(image: Path) -> bool:
    """A finished image whose dependency layer is still there."""
    if not (image / ".complete").exists():
        return False
    deps = _deps_of(image)
    return deps is not None and (deps / ".complete").exists()


def hold(image: Path) -> IO[bytes]:
    """Mark `image` in use until the returned file is closed (or the process
    dies): a shared lock on its lock file, which no build prunes from under it.

    The images' folder is shared by every checkout on the machine, so without
    it another checkout's build could remove the image a running node agent's
    pods execute. The node agent holds its image, and `make dev` the one it
    hands the agent.
    """
    lock = open(image / _IN_USE, "ab")  # noqa: SIM115 - held open on purpose
    with contextlib.suppress(OSError):
        os.chmod(lock.name, 0o644)
    fcntl.flock(lock.fileno(), fcntl.LOCK_SH)
    return lock


def _busy(image: Path) -> bool:
    """Someone holds `image` (see hold); images from before hold() have no lock file."""
    try:
        fd = os.open(image / _IN_USE, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (and with it the probe's lock)
    return False


def _touch(image: Path) -> None:
    with contextlib.suppress(OSError):
        os.utime(image)


def _prune(root: Path, keep: Path, deps: Path) -> None:
    """Keep the newest images, every image some process holds (see hold), and
    every dependency layer one of them uses (plus the newest other one): an
    image kept without its layer would be reused by the next node agent and its
    pods would fail to import."""

    def others(prefix: str, kept: Path) -> list[Path]:
        return sorted(
            (p for p in root.glob(f"{prefix}*") if p.is_dir() and p != kept),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )

    images = others("corral-", keep)
    busy = [old for old in images[_KEEP - 1 :] if _busy(old)]
    for old in images[_KEEP - 1 :]:
        if old not in busy:
            shutil.rmtree(old, ignore_errors=True)
    in_use = {_deps_of(image) for image in [keep, *images[: _KEEP - 1], *busy]}
    for index, layer in enumerate(others("deps-", deps)):
        if index >= 1 and layer not in in_use:
            shutil.rmtree(layer, ignore_errors=True)

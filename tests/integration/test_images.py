"""The images' virtualenv, built here the way worker-image/Dockerfile's build
stage builds it (its WORKDIR, COPY and RUN lines, replayed in a temporary
directory with /opt/corral moved there), and the images' entry points run
from it: ENTRYPOINT + CMD of each target, with `--help`.

Needs the package registry the way `docker build` does (pip's cache makes a
second run quick); no Docker. What can only be read from the file (user,
labels, base pin) is in tests/unit/test_images.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._dockerfile import ROOT, parse

pytestmark = pytest.mark.slow

VENV = "/opt/corral"  # where the build stage puts the virtualenv


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Replay the build stage: WORKDIR, COPY from the repository, ENV, RUN."""
    dockerfile = parse()
    build = dockerfile.stage("build")
    top = tmp_path_factory.mktemp("image")
    venv = top / "opt-corral"
    workdir = top / "root"
    # `python` is a Python 3.11+, as in the base image.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    for instruction in build.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = top / "root" / instruction.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            for word in instruction.words():
                key, _, value = word.partition("=")
                env[key] = value
        elif instruction.keyword == "COPY":
            # Docker's rules: a directory's contents go to the destination; a
            # file goes into a destination ending in "/", else becomes it.
            *sources, dest = instruction.words()
            target = workdir / dest
            for source in sources:
                origin = ROOT / source
                if origin.is_dir():
                    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
                    shutil.copytree(origin, target, ignore=skip, dirs_exist_ok=True)
                elif dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, target / origin.name)
                else:
                    shutil.copy2(origin, target)
        elif instruction.keyword == "RUN":
            command = instruction.args.replace(VENV, str(venv))
            result = subprocess.run(
                ["/bin/sh", "-c", command], cwd=workdir, env=env,
                capture_output=True, text=True, timeout=900, check=False,
            )  # fmt: skip
            assert result.returncode == 0, f"RUN {command}\n{result.stdout}\n{result.stderr}"
        else:
            raise AssertionError(f"the build stage gained a {instruction.keyword}: replay it here")
    assert (venv / "bin" / "corral").exists()
    return venv


def _run_image(venv: Path, target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The target's ENTRYPOINT + CMD + extra, with the image's ENV."""
    dockerfile = parse()
    entrypoint, cmd = (
        dockerfile.effective(target, "ENTRYPOINT"),
        dockerfile.effective(target, "CMD"),
    )
    assert entrypoint is not None and cmd is not None
    image_env = {
        key: value.replace(VENV, str(venv)).replace("$PATH", "/usr/bin:/bin")
        for key, value in dockerfile.env(target).items()
    }
    image_env["CORRAL_STATE_DIR"] = str(venv.parent / "state")
    return subprocess.run(
        [*entrypoint.words(), *cmd.words(), *extra],
        env={"HOME": str(venv.parent), **image_env},
        cwd=venv.parent, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("target", "usage", "option"),
    [
        ("worker", "Usage: corral worker", "--handlers"),
        ("operator", "Usage: corral operator", "--http-port"),
    ],
)
def test_each_images_entry_point_runs_from_the_virtualenv_the_dockerfile_builds(
    image_venv: Path, target: str, usage: str, option: str
) -> None:
    result = _run_image(image_venv, target, "--help")
    assert result.returncode == 0, result.stderr
    assert usage in result.stdout
    assert option in result.stdout


def test_the_images_virtualenv_holds_corral_and_not_the_dev_tools(image_venv: Path) -> None:
    result = subprocess.run(
        [str(image_venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    installed = {line.split("==")[0].lower().replace("_", "-") for line in result.stdout.split()}
    assert {"corral", "kopf", "psycopg", "psycopg-binary", "prometheus-client"} <= installed
    assert installed.isdisjoint({"pytest", "ruff", "mypy", "cryptography"})

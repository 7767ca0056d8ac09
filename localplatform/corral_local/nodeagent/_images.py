"""Image -> host command mapping (the node agent's stand-in for image pulls).

Loaded once by `_agent` from the packaged `images.yaml` plus an optional user
file (`--images`, whose entries are tried first); `_pod` asks `resolve` for each
container and reports ErrImagePull when nothing matches.
"""

from __future__ import annotations

import fnmatch
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_FILE = Path(__file__).with_name("images.yaml")


@dataclass(frozen=True)
class ImageCommand:
    match: str
    entrypoint: list[str]
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    working_dir: str = "/"


def normalise(image: str) -> str:
    """Drop the registry host and 'library/' of Docker Hub; add ':latest' when untagged."""
    name = image.split("@", 1)[0]
    first, _, rest = name.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        name = rest
    if name.startswith("library/") and name.count("/") == 1:
        name = name[len("library/") :]
    if ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name


def image_python() -> str:
    """The Python that `{python}` and `{bin}` stand for.

    `CORRAL_IMAGE_PYTHON` (set by the agent to a host image's interpreter, see
    `corral_local.hostimage`) or, failing that, the agent's own.
    """
    return os.environ.get("CORRAL_IMAGE_PYTHON") or sys.executable


def _fill(value: str) -> str:
    python = image_python()
    return value.replace("{python}", python).replace("{bin}", str(Path(python).parent))


def _parse(data: Any, where: str) -> list[ImageCommand]:
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(f"{where}: expected a mapping with a list under 'images:'")
    out = []
    for i, entry in enumerate(data["images"]):
        if not isinstance(entry, dict) or "match" not in entry:
            raise ValueError(f"{where}: images[{i}] needs a 'match' pattern")
        out.append(
            ImageCommand(
                match=str(entry["match"]),
                entrypoint=[_fill(str(x)) for x in entry.get("entrypoint") or []],
                cmd=[_fill(str(x)) for x in entry.get("cmd") or []],
                env={str(k): _fill(str(v)) for k, v in (entry.get("env") or {}).items()},
                working_dir=str(entry.get("workingDir", "/")),
            )
        )
    return out


class ImageMap:
    def __init__(self, entries: list[ImageCommand]) -> None:
        self.entries = entries

    @classmethod
    def load(cls, extra: Path | None = None) -> ImageMap:
        entries: list[ImageCommand] = []
        if extra is not None:
            entries += _parse(yaml.safe_load(extra.read_text()), str(extra))
        entries += _parse(yaml.safe_load(DEFAULT_FILE.read_text()), str(DEFAULT_FILE))
        return cls(entries)

    def resolve(self, image: str) -> ImageCommand | None:
        name = normalise(image)
        for entry in self.entries:
            if fnmatch.fnmatchcase(name, entry.match):
                return entry
        return None

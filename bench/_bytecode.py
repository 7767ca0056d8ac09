"""Corral's modules compiled to bytecode before a benchmark launches workers.

A pod runs corral from the worker image, where pip compiled every module when
it installed it; the peers' virtualenv (pip too) has its bytecode as well.
The editable checkout a benchmark runs from has none, and a shell exporting
PYTHONDONTWRITEBYTECODE=1 (this project's CI and development machines) keeps
it that way, so each launched worker would compile corral anew: about 0.1 s
of its start measured here, which is not what a pod pays.
"""

from __future__ import annotations

import compileall
from pathlib import Path

import corral


def compile_corral() -> None:
    """Write the bytecode of every corral module, as an image has it."""
    compileall.compile_dir(str(Path(corral.__file__).parent), quiet=1)

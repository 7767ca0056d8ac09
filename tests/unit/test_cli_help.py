"""`corral --help` and the sub-commands' help: the top-level summaries name
every sub-command, the most used commands show examples, and the worker's
help reads like the admin commands'."""

from __future__ import annotations

import importlib
import re

import click
import pytest
from click.testing import CliRunner

from corral import cli as root
from corral.cli import cli


def _help(*path: str) -> str:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", sorted(root._MODULE_OF))
def test_the_top_level_summary_names_every_sub_command(name: str) -> None:
    command = getattr(importlib.import_module(root._MODULE_OF[name]), name)
    if not isinstance(command, click.Group) or name in ("worker", "operator"):
        return
    summary = root._HELP[name]
    missing = [sub for sub in command.commands if not re.search(rf"\b{sub}\b", summary, re.I)]
    assert missing == [], f"corral --help says of {name}: {summary!r}"


@pytest.mark.parametrize(
    "path",
    [
        ("jobs", "enqueue"),
        ("jobs", "list"),
        ("workers", "drain"),
        ("schedules", "create"),
        ("tokens", "create"),
    ],
    ids=" ".join,
)
def test_the_most_used_commands_show_examples(path: tuple[str, ...]) -> None:
    shown = _help(*path)
    examples = shown.split("Examples:", 1)
    assert len(examples) == 2, shown
    assert f"corral {' '.join(path)} " in examples[1], shown


def test_worker_drain_and_prestop_are_not_listed_twice_alike() -> None:
    commands = _help("worker").split("Commands:", 1)[1]
    lines = {line.split()[0]: " ".join(line.split()[1:]) for line in commands.strip().splitlines()}
    assert set(lines) == {"drain", "prestop"}
    assert lines["drain"] != lines["prestop"], lines
    assert "prestop" in lines["drain"]
    assert _help("worker", "drain") == _help("worker", "prestop").replace("prestop", "drain", 1)


def test_worker_durations_read_duration_as_in_the_admin_commands() -> None:
    shown = _help("worker")
    for flag in ("--job-timeout", "--drain-timeout", "--lease", "--retention", "--poll-interval"):
        assert re.search(rf"{flag} DURATION\b", shown), shown
    assert re.search(r"--delay DURATION\b", _help("jobs", "enqueue"))
    assert re.search(r"--timeout DURATION\b", _help("worker", "prestop"))

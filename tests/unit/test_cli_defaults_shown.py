"""`--help` shows an option's default: the operator, the dashboard, `worker
prestop` and the admin commands ask for it once (`show_default` in their
context settings), and the few options whose default was never shown opt out."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from corral.cli import cli


def _option_help(path: list[str], flag: str) -> str:
    """The help of the option `flag` of `corral PATH --help`, on one line."""
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    blocks = re.split(r"\n(?=  -)", result.output)
    (block,) = [b for b in blocks if re.match(rf"\s+(-\w, )?{re.escape(flag)}\b", b)]
    return " ".join(block.split())


@pytest.mark.parametrize(
    ("path", "flag", "default"),
    [
        (["operator"], "--http-port", "8080"),
        (["operator"], "--resync", "10s"),
        (["operator"], "--create-default-region", "create-default-region"),
        (["dashboard"], "--host", "127.0.0.1"),
        (["dashboard"], "--secure-cookies", "no-secure-cookies"),
        (["worker", "prestop"], "--timeout", "1h"),
        (["jobs", "purge"], "--batch", "10000"),
        (["tokens", "create"], "--ttl", "15m"),
        (["tokens", "create"], "--uses", "1"),
        (["schedules", "create"], "--catch-up", "one"),
        (["schedules", "create"], "--overlap", "skip"),
        (["audit", "list"], "--limit", "100"),
        (["config", "view"], "--output", "yaml"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_an_option_with_a_default_shows_it(path: list[str], flag: str, default: str) -> None:
    assert re.search(rf"[\[ ]default: {re.escape(default)}[;\]]", _option_help(path, flag))


@pytest.mark.parametrize(
    ("path", "flag"),
    [
        (["operator"], "--namespace"),  # empty: every namespace, as its help says
        (["operator"], "--log-level"),
        (["schedules", "create"], "--jitter"),  # 0, as its help says
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else value,
)
def test_an_option_that_never_showed_its_default_still_does_not(path: list[str], flag: str) -> None:
    assert "default: " not in _option_help(path, flag)

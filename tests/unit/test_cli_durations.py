"""Time flags take a DURATION everywhere (30s, 5m, 1h; a bare number is
seconds): also `corral worker drain|prestop --timeout` and `corral operator
--resync`, which took plain seconds only. A bad one exits 2 naming the flag."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from corral.cli import cli
from corral.controller import cli as operator_cli
from corral.worker import cli as worker_cli


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300.0), ("90", 90.0), ("1h30m", 5400.0)])
def test_the_drain_timeout_is_a_duration(text: str, seconds: float) -> None:
    assert worker_cli._seconds(text, "--timeout") == seconds
    assert operator_cli._duration(text, "--resync") == seconds


@pytest.mark.parametrize(
    "args",
    [["worker", "drain", "--timeout", "5x"], ["worker", "prestop", "--timeout", "soon"],
     ["operator", "--resync", "5q"]],
)  # fmt: skip
def test_a_bad_duration_exits_2_naming_its_flag(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    flag = args[-2]
    assert f"{flag} '{args[-1]}' is not a duration" in result.output, result.output

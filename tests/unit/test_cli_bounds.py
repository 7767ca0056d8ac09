"""Out-of-range numbers and durations exit 2 naming the flag, before any
connection: not the server's `integer out of range`, Python's OverflowError
or a timestamp past year 10,000 with exit 1."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from corral.cli import cli

BIG = "99999999999"  # past PostgreSQL's integer
HUGE = "99999999999999999999"  # past its bigint
FOREVER = "100000000d"  # past year 10,000


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (("jobs", "enqueue", "noop", "--max-attempts", BIG), "--max-attempts"),
        (("jobs", "enqueue", "noop", "--priority", "5000"), "--priority"),
        (("jobs", "enqueue", "noop", "--delay", FOREVER), "--delay"),
        (("jobs", "enqueue", "noop", "--expires-in", FOREVER), "--expires-in"),
        (("jobs", "list", "--limit", HUGE), "--limit"),
        (("jobs", "purge", "--older-than", FOREVER), "--older-than"),
        (("jobs", "purge", "--older-than", "7d", "--batch", BIG), "--batch"),
        (("tokens", "create", "--region", "eu", "--ttl", FOREVER), "--ttl"),
        (("tokens", "create", "--region", "eu", "--uses", BIG), "--uses"),
        (("queues", "set", "q", "--max-attempts", BIG), "--max-attempts"),
        (("queues", "set", "q", "--retry-base", FOREVER), "--retry-base"),
        (("queues", "set", "q", "--retry-max", FOREVER), "--retry-max"),
        (("queues", "set", "q", "--max-dead", BIG), "--max-dead"),
        (("queues", "set", "q", "--max-completed", BIG), "--max-completed"),
        (
            ("schedules", "create", "s", "noop", "--every", "1m", "--max-attempts", BIG),
            "--max-attempts",
        ),
        (("worker", "prestop", "--port", "99999"), "--port"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, tuple) else value,
)
def test_an_out_of_range_value_exits_2_naming_the_flag(args: tuple[str, ...], flag: str) -> None:
    result = CliRunner().invoke(
        cli, list(args), env={"CORRAL_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    )
    assert result.exit_code == 2, result.output
    assert flag in result.output, result.output


def test_the_longest_duration_is_named() -> None:
    result = CliRunner().invoke(cli, ["jobs", "enqueue", "noop", "--delay", FOREVER])
    assert "--delay '100000000d' is longer than 36500d" in result.output, result.output

"""The largest values the admin commands take (tests/unit/test_cli_bounds.py
refuses one more) are stored by the database: the bounds are the columns'."""

from __future__ import annotations

from click.testing import CliRunner

from corral.admin.cli import INT4_MAX, INT8_MAX
from corral.cli import cli


def test_the_largest_accepted_values_are_stored(database_url: str) -> None:
    top = str(INT4_MAX)
    commands = [
        ["jobs", "enqueue", "noop", "--max-attempts", top, "--delay", "36500d", "--priority", "1000"],
        ["jobs", "enqueue", "noop", "--expires-in", "36500d", "--priority", "-1000"],
        ["jobs", "list", "--limit", str(INT8_MAX)],
        ["jobs", "purge", "--older-than", "36500d", "--batch", top],
        ["tokens", "create", "--region", "eu", "--ttl", "36500d", "--uses", top],
        ["queues", "set", "q", "--max-attempts", top, "--retry-base", "36500d",
         "--retry-max", "36500d", "--max-dead", top, "--max-completed", top],
        ["schedules", "create", "s", "noop", "--every", "1m", "--max-attempts", top],
    ]  # fmt: skip
    for args in commands:
        result = CliRunner().invoke(cli, args, env={"CORRAL_DATABASE_URL": database_url})
        assert result.exit_code == 0, (args, result.output)

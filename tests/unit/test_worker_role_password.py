"""`corral db create-worker-role --password-stdin` takes the password it is
given or refuses: an empty line is not a password, and no random one is
made in its place (no connection is opened: the unit tier forbids it)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from corral.cli import cli
from corral.queue.dsn import DsnError
from corral.queue.roles import create_worker_role

URL = "postgresql://admin:s3cret@db.example:5432/corral"


@pytest.mark.parametrize("stdin", ["", "\n", "\r\n"])
def test_an_empty_password_on_stdin_is_refused_naming_the_flag(stdin: str) -> None:
    result = CliRunner().invoke(
        cli,
        ["db", "create-worker-role", "w1", "--password-stdin", "--database-url", URL],
        input=stdin,
    )
    assert result.exit_code == 2, result.output
    assert "--password-stdin" in result.output and "empty" in result.output
    assert "s3cret" not in result.output


def test_the_library_call_refuses_an_empty_password_too() -> None:
    with pytest.raises(DsnError, match="empty"):
        create_worker_role(URL, "w1", "")

"""`corral dashboard`'s command line: complete --help, loopback by default,
and start-up errors that name the option and the fix (no server started)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli import cli


def test_help_lists_every_option_and_the_environment() -> None:
    out = CliRunner().invoke(cli, ["dashboard", "--help"]).output
    for option in (
        "--host",
        "--port",
        "--database-url",
        "--kubeconfig",
        "--user",
        "--password-file",
        "--secure-cookies",
        "CORRAL_DASHBOARD_PASSWORD",
        "CORRAL_DASHBOARD_SECRET_KEY",
    ):
        assert option in out
    assert "127.0.0.1" in out.split("--host", 1)[1].split("--port", 1)[0]


def test_no_database_url_says_how_to_give_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CORRAL_DATABASE_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no `corral config` context
    result = CliRunner().invoke(cli, ["dashboard"])
    assert result.exit_code == 2
    assert "--database-url" in result.output and "CORRAL_DATABASE_URL" in result.output
    assert "corral config set-context" in result.output


def test_a_bad_database_url_names_the_option() -> None:
    result = CliRunner().invoke(cli, ["dashboard", "--database-url", "mysql://x/y"])
    assert result.exit_code == 2 and "--database-url" in result.output


def test_an_empty_password_file_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "pw"
    empty.write_text("\n")
    result = CliRunner().invoke(
        cli,
        ["dashboard", "--database-url", "postgresql://u:p@h/db", "--password-file", str(empty)],
    )
    assert result.exit_code == 2 and "is empty: put the password in it" in result.output

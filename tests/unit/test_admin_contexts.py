"""`corral config`: contexts are stored 0600 under the user's config
directory, the admin commands take their URL from the flag, else
CORRAL_DATABASE_URL, else the current context, and no password is shown."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner, Result

from corral.admin.cli import _database_url
from corral.cli import cli

URL = "postgresql://admin:s3cret-pw@db.example:5432/corral"


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CORRAL_DATABASE_URL", raising=False)
    return tmp_path


def corral(*args: str) -> Result:
    return CliRunner().invoke(cli, ["config", *args])


def test_the_first_context_becomes_current_and_the_file_is_private(config_home: Path) -> None:
    assert corral("set-context", "prod", "--database-url", URL).exit_code == 0
    assert (
        corral("set-context", "dev", "--database-url", "postgresql://localhost/dev").exit_code == 0
    )
    path = config_home / "corral" / "config.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    listed = json.loads(corral("get-contexts", "-o", "json").output)
    assert [(c["name"], c["current"]) for c in listed] == [("dev", False), ("prod", True)]
    assert corral("use-context", "dev").exit_code == 0
    table = corral("get-contexts").output.splitlines()
    assert table[0].split() == ["CURRENT", "NAME", "DATABASE-URL"]
    assert table[1].split() == ["*", "dev", "postgresql://localhost/dev"]


def test_view_and_get_contexts_never_show_the_password() -> None:
    corral("set-context", "prod", "--database-url", URL)
    for result in (corral("view"), corral("view", "-o", "json"), corral("get-contexts")):
        assert result.exit_code == 0, result.output
        assert "s3cret-pw" not in result.output
    shown = yaml.safe_load(corral("view").output)
    assert shown["current-context"] == "prod"
    assert shown["contexts"][0]["database-url"].startswith("postgresql://admin:")
    assert shown["database-url-from"] == "context prod"


def test_the_flag_wins_over_the_variable_which_wins_over_the_current_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The callback's context and parameter go unused: any will do.
    ctx, param = click.Context(cli), click.Option(["--database-url"])
    assert _database_url(ctx, param, None) is None  # no context yet
    corral("set-context", "prod", "--database-url", URL)
    assert _database_url(ctx, param, None) == URL
    assert _database_url(ctx, param, "postgresql://flag/db") == "postgresql://flag/db"
    # Through a real command: the variable (click reads it into the option)
    # wins over the context; `view` says which applies.
    monkeypatch.setenv("CORRAL_DATABASE_URL", "postgresql://env/db")
    assert "CORRAL_DATABASE_URL" in yaml.safe_load(corral("view").output)["database-url-from"]


def test_mistakes_are_named_with_their_fix(config_home: Path) -> None:
    bad_url = corral("set-context", "prod", "--database-url", "mysql://u:s3cret-pw@h/db")
    assert bad_url.exit_code == 2 and "--database-url" in bad_url.output
    assert "s3cret-pw" not in bad_url.output
    bad_name = corral("set-context", "a b", "--database-url", URL)
    assert bad_name.exit_code == 2 and "context name 'a b'" in bad_name.output
    missing = corral("use-context", "staging")
    assert missing.exit_code == 3 and "corral config set-context staging" in missing.output
    path = config_home / "corral" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('current-context = "prod"\ncolour = "blue"\n')
    broken = corral("get-contexts")
    assert broken.exit_code == 1 and f"{path}: unknown key 'colour'" in broken.output
    path.write_text('current-context = "gone"\n')
    gone = CliRunner().invoke(cli, ["queues", "list"])
    assert gone.exit_code == 1 and "the current context 'gone' does not exist" in gone.output


def test_every_admin_command_says_where_its_database_url_comes_from() -> None:
    for args in (["queues", "list"], ["jobs", "list"], ["db", "migrate"], ["schedules", "list"]):
        help_text = " ".join(CliRunner().invoke(cli, [*args, "--help"]).output.split())
        assert "else env CORRAL_DATABASE_URL; else the current context of `corral config`" in (
            help_text
        ), args


def test_a_current_context_that_is_gone_says_how_to_make_one_when_there_is_none(
    config_home: Path,
) -> None:
    path = config_home / "corral" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('current-context = "gone"\n')
    result = CliRunner().invoke(cli, ["stats"])
    assert result.exit_code == 1
    assert "no contexts yet: corral config set-context NAME --database-url URL" in result.output
    assert not result.output.rstrip().endswith(":"), result.output
    path.write_text(
        'current-context = "gone"\n[contexts.prod]\ndatabase-url = "postgresql://h/db"\n'
    )
    result = CliRunner().invoke(cli, ["stats"])
    assert "corral config use-context NAME` with one of: prod" in result.output


# A URL check_dsn refuses (the port): the command fails before connecting.
BAD_URL = "postgresql://admin:s3cret-pw@db.example:99999/corral"


def test_a_bad_url_names_where_it_came_from(
    config_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag = CliRunner().invoke(cli, ["stats", "--database-url", BAD_URL])
    assert flag.exit_code == 1 and "(from --database-url)" in flag.output, flag.output
    variable = CliRunner().invoke(cli, ["stats"], env={"CORRAL_DATABASE_URL": BAD_URL})
    assert variable.exit_code == 1 and "(from CORRAL_DATABASE_URL)" in variable.output
    path = config_home / "corral" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f'current-context = "prod"\n[contexts.prod]\ndatabase-url = "{BAD_URL}"\n')
    path.chmod(0o600)
    context = CliRunner().invoke(cli, ["jobs", "list"])
    assert context.exit_code == 1 and "(from context prod)" in context.output, context.output
    for result in (flag, variable, context):
        assert "port '99999'" in result.output and "s3cret-pw" not in result.output
    # An error that is not about the URL names no source.
    role = CliRunner().invoke(cli, ["db", "create-worker-role", "Bad Name", "--database-url", URL])
    assert role.exit_code != 0 and "(from" not in role.output

"""`corral dashboard` takes its database URL like the admin commands (flag,
CORRAL_DATABASE_URL, the current `corral config` context) and tries it once
before serving: a refused URL stops it with the admin commands' message,
naming where the URL came from, instead of a dashboard that logs the
refusal every few seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from psycopg.conninfo import make_conninfo

from corral.cli import cli


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What `web.run_app` was called with (it returns at once)."""
    calls: list[dict[str, Any]] = []

    def run_app(app: object, **kwargs: Any) -> None:
        calls.append({"app": app, **kwargs})

    monkeypatch.setattr("aiohttp.web.run_app", run_app)
    return calls


def dashboard(tmp_path: Path, *args: str, env_url: str = "") -> Result:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "CORRAL_DATABASE_URL": env_url}
    return CliRunner().invoke(cli, ["dashboard", "--no-kubernetes", "--port", "0", *args], env=env)


def set_context(tmp_path: Path, url: str) -> None:
    made = CliRunner().invoke(
        cli,
        ["config", "set-context", "prod", "--database-url", url],
        env={"XDG_CONFIG_HOME": str(tmp_path), "CORRAL_DATABASE_URL": ""},
    )
    assert made.exit_code == 0, made.output


def test_the_dashboard_serves_the_current_context(
    database_url: str, tmp_path: Path, served: list[dict[str, Any]]
) -> None:
    set_context(tmp_path, database_url)
    result = dashboard(tmp_path)
    assert result.exit_code == 0, result.output
    assert len(served) == 1


@pytest.mark.parametrize("source", ["context prod", "CORRAL_DATABASE_URL", "--database-url"])
def test_a_refused_password_stops_the_dashboard_at_start_naming_the_source(
    worker_database_url: str, tmp_path: Path, served: list[dict[str, Any]], source: str
) -> None:
    wrong = make_conninfo(worker_database_url, password="wrong-pw-4711")
    if source == "context prod":
        set_context(tmp_path, wrong)
        result = dashboard(tmp_path)
    elif source == "CORRAL_DATABASE_URL":
        result = dashboard(tmp_path, env_url=wrong)
    else:
        result = dashboard(tmp_path, "--database-url", wrong)
    assert result.exit_code == 1, result.output
    assert "check the password" in result.output and f"(from {source})" in result.output
    assert "wrong-pw-4711" not in result.output
    assert served == []

"""A database URL that cannot be parsed is refused by every command that
takes one, saying what is wrong and never echoing its password."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli import cli

SHAPES = {
    "corral:s3cretPW@127.0.0.1": "no postgresql:// scheme",
    "postgresql:/corral:s3cretPW@127.0.0.1": "mistyped",
    "postgresql//corral:s3cretPW@127.0.0.1": "mistyped",
}
COMMANDS = {
    "stats": ["stats", "--database-url"],
    "worker": ["worker", "--database-url"],
    "dashboard": ["dashboard", "--database-url"],
    "set-context": ["config", "set-context", "prod", "--database-url"],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("url", SHAPES)
def test_an_unparsable_url_is_explained_without_its_password(
    command: str, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.delenv("CORRAL_DATABASE_URL", raising=False)
    result = CliRunner().invoke(cli, [*COMMANDS[command], url])
    assert result.exit_code != 0
    assert "s3cretPW" not in result.output
    assert SHAPES[url] in result.output, result.output

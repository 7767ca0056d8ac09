"""The admin commands explain themselves without touching a database."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from corral.admin import audit, regions
from corral.admin import cli as admin
from corral.cli import cli

_GROUPS = {"db": admin.db, "jobs": admin.jobs, "dispatch": admin.dispatch,
           "tokens": admin.tokens, "workers": admin.workers,
           "regions": regions.regions}  # fmt: skip


def _leaves() -> list[list[str]]:
    paths = [["stats"]]
    for name, group in _GROUPS.items():
        assert isinstance(group, click.Group)
        paths.extend([name, sub] for sub in group.commands)
    return paths


@pytest.mark.parametrize("path", _leaves(), ids=" ".join)
def test_every_admin_command_has_help_and_takes_a_database_url(path: list[str]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "--database-url" in result.output and "CORRAL_DATABASE_URL" in result.output


def test_listings_offer_table_json_and_yaml() -> None:
    for path in (["jobs", "list"], ["stats"], ["tokens", "list"], ["workers", "list"],
                 ["regions", "list"], ["jobs", "get"]):  # fmt: skip
        assert "table|json|yaml" in CliRunner().invoke(cli, [*path, "--help"]).output


def test_audit_list_help_names_the_actions_the_dashboard_records() -> None:
    from corral.dashboard import routes

    source = Path(routes.__file__).read_text(encoding="utf-8")
    recorded = set(re.findall(r'"((?:jobs?|worker|schedule|dispatch)\.[a-z_]+)"', source))
    assert 'f"job.{verb}"' in source  # the job actions: one per verb of the route
    verbs = re.search(r"/jobs/\{id:[^}]+\}/\{verb:([a-z|]+)\}", source)
    assert verbs
    recorded |= {f"job.{verb}" for verb in verbs.group(1).split("|")}
    shown = " ".join(CliRunner().invoke(cli, ["audit", "list", "--help"]).output.split())
    assert [action for action in sorted(recorded) if action not in shown] == [], shown
    assert "jobs.cancel" not in shown
    assert set(audit.ACTIONS) == recorded


def test_corral_help_and_the_readme_give_the_exit_codes() -> None:
    shown = CliRunner().invoke(cli, ["--help"], terminal_width=100).output
    for line in ("0  success", "1  the operation failed", "2  bad usage or input", "3  the named"):
        assert line in shown, shown
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "exit codes: 0 success, 1 the operation failed" in " ".join(readme.split()), readme

"""`corral worker --config FILE`: flags win over CORRAL_* variables, which win
over the file, which wins over the defaults; an unknown key or a bad value
is named with the file, and a password is never shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from corral import workerenv
from corral.worker.cli import worker

FILE = """
database-url = "postgresql://corral:s3cret-pw@db.example/corral"
queues = ["from-file"]
concurrency = 20
drain-timeout = "5m"
term_grace = 3
log-level = "warning"
"""


def run(tmp_path: Path, text: str, *args: str, **env: str) -> Result:
    path = tmp_path / "worker.toml"
    path.write_text(text)
    # Nothing from the caller's environment: only what the test sets.
    clean: dict[str, str | None] = {
        name: None
        for name in (*workerenv.BY_SETTING.values(), workerenv.LOG_LEVEL, workerenv.WORKER_CONFIG)
    }
    clean.update(env)
    return CliRunner().invoke(worker, ["--config", str(path), "--show-config", *args], env=clean)


def shown(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.output)
    return data


def test_the_file_fills_what_neither_flags_nor_variables_set_and_defaults_the_rest(
    tmp_path: Path,
) -> None:
    settings = shown(run(tmp_path, FILE))
    assert settings["queues"] == ["from-file"]
    assert settings["concurrency"] == 20
    assert settings["drain-timeout"] == 300.0  # "5m", parsed as the flag's value would be
    assert settings["term-grace"] == 3.0  # an underscore spelling of the key is the same key
    assert settings["log-level"] == "WARNING"
    assert settings["lease"] == 30.0  # not in the file: the default


def test_a_variable_wins_over_the_file_and_a_flag_over_both(tmp_path: Path) -> None:
    settings = shown(
        run(
            tmp_path, FILE, "--queues", "from-flag",
            CORRAL_QUEUES="from-env", CORRAL_CONCURRENCY="30", CORRAL_LOG_LEVEL="DEBUG",
        )
    )  # fmt: skip
    assert settings["queues"] == ["from-flag"]
    assert settings["concurrency"] == 30
    assert settings["log-level"] == "DEBUG"
    assert settings["drain-timeout"] == 300.0  # neither flag nor variable: the file


def test_an_unknown_key_is_named_with_the_file_and_the_closest_known_key(tmp_path: Path) -> None:
    result = run(tmp_path, FILE + "concurency = 3\n")
    assert result.exit_code == 2
    assert f"--config {tmp_path / 'worker.toml'}: unknown key 'concurency'" in result.output
    assert "did you mean 'concurrency'?" in result.output


def test_a_bad_value_in_the_file_names_the_setting_and_the_file(tmp_path: Path) -> None:
    result = run(tmp_path, FILE.replace('"5m"', '"five minutes"'))
    assert result.exit_code == 2
    assert "--drain-timeout / CORRAL_DRAIN_TIMEOUT" in result.output
    assert str(tmp_path / "worker.toml") in result.output


def test_a_table_where_a_value_belongs_and_broken_toml_are_named(tmp_path: Path) -> None:
    table = run(tmp_path, FILE + "[region]\nname = 'eu'\n")
    assert table.exit_code == 2 and "'region' must be a string" in table.output
    broken = run(tmp_path, "concurrency = \n")
    assert broken.exit_code == 2 and "not valid TOML" in broken.output and "line 1" in broken.output


def test_the_password_in_the_file_is_never_shown(tmp_path: Path) -> None:
    result = run(tmp_path, FILE)
    assert "s3cret-pw" not in result.output
    assert shown(result)["database-url"].startswith("postgresql://corral:")
    bad = run(tmp_path, FILE.replace("db.example/", "db.example:port/"))
    assert bad.exit_code == 2 and "s3cret-pw" not in bad.output

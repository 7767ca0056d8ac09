"""A bare `corral worker` (a pod's command) reads its CORRAL_* variables
without click (`corral.worker.launch`): the settings it starts with are the
ones click's options give, and whatever it cannot take is reported by click
as before."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

from corral import workerenv
from corral.worker import cli as worker_cli
from corral.worker import configfile, launch
from corral.worker.config import LISTS
from tests.unit._worker_start import bare_start_until_connect

_IMPORTED = re.compile(r"^import time:\s+\d+ \|\s+\d+ \|\s*(\S+)$", re.MULTILINE)


def _clean_environment(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in list(os.environ):
        if name.startswith("CORRAL_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def _by_click(env: dict[str, str]) -> dict[str, Any]:
    done = CliRunner().invoke(worker_cli.worker, ["--show-config"], env=env)
    assert done.exit_code == 0, done.output
    shown: dict[str, Any] = json.loads(done.output)
    return shown


def _by_launch(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    _clean_environment(monkeypatch, env)
    given = launch.given_by_environment()
    assert given is not None
    settings, log_level = launch.settings_from(given, None)
    return worker_cli._shown(settings, log_level.upper())


_DB = {"CORRAL_DATABASE_URL": "postgresql://corral:secret@db.example:5432/corral"}

CASES: dict[str, dict[str, str]] = {
    "the least": {**_DB, "CORRAL_QUEUES": "default"},
    "every variable": {
        **_DB,
        "CORRAL_QUEUES": "email, reports billing",
        "CORRAL_REGION": "eu-west",
        "CORRAL_POOL": "mailers",
        "CORRAL_CONCURRENCY": " 20 ",
        "CORRAL_BATCH_SIZE": "100",
        "CORRAL_NAME": "mailers-7d9f-abcde",
        "CORRAL_STATE_DIR": "/var/lib/corral",
        "CORRAL_HTTP_HOST": "127.0.0.1",
        "CORRAL_HTTP_PORT": "0",
        "CORRAL_ENROLLMENT_TOKEN_FILE": "/etc/corral/token",
        "CORRAL_HANDLERS": "json textwrap:dedent",
        "CORRAL_JOB_TIMEOUT": "30s",
        "CORRAL_DRAIN_TIMEOUT": "5m",
        "CORRAL_TERM_GRACE": "20s",
        "CORRAL_HEARTBEAT_INTERVAL": "2s",
        "CORRAL_POLL_INTERVAL": "500ms",
        "CORRAL_FLUSH_INTERVAL": "5ms",
        "CORRAL_LEASE": "1m",
        "CORRAL_RETENTION": "0",
        "CORRAL_STUCK_SHARE": "0.25",
        "CORRAL_EGRESS_DENY": "10.96.0.1:443 *.internal",
        "CORRAL_EGRESS_ALLOW": "169.254.169.254:80",
        "CORRAL_LOG_LEVEL": "debug",
    },
    "empty and blank values are not given": {
        **_DB,
        "CORRAL_QUEUES": "default",
        "CORRAL_REGION": "",
        "CORRAL_CONCURRENCY": "",
        "CORRAL_EGRESS_DENY": "   ",
        "CORRAL_LOG_LEVEL": "",
    },
}


@pytest.mark.parametrize("case", CASES)
def test_the_settings_are_the_ones_clicks_options_give(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = CASES[case]
    by_launch = _by_launch(monkeypatch, env)
    assert by_launch == _by_click(env)
    assert by_launch["database-url"] == "postgresql://corral:********@db.example:5432/corral"


def test_every_option_with_a_variable_converts_as_its_click_type() -> None:
    """CONVERTED and config.LISTS must follow `corral worker`'s declarations:
    an option given a type or made repeatable there has to be read the same
    way here."""
    checked = set()
    for param in worker_cli.worker.params:
        if not isinstance(param, click.Option) or param.envvar is None:
            continue
        if param.envvar in (workerenv.LOG_LEVEL, workerenv.WORKER_CONFIG):
            continue  # read by given_by_environment itself, or left to click
        field = configfile.KEYS[param.opts[0].removeprefix("--")]
        assert param.envvar == workerenv.BY_SETTING[field]
        assert param.multiple == (field in LISTS), field
        expected: object = {click.INT: int, click.FLOAT: float}.get(param.type)
        if isinstance(param.type, click.Path):
            expected = Path
        assert launch.CONVERTED.get(field) is expected, field
        checked.add(field)
    fields = set(configfile.KEYS.values()) - {configfile.LOG_LEVEL}
    assert checked == fields


@pytest.mark.parametrize(
    "env",
    [
        {"CORRAL_CONCURRENCY": "ten"},
        {"CORRAL_STUCK_SHARE": "half"},
        {"CORRAL_LOG_LEVEL": "loud"},
        {"CORRAL_WORKER_CONFIG": "/etc/corral/worker.toml"},
    ],
)
def test_what_does_not_convert_is_left_to_click(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _clean_environment(monkeypatch, {**_DB, "CORRAL_QUEUES": "default", **env})
    assert launch.given_by_environment() is None


def _bare_worker(
    tmp_path: Path, extra: dict[str, str] | None = None, *, importtime: bool = False
) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(bare_start_until_connect(tmp_path), **(extra or {}))
    done = subprocess.run(
        [
            sys.executable,
            *(["-X", "importtime"] if importtime else []),
            "-c",
            "import sys; from corral.entry import main; sys.exit(main())",
            "worker",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return done.returncode, done.stderr


def test_a_bare_worker_starts_without_click(tmp_path: Path) -> None:
    code, stderr = _bare_worker(tmp_path, importtime=True)
    assert "corral worker: error: cannot connect" in stderr, stderr[-2000:]
    assert code == 1
    imported = set(_IMPORTED.findall(stderr))
    assert {"corral.worker.runtime", "psycopg"} <= imported
    assert sorted(m for m in imported if m.split(".")[0] == "click") == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"CORRAL_CONCURRENCY": "ten"},
            "Invalid value for '--concurrency' / '-c' (env var: 'CORRAL_CONCURRENCY'): "
            "'ten' is not a valid integer",
        ),
        ({"CORRAL_LEASE": "soon"}, "CORRAL_LEASE"),
        ({"CORRAL_HANDLERS": "no_such_module_xyz"}, "cannot import 'no_such_module_xyz'"),
    ],
)
def test_a_bad_variable_is_reported_by_click_as_before(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    code, stderr = _bare_worker(tmp_path, extra)
    assert code == 2, stderr
    assert "Usage: corral worker" in stderr
    assert message in " ".join(stderr.split()), stderr

"""`corral worker --show-config` shows the values the worker runs with: the
batch size its help promises (min(concurrency, 1000)) when none is set."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from corral import workerenv
from corral.worker.cli import worker

URL = "postgresql://corral@db.example/corral"


def show(*args: str) -> dict[str, Any]:
    clean: dict[str, str | None] = {
        name: None
        for name in (*workerenv.BY_SETTING.values(), workerenv.LOG_LEVEL, workerenv.WORKER_CONFIG)
    }
    result = CliRunner().invoke(
        worker, ["--show-config", "--database-url", URL, "-q", "a", *args], env=clean
    )
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.output)
    return shown


def test_the_default_batch_size_is_shown_as_the_worker_takes_it() -> None:
    assert show()["batch-size"] == 10  # concurrency 10
    assert show("--concurrency", "40")["batch-size"] == 40
    assert show("--concurrency", "5000")["batch-size"] == 1000
    assert show("--concurrency", "40", "--batch-size", "7")["batch-size"] == 7

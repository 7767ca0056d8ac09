"""`corral worker`'s flags as `corral.worker.cli` declares them from the
settings: a list setting's flag (`config.LISTS`) may be repeated, and every
setting's flag reads its own `CORRAL_*` variable (`workerenv.BY_SETTING`)."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner

from corral import workerenv
from corral.worker.cli import worker
from corral.worker.config import LISTS

URL = "postgresql://corral@db.example/corral"


def show(*args: str, **env: str) -> dict[str, Any]:
    # Nothing from the caller's environment: only what the test sets.
    clean: dict[str, str | None] = {
        name: None
        for name in (*workerenv.BY_SETTING.values(), workerenv.LOG_LEVEL, workerenv.WORKER_CONFIG)
    }
    clean.update(env)
    result = CliRunner().invoke(worker, ["--show-config", *args], env=clean)
    assert result.exit_code == 0, result.output
    shown: dict[str, Any] = json.loads(result.output)
    return shown


def test_every_list_setting_takes_its_flag_repeated() -> None:
    shown = show(
        "--database-url", URL,
        "-q", "a", "--queues", "b,c",
        "--handlers", "m1", "--handlers", "m2:f",
        "--egress-deny", "10.0.0.1", "--egress-deny", "*.internal",
        "--egress-allow", "10.0.0.1:80", "--egress-allow", "169.254.169.254:80",
    )  # fmt: skip
    assert shown["queues"] == ["a", "b", "c"]
    assert shown["handlers"] == ["m1", "m2:f"]
    assert shown["egress-deny"] == ["10.0.0.1", "*.internal"]
    assert shown["egress-allow"] == ["10.0.0.1:80", "169.254.169.254:80"]
    # ...and those are all the list settings there are.
    assert set(LISTS) == {"queues", "handlers", "egress_deny", "egress_allow"}


def test_a_scalar_setting_takes_its_last_flag() -> None:
    shown = show("--database-url", URL, "-q", "a", "--concurrency", "3", "--concurrency", "4")
    assert shown["concurrency"] == 4


def test_every_setting_flag_reads_its_own_variable() -> None:
    # One distinct value per variable, so a flag reading another's shows.
    values = {
        "CORRAL_QUEUES": "from-env",
        "CORRAL_REGION": "eu",
        "CORRAL_POOL": "pool-a",
        "CORRAL_CONCURRENCY": "7",
        "CORRAL_BATCH_SIZE": "5",
        "CORRAL_NAME": "pod-1",
        "CORRAL_STATE_DIR": "/var/lib/corral",
        "CORRAL_HTTP_HOST": "127.0.0.2",
        "CORRAL_HTTP_PORT": "9000",
        "CORRAL_JOB_TIMEOUT": "41s",
        "CORRAL_DRAIN_TIMEOUT": "42s",
        "CORRAL_TERM_GRACE": "43s",
        "CORRAL_HEARTBEAT_INTERVAL": "2s",
        "CORRAL_POLL_INTERVAL": "3s",
        "CORRAL_FLUSH_INTERVAL": "5ms",
        "CORRAL_LEASE": "44s",
        "CORRAL_RETENTION": "45s",
        "CORRAL_STUCK_SHARE": "0.25",
        "CORRAL_ENROLLMENT_TOKEN_FILE": "/etc/corral/token",
        "CORRAL_HANDLERS": "mine.jobs",
        "CORRAL_EGRESS_DENY": "10.0.0.1",
        "CORRAL_EGRESS_ALLOW": "10.0.0.2:80",
        "CORRAL_LOG_LEVEL": "DEBUG",
    }
    shown = show(CORRAL_DATABASE_URL=URL, **values)
    assert shown["database-url"] == URL
    assert shown["queues"] == ["from-env"]
    assert (shown["region"], shown["pool"], shown["name"]) == ("eu", "pool-a", "pod-1")
    assert (shown["concurrency"], shown["batch-size"]) == (7, 5)
    assert (shown["state-dir"], shown["http-host"]) == ("/var/lib/corral", "127.0.0.2")
    assert shown["http-port"] == 9000
    assert [shown[k] for k in ("job-timeout", "drain-timeout", "term-grace", "lease")] == [
        41.0,
        42.0,
        43.0,
        44.0,
    ]
    assert [shown[k] for k in ("heartbeat-interval", "poll-interval", "flush-interval")] == [
        2.0,
        3.0,
        0.005,
    ]
    assert (shown["retention"], shown["stuck-share"], shown["log-level"]) == (45.0, 0.25, "DEBUG")
    assert shown["enrollment-token-file"] == "/etc/corral/token"
    assert shown["handlers"] == ["mine.jobs"]
    assert (shown["egress-deny"], shown["egress-allow"]) == (["10.0.0.1"], ["10.0.0.2:80"])

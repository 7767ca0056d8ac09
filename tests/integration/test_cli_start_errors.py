"""`corral operator` and `corral dashboard` refuse a port or address they
cannot listen on, and a kubeconfig they cannot load, with one line naming
the flag (as `corral worker` does), never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from corral.cli import cli

CORRAL = str(Path(sys.executable).parent / "corral")
# Loads without contacting anything; nothing listens on port 1.
KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as held:
        yield held.getsockname()[1]


def test_operator_on_a_busy_http_port_says_so_and_exits_1(
    busy_port: int, tmp_path: Path, database_url: str
) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    args = [CORRAL, "operator", "--database-url", database_url, "--kubeconfig", str(kubeconfig),
            "--leader-lease", "", "--http-port", str(busy_port)]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert (
        f"--http-port / CORRAL_HTTP_PORT: cannot listen on 0.0.0.0:{busy_port}: "
        "Address already in use"
    ) in done.stderr, done.stderr


def test_operator_without_a_kubeconfig_says_how_to_give_one(
    tmp_path: Path, database_url: str
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # no ~/.kube/config, not in a pod
    done = subprocess.run(
        [CORRAL, "operator", "--database-url", database_url],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "--kubeconfig / KUBECONFIG: cannot load" in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("host", "said"),
    [("127.0.0.1", "Address already in use"), ("192.0.2.1", "Cannot assign requested address")],
)
def test_dashboard_that_cannot_listen_says_so_and_exits_1(
    busy_port: int, database_url: str, host: str, said: str
) -> None:
    result = CliRunner().invoke(
        cli,
        ["dashboard", "--no-kubernetes", "--host", host, "--port", str(busy_port)],
        env={"CORRAL_DATABASE_URL": database_url},
    )
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, OSError), result.exception
    assert f"--host / --port: cannot listen on {host}:{busy_port}: {said}" in result.output

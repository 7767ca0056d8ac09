"""Command line for the local control plane: `up`, `down`, `status`, `run`.

Called by `python -m corral_local.localcluster` (make cluster-up / cluster-down).
`run` keeps a cluster in the foreground until Ctrl-C or SIGTERM. `up` starts
`run` as a detached supervisor process, waits until the cluster is ready and
prints the `export KUBECONFIG=...` line; `down` signals the supervisor (pid file
in the state directory), which stops every component before it exits.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import click

from corral_local import _pids
from corral_local.localcluster import _process
from corral_local.localcluster._cluster import ClusterError, LocalCluster, default_state_dir

_PID_FILE = "supervisor.pid"
_READY_FILE = "ready.json"
_LOG_FILE = "supervisor.log"


def _state_option(func: click.decorators.FC) -> click.decorators.FC:
    return click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where certs, kubeconfigs, etcd data and logs live "
        "(default: $CORRAL_CLUSTER_STATE_DIR, $CORRAL_STATE_DIR/cluster or <repo>/.state/cluster).",
    )(func)


def _supervisor_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / _PID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not _pids.running(pid):
        return None
    # A stale pid file may name a recycled pid: only ever signal our own supervisor.
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return pid if b"corral_local.localcluster" in cmdline else None


def _ready_info(state_dir: Path) -> dict[str, str] | None:
    try:
        data = json.loads((state_dir / _READY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@click.group()
def cli() -> None:
    """Run a local Kubernetes control plane built by `make cluster-bins`."""


@cli.command()
@_state_option
@click.option("--fresh", is_flag=True, help="Delete the state directory (etcd data, certs) first.")
def run(state_dir: Path | None, fresh: bool) -> None:
    """Run the cluster in the foreground until Ctrl-C or SIGTERM."""
    state = (state_dir or default_state_dir()).resolve()

    def _exit_on_signal(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    if fresh and _supervisor_pid(state) is None:
        # Wiped here, before the pid file is written into the directory.
        shutil.rmtree(state, ignore_errors=True)
    cluster = LocalCluster(state)
    state.mkdir(parents=True, exist_ok=True)
    (state / _READY_FILE).unlink(missing_ok=True)
    (state / _PID_FILE).write_text(f"{os.getpid()}\n")
    try:
        with cluster:
            ready = {
                "server": cluster.server_url,
                "kubeconfig": str(cluster.kubeconfig),
                "pod_server": cluster.pod_server_url,
            }
            (state / _READY_FILE).write_text(json.dumps(ready))
            click.echo(f"export KUBECONFIG={cluster.kubeconfig}", err=True)
            while True:
                time.sleep(1)
                dead = [name for name, alive in cluster.running().items() if not alive]
                if dead:
                    logs = "\n".join(
                        f"--- {cluster.log_file(n)}\n{_process.tail(cluster.log_file(n))}"
                        for n in dead
                    )
                    raise ClusterError(f"{', '.join(dead)} stopped unexpectedly:\n{logs}")
    except ClusterError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("interrupted: cluster stopped", err=True)
    finally:
        (state / _READY_FILE).unlink(missing_ok=True)
        (state / _PID_FILE).unlink(missing_ok=True)


@cli.command()
@_state_option
@click.option("--fresh", is_flag=True, help="Delete the state directory (etcd data, certs) first.")
@click.option("--timeout", "timeout_s", default=300.0, show_default=True, help="Seconds to wait.")
def up(state_dir: Path | None, fresh: bool, timeout_s: float) -> None:
    """Start the cluster in the background and print `export KUBECONFIG=...`."""
    state = (state_dir or default_state_dir()).resolve()
    if _supervisor_pid(state) and (info := _ready_info(state)):
        click.echo(f"already running at {info['server']}", err=True)
        click.echo(f"export KUBECONFIG={info['kubeconfig']}")
        return
    if fresh:
        shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True, exist_ok=True)
    log_path = state / _LOG_FILE
    argv = [sys.executable, "-m", "corral_local.localcluster", "run", "--state-dir", str(state)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives this shell command; `down` stops it
        )
    started = time.monotonic()
    last = started
    while (info := _ready_info(state)) is None:
        if proc.poll() is not None:
            raise click.ClickException(
                f"the cluster did not start (exit {proc.returncode}); last lines of "
                f"{log_path}:\n{_process.tail(log_path, 40)}"
            )
        if time.monotonic() - started > timeout_s:
            _process.signal_group(proc.pid, signal.SIGTERM)
            raise click.ClickException(
                f"the cluster was not ready after {timeout_s:.0f}s; see {log_path} and "
                f"{state / 'logs'}"
            )
        if time.monotonic() - last >= 10:
            click.echo(f"waiting for the cluster ({time.monotonic() - started:.0f}s)...", err=True)
            last = time.monotonic()
        time.sleep(0.5)
    click.echo(
        f"cluster ready at {info['server']} (supervisor pid {proc.pid}; logs in {state / 'logs'})",
        err=True,
    )
    click.echo(f"export KUBECONFIG={info['kubeconfig']}")


@cli.command()
@_state_option
def down(state_dir: Path | None) -> None:
    """Stop the cluster started by `up`."""
    state = (state_dir or default_state_dir()).resolve()
    pid = _supervisor_pid(state)
    if pid is None:
        click.echo(f"no cluster running for {state}", err=True)
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while _pids.running(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _pids.running(pid):
        # The components die with it (parent-death signal), so this leaves no orphans.
        os.kill(pid, signal.SIGKILL)
        click.echo(f"supervisor {pid} did not stop in 60s; killed it", err=True)
    click.echo("cluster stopped", err=True)


@cli.command()
@_state_option
def status(state_dir: Path | None) -> None:
    """Say whether the cluster runs and whether the API answers /readyz."""
    state = (state_dir or default_state_dir()).resolve()
    pid = _supervisor_pid(state)
    info = _ready_info(state)
    if pid is None or info is None:
        click.echo(f"stopped ({state})")
        sys.exit(1)
    cluster = LocalCluster(state)
    proc = cluster.kubectl("get", "--raw", "/readyz", check=False, timeout_s=10)
    readyz = proc.stdout.strip() or proc.stderr.strip()
    click.echo(f"running: supervisor pid {pid}, server {info['server']}, /readyz: {readyz}")
    click.echo(f"export KUBECONFIG={info['kubeconfig']}")
    sys.exit(0 if proc.returncode == 0 else 1)

"""`make dev`: the whole system on one machine, no Docker.

`python -m corral_local.dev up` (make dev) starts, in this order and in the
foreground: the local control plane (`corral_local.localcluster`), the node
agent with three nodes in two regions (`corral_local.nodeagent`, which also
brings up the pod bridge 10.244.0.1), PostgreSQL listening on 127.0.0.1 and the
bridge (`corral_local.postgres`), then — only for the pieces that exist in the
checkout — the queue schema, corral's CRDs, the operator (Helm chart), the
example WorkerPool and the web dashboard (`corral dashboard` on 127.0.0.1, a
random password in `.state/dev/dashboard-password`). It prints what to run next and waits; Ctrl-C, SIGTERM, SIGHUP
(a closed terminal) or `python -m corral_local.dev down` (make dev-down) stops
everything in reverse order. Everything lives under `.state/dev/` (or
$CORRAL_DEV_DIR). It needs root (the node agent's pod network and runAsUser).

No child outlives it, however it dies: the control plane and PostgreSQL get
SIGKILL/SIGQUIT from the kernel when it dies, the node agent and the dashboard
SIGTERM (the agent then stops its pods, whose processes die with the agent).
The agent's and the dashboard's pids are kept in the state folder besides, and
`up` and `down` stop any of them an earlier run left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from corral_local import _pids
from corral_local._parentdeath import die_with_parent

REPO = Path(__file__).resolve().parents[2]  # localplatform/corral_local/dev.py -> repo
NODES = [
    "dev-eu-1:region=eu,zone=eu-a",
    "dev-eu-2:region=eu,zone=eu-b",
    "dev-us-1:region=us,zone=us-a",
]
POD_GATEWAY = "10.244.0.1"
DEV_WORKER_ROLE = "corral_worker_dev"  # the demo pool's workers log in as this


def _state_dir() -> Path:
    return Path(os.environ.get("CORRAL_DEV_DIR", REPO / ".state" / "dev")).resolve()


def _say(message: str) -> None:
    print(f"[dev {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _own_pid(state: Path) -> int | None:
    """The pid of a running `dev up` for this state dir (never a recycled pid)."""
    try:
        pid = int((state / "dev.pid").read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if b"corral_local.dev" in cmdline else None


# What `up` starts besides the control plane and Postgres: pid file -> what it
# is, and a word its command line holds (with the state folder's path).
LEFTOVERS = {
    "nodeagent.pid": ("node agent", "corral_local.nodeagent"),
    "dashboard.pid": ("dashboard", "dashboard"),
}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _spawn(
    argv: list[str], log_path: Path, env: dict[str, str], pid_file: Path
) -> subprocess.Popen[bytes]:
    """Start a child of `up` that gets SIGTERM when `up` dies, its pid in `pid_file`."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    pid_file.write_text(str(proc.pid))
    return proc


def _leftover(state: Path, pid_file: str) -> int | None:
    """The pid in `pid_file` when that process is still what an earlier `up` started."""
    word = LEFTOVERS[pid_file][1].encode()
    try:
        pid = int((state / pid_file).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if word in cmdline and str(state).encode() in cmdline else None


def reap_leftovers(state: Path, grace_s: float = 30.0) -> list[str]:
    """Stop (SIGTERM, then SIGKILL to its group) what a `make dev` that died
    without cleaning up left running; what was stopped, as sentences."""
    stopped = []
    for pid_file, (what, _) in LEFTOVERS.items():
        pid = _leftover(state, pid_file)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _leftover(state, pid_file) == pid and time.monotonic() < deadline:
                if not _pids.running(pid):
                    break
                time.sleep(0.2)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            stopped.append(f"stopped the {what} (pid {pid}) left over from an earlier make dev")
        (state / pid_file).unlink(missing_ok=True)
    return stopped


def _on_stop_signals(done: threading.Event) -> None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, on_signal)


def _corral_has(command: str) -> bool:
    from corral import cli

    return command in cli._MODULE_OF


class _Stack:
    """What `up` started, stopped in reverse order."""

    def __init__(self) -> None:
        self._stops: list[tuple[str, Callable[[], None]]] = []

    def push(self, what: str, stop: Callable[[], None]) -> None:
        self._stops.append((what, stop))

    def close(self) -> None:
        while self._stops:
            what, stop = self._stops.pop()
            _say(f"stopping {what}")
            try:
                stop()
            except Exception as exc:
                _say(f"  {what}: {exc}")


def _stop_process(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def up() -> int:
    from corral_local import hostimage
    from corral_local.localcluster import ClusterError, LocalCluster
    from corral_local.postgres import PostgresServer, free_port

    if os.geteuid() != 0:
        print(
            "make dev needs root: the node agent makes a network namespace per pod on "
            "bridge corral0 and runs corral's pods as their runAsUser (65532); "
            "run it as root (sudo make dev)",
            file=sys.stderr,
        )
        return 1
    state = _state_dir()
    if (pid := _own_pid(state)) is not None:
        print(
            f"make dev is already running (pid {pid}); stop it with `make dev-down`",
            file=sys.stderr,
        )
        return 1
    state.mkdir(parents=True, exist_ok=True)
    for line in reap_leftovers(state):
        _say(line)
    (state / "dev.pid").write_text(str(os.getpid()))
    done = threading.Event()
    _on_stop_signals(done)
    stack = _Stack()

    def forget_pids() -> None:
        for name in ("dev.pid", *LEFTOVERS):
            (state / name).unlink(missing_ok=True)

    stack.push("pid files", forget_pids)
    try:
        # 1. control plane
        cluster = LocalCluster(state / "cluster", fresh=True)
        cluster.start()
        stack.push("control plane", cluster.stop)
        kubeconfig = str(cluster.kubeconfig)

        # 2. node agent (brings up the pod bridge that Postgres listens on)
        agent_dir = state / "nodeagent"
        shutil.rmtree(agent_dir, ignore_errors=True)
        agent_dir.mkdir(parents=True)
        ready = agent_dir / "ready.json"
        argv = [sys.executable, "-m", "corral_local.nodeagent", "--kubeconfig", kubeconfig]
        argv += ["--state-dir", str(agent_dir), "--ready-file", str(ready)]
        for node in NODES:
            argv += ["--node", node]
        env = dict(os.environ)
        if os.geteuid() == 0 and hostimage.source_tree() is not None:
            # Built here, with progress, rather than inside the agent's start-up
            # wait: a fresh machine installs the dependency layer first (minutes).
            image = hostimage.ensure_image(say=_say)
            held = hostimage.hold(image)  # no build elsewhere prunes it from under the agent
            stack.push("host image hold", held.close)
            env["CORRAL_IMAGE_PYTHON"] = str(image / "bin" / "python")
        agent = _spawn(argv, state / "nodeagent.log", env, state / "nodeagent.pid")
        stack.push("node agent", lambda: _stop_process(agent, 30))
        deadline = time.monotonic() + 60
        while not ready.exists():
            if agent.poll() is not None or time.monotonic() > deadline or done.is_set():
                raise RuntimeError(f"the node agent did not start; see {state / 'nodeagent.log'}")
            time.sleep(0.2)
        ready_state = json.loads(ready.read_text())
        network = ready_state["network"]
        why = f" ({ready_state['networkProblem']})" if ready_state.get("networkProblem") else ""
        _say(f"node agent up: {len(NODES)} nodes, pod network: {network}{why}")

        # 3. PostgreSQL, reachable from pods on the bridge address
        bridge = network == "bridge"
        pg = PostgresServer(
            listen=("127.0.0.1", POD_GATEWAY) if bridge else ("127.0.0.1",),
            hba_networks=("127.0.0.1/32", "10.244.0.0/16") if bridge else ("127.0.0.1/32",),
            data_dir=state / "postgres",
        )
        shutil.rmtree(state / "postgres", ignore_errors=True)
        pg.start()
        stack.push("PostgreSQL", pg.stop)
        # stopped before Postgres, so that worker pods drain with their database up
        stack.push("node agent (pods get SIGTERM, then SIGKILL)", lambda: _stop_process(agent, 30))
        host_dsn = pg.dsn("postgres")
        pod_dsn = pg.dsn("postgres", host=POD_GATEWAY if bridge else "127.0.0.1")
        _say(f"PostgreSQL up on port {pg.port}")
        env = dict(os.environ, KUBECONFIG=kubeconfig, CORRAL_DATABASE_URL=host_dsn)
        corral_bin = str(Path(sys.executable).parent / "corral")
        worker_dsn = None
        if _corral_has("db"):
            subprocess.run([corral_bin, "db", "migrate"], env=env, check=True)
            _say("queue schema migrated")
            # Workers connect as a role that may call the worker functions
            # only, never with the operator's URL (docs/security.md).
            from corral.queue import roles

            role = roles.create_worker_role(host_dsn, DEV_WORKER_ROLE)
            worker_dsn = roles.worker_dsn(pod_dsn, role.name, role.password)
            _say(f"worker role {role.name} created (member of {roles.WORKER_GROUP} only)")

        # 4. corral itself, for the parts that exist
        installed = _install_corral(cluster.kubectl, kubeconfig, pod_dsn, state, worker_dsn)

        # 5. the web dashboard, on this machine (it reads the cluster too)
        dashboard_url = None
        if _corral_has("dashboard"):
            port = free_port()
            password_file = state / "dashboard-password"
            password_file.write_text(secrets.token_urlsafe(16) + "\n")
            password_file.chmod(0o600)
            dashboard = _spawn(
                dashboard_command(corral_bin, port, kubeconfig, password_file),
                state / "dashboard.log",
                env,
                state / "dashboard.pid",
            )
            stack.push("dashboard", lambda: _stop_process(dashboard, 10))
            dashboard_url = f"http://127.0.0.1:{port}/"
            _say(f"dashboard on {dashboard_url} (user admin, password in {password_file})")

        path = f"{cluster.bin_dir}:{Path(sys.executable).parent}"
        (state / "env").write_text(
            f"export KUBECONFIG={kubeconfig}\nexport CORRAL_DATABASE_URL='{host_dsn}'\n"
            f'export PATH="{path}:$PATH"\n'
        )
        _print_next(state, installed, dashboard_url)
        while not done.wait(1.0):
            if agent.poll() is not None:
                _say(f"the node agent exited ({agent.returncode}); see {state / 'nodeagent.log'}")
                break
        return 0
    except (ClusterError, RuntimeError, subprocess.CalledProcessError, OSError) as exc:
        _say(f"failed: {exc}")
        return 1
    finally:
        stack.close()
        _say("everything stopped")


def _install_corral(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    kubeconfig: str,
    pod_dsn: str,
    state: Path,
    worker_dsn: str | None = None,
) -> list[str]:
    installed: list[str] = []
    crds = sorted((REPO / "crds").glob("*.yaml"))
    if not crds:
        raise SystemExit(f"make dev: no CRDs under {REPO / 'crds'}: is {REPO} the corral checkout?")
    for crd in crds:
        kubectl("apply", "-f", str(crd))
    for crd in crds:
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(crd))
    installed.append("CRDs")
    helm = Path(os.environ.get("CORRAL_K8S_BIN_DIR", "")) / "helm"
    if not helm.exists():
        from corral_local.localcluster import default_bin_dir

        helm = default_bin_dir() / "helm"
    chart = REPO / "charts" / "corral"
    if not helm.exists() or not chart.exists():
        raise SystemExit(f"make dev: needs {helm} (make cluster-bins) and the chart {chart}")
    if _corral_has("operator"):
        subprocess.run(
            [
                str(helm),
                "upgrade",
                "--install",
                "corral",
                str(chart),
                "--kubeconfig",
                kubeconfig,
                "--namespace",
                "corral-system",
                "--create-namespace",
                "--set",
                f"database.url={pod_dsn}",
                *(["--set", f"workerDatabase.url={worker_dsn}"] if worker_dsn else []),
                # The example pool lives in `default`: Secrets and pods there only.
                "--set",
                "rbac.poolNamespaces={default}",
            ],
            check=True,
        )
        installed.append("operator")
    else:
        _say("operator not installed: needs `corral operator`, charts/corral and helm")
    for example in ("region.yaml", "workerpool.yaml"):
        path = REPO / "examples" / example
        if path.exists() and "operator" in installed:
            kubectl("apply", "-f", str(path), check=False)
            installed.append(f"examples/{example}")
    return installed


def dashboard_command(
    corral_bin: str, port: int, kubeconfig: str, password_file: Path
) -> list[str]:
    """How `make dev` runs the dashboard: on 127.0.0.1 only, reading the local
    cluster's WorkerPools, actions on for `admin` with the generated password."""
    return [
        corral_bin,
        "dashboard",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--kubeconfig",
        kubeconfig,
        "--password-file",
        str(password_file),
    ]


def _print_next(state: Path, installed: list[str], dashboard_url: str | None = None) -> None:
    lines = [
        "",
        "corral dev environment is up" + (f" ({', '.join(installed)})" if installed else ""),
        "",
        "In another terminal:",
        f"  source {state / 'env'}        # KUBECONFIG, CORRAL_DATABASE_URL, PATH (kubectl, corral)",
        "  kubectl get nodes -L topology.kubernetes.io/region,topology.kubernetes.io/zone",
        "  kubectl get pods -A -o wide -w",
    ]
    if "CRDs" in installed:
        lines.append("  kubectl get workerpools -A -w")
    if _corral_has("jobs"):
        lines.append("  corral jobs enqueue noop --queue default     # a demo job")
        lines.append("  corral stats")
    if dashboard_url:
        lines.append(
            f"  open {dashboard_url}   # the dashboard: admin / $(cat {state / 'dashboard-password'})"
        )
    lines += [
        "  python -m corral_local.nodeagent chaos "
        f"--socket {state / 'nodeagent' / 'control.sock'} state   # pods, pids, log files",
        f"  logs: {state / 'nodeagent.log'}, {state / 'cluster' / 'logs'}/",
        "",
        "Stop: Ctrl-C here, or `make dev-down`.",
    ]
    print("\n".join(lines), flush=True)


def down() -> int:
    state = _state_dir()
    pid = _own_pid(state)
    if pid is None:
        print("make dev is not running", flush=True)
        for line in reap_leftovers(state):
            print(line, flush=True)
        return 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 120
    while _own_pid(state) == pid and time.monotonic() < deadline:
        time.sleep(0.5)
    if _own_pid(state) == pid:
        print(f"make dev (pid {pid}) did not stop within 120 s", file=sys.stderr)
        return 1
    print("make dev stopped", flush=True)
    for line in reap_leftovers(state):
        print(line, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m corral_local.dev", description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    return up() if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())

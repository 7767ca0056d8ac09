"""A real Kubernetes control plane on this machine: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler as child processes.

Called by the e2e fixtures (tests/e2e/conftest.py), by the node agent's tests and
by `python -m corral_local.localcluster` (`make cluster-up`). The binaries come
from `make cluster-bins` (tools/k8s/build.sh). Everything the cluster writes (PKI,
kubeconfigs, etcd data, one log per component) lives in one state directory.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from corral_local.localcluster import _pki, _process
from corral_local.localcluster._kubeconfig import (
    kubeconfig_server,
    render_kubeconfig,
    write_private,
)

K8S_VERSION = os.environ.get("K8S_VERSION", "1.36.3").removeprefix("v")
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
BINARIES = (*COMPONENTS, "kubectl", "helm")

Log = Callable[[str], None]


class ClusterError(RuntimeError):
    """The local cluster cannot start or is unhealthy; the message says why and what to do."""


class _PortTaken(ClusterError):
    def __init__(self, component: str, message: str) -> None:
        super().__init__(message)
        self.component = component


def _stderr_log(message: str) -> None:
    print(f"[localcluster {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def repo_root() -> Path | None:
    """The checkout this package runs from, when it runs from one (editable install)."""
    root = Path(__file__).resolve().parents[4]
    return root if (root / "pyproject.toml").is_file() else None


def default_state_dir() -> Path:
    """$CORRAL_CLUSTER_STATE_DIR, else $CORRAL_STATE_DIR/cluster, else <repo>/.state/cluster."""
    if env := os.environ.get("CORRAL_CLUSTER_STATE_DIR"):
        return Path(env)
    if env := os.environ.get("CORRAL_STATE_DIR"):
        return Path(env) / "cluster"
    return (repo_root() or Path.cwd()) / ".state" / "cluster"


def default_bin_dir() -> Path:
    """$CORRAL_K8S_BIN_DIR, else $CORRAL_CACHE/k8s-v<K8S_VERSION>/bin (what build.sh writes)."""
    if env := os.environ.get("CORRAL_K8S_BIN_DIR"):
        return Path(env)
    cache = Path(os.environ.get("CORRAL_CACHE") or Path.home() / ".cache" / "corral")
    return cache / f"k8s-v{K8S_VERSION}" / "bin"


def missing_binaries(bin_dir: Path, names: Sequence[str] = BINARIES) -> list[str]:
    return [n for n in names if not os.access(bin_dir / n, os.X_OK)]


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class Cluster:
    """What tests and tools need from any cluster: a kubeconfig and kubectl.

    `LocalCluster` is one; `ExistingCluster` wraps a cluster someone else runs (kind).
    """

    kubeconfig: Path
    kubectl_bin: str

    @property
    def server_url(self) -> str:
        return kubeconfig_server(self.kubeconfig)

    @property
    def is_local(self) -> bool:
        return False

    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG pointing at this cluster (for child processes)."""
        return dict(os.environ, KUBECONFIG=str(self.kubeconfig))

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout_s: float = 60.0,
        kubeconfig: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with check=True a non-zero exit raises
        ClusterError carrying the command and its stderr."""
        argv = [self.kubectl_bin, "--kubeconfig", str(kubeconfig or self.kubeconfig), *args]
        proc = subprocess.run(
            argv, input=input, capture_output=True, text=True, timeout=timeout_s, check=False
        )
        if check and proc.returncode != 0:
            raise ClusterError(
                f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip()}"
            )
        return proc

    def kubectl_json(
        self, *args: str, timeout_s: float = 60.0, kubeconfig: Path | None = None
    ) -> dict[str, Any]:
        """`kubectl ... -o json`, parsed; raises ClusterError when kubectl fails."""
        proc = self.kubectl(*args, "-o", "json", timeout_s=timeout_s, kubeconfig=kubeconfig)
        data = json.loads(proc.stdout)
        if not isinstance(data, dict):
            raise ClusterError(f"kubectl {' '.join(args)} -o json did not return an object")
        return data


class ExistingCluster(Cluster):
    """A cluster this process did not start (CORRAL_E2E_KUBECONFIG, kind): used as is."""

    def __init__(self, kubeconfig: Path, kubectl_bin: str | None = None) -> None:
        if not kubeconfig.is_file():
            raise ClusterError(f"kubeconfig {kubeconfig} does not exist")
        self.kubeconfig = kubeconfig
        built = default_bin_dir() / "kubectl"
        found = kubectl_bin or (
            str(built) if os.access(built, os.X_OK) else shutil.which("kubectl")
        )
        if not found:
            raise ClusterError("no kubectl: run `make cluster-bins` or put kubectl on PATH")
        self.kubectl_bin = found


class LocalCluster(Cluster):
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler, as child processes.

    Use as a context manager; everything started is stopped on exit, on exception
    and on KeyboardInterrupt::

        with LocalCluster(tmp_path / "cluster") as cluster:
            cluster.kubectl("get", "namespaces")

    Attributes after start: `kubeconfig` (admin, system:masters), `server_url`
    (https://127.0.0.1:<port>), `port`, `pod_server_url` (https://10.244.0.1:<port>,
    the address pods use), `ca_file`, `ca_key_file`, `bin_dir`, `state_dir`.
    """

    def __init__(
        self,
        state_dir: Path | None = None,
        *,
        bin_dir: Path | None = None,
        advertise_address: str = _pki.POD_BRIDGE_IP,
        service_cidr: str = _pki.SERVICE_CIDR,
        startup_timeout_s: float | None = None,
        fresh: bool = False,
        log: Log | None = None,
    ) -> None:
        self.state_dir = (state_dir or default_state_dir()).resolve()
        self.bin_dir = (bin_dir or default_bin_dir()).resolve()
        self.advertise_address = advertise_address
        self.service_cidr = service_cidr
        self.startup_timeout_s = startup_timeout_s or float(
            os.environ.get("CORRAL_CLUSTER_START_TIMEOUT", "240")
        )
        self.fresh = fresh
        self._log = log or _stderr_log
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._ports: dict[str, int] = {}
        self.kubectl_bin = str(self.bin_dir / "kubectl")
        self.kubeconfig = self.state_dir / "admin.kubeconfig"
        pki = self.state_dir / "pki"
        self.ca = _pki.KeyPair(pki / "ca.crt", pki / "ca.key")
        self.front_proxy_ca = _pki.KeyPair(pki / "front-proxy-ca.crt", pki / "front-proxy-ca.key")
        self.ca_file = self.ca.cert
        self.ca_key_file = self.ca.key
        self.sa_key_file = pki / "sa.key"
        self.sa_pub_file = pki / "sa.pub"

    # ---- public surface ------------------------------------------------------------------

    @property
    def is_local(self) -> bool:
        return True

    @property
    def port(self) -> int:
        if "apiserver" not in self._ports:
            raise ClusterError("the cluster is not started; call start() or use `with`")
        return self._ports["apiserver"]

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pod_server_url(self) -> str:
        return f"https://{self.advertise_address}:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def log_file(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start every component and return once the API is ready and the
        controller-manager has created the `default` ServiceAccount."""
        missing = missing_binaries(self.bin_dir, (*COMPONENTS, "kubectl"))
        if missing:
            raise ClusterError(
                f"missing {', '.join(missing)} in {self.bin_dir}: run `make cluster-bins` "
                "(or point CORRAL_K8S_BIN_DIR at a directory holding them)"
            )
        started = time.monotonic()
        for attempt in range(1, 4):
            try:
                self._prepare_state()
                self._start_etcd()
                self._start_apiserver()
                self._wait_apiserver_ready(started)
                self._start_controllers()
                self._wait_controllers(started)
                break
            except _PortTaken as exc:
                # Free ports are picked, then bound by the child a moment later; a
                # cluster starting next to us can win the race. New ports, try again.
                self.stop()
                if attempt == 3:
                    raise ClusterError(str(exc)) from exc
                self._log(f"{exc.component} lost its port to another process; retrying")
            except BaseException:
                self.stop()
                raise
        self._log(f"cluster ready in {time.monotonic() - started:.1f}s: {self.server_url}")

    def stop(self) -> None:
        """Stop the components in reverse start order; safe to call twice."""
        for name in reversed(list(self._procs)):
            proc = self._procs[name]
            _process.stop(proc, grace_s=10.0)
        self._procs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.state_dir / "pids.json").unlink()

    def running(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self._procs.items()}

    def send_signal(self, component: str, sig: int) -> None:
        """Signal one component (chaos drills: SIGSTOP then SIGCONT freezes
        the kube-apiserver without losing its state)."""
        proc = self._procs.get(component)
        if proc is None or proc.poll() is not None:
            raise ClusterError(f"{component} is not running (running: {sorted(self.running())})")
        proc.send_signal(sig)

    def issue_client_cert(
        self, name: str, common_name: str, organizations: Sequence[str] = ()
    ) -> _pki.KeyPair:
        """A client certificate signed by the cluster CA: Kubernetes authenticates it as
        user `common_name` in groups `organizations` (nodes: system:node:<n>, system:nodes)."""
        pair = _pki.KeyPair(
            self.state_dir / "pki" / f"{name}.crt", self.state_dir / "pki" / f"{name}.key"
        )
        _pki.issue_cert(self.ca, pair, common_name, organizations=organizations, client=True)
        return pair

    def client_kubeconfig(
        self,
        name: str,
        common_name: str,
        organizations: Sequence[str] = (),
        *,
        server: str | None = None,
    ) -> Path:
        """Write `<state>/<name>.kubeconfig` for a new client identity and return its path."""
        pair = self.issue_client_cert(name, common_name, organizations)
        path = self.state_dir / f"{name}.kubeconfig"
        write_private(
            path,
            render_kubeconfig(
                server=server or self.server_url,
                ca_pem=self.ca.cert.read_bytes(),
                client_cert_pem=pair.cert.read_bytes(),
                client_key_pem=pair.key.read_bytes(),
                user=common_name,
            ),
        )
        return path

    # ---- start-up steps ------------------------------------------------------------------

    def _prepare_state(self) -> None:
        # Before a fresh start wipes the folder: its pids.json names what a
        # crashed run of it left running.
        self._reap_stale()
        if self.fresh and self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        pki = self.state_dir / "pki"
        if not self.ca.cert.exists():
            self._log(f"generating certificates in {pki}")
            _pki.create_ca(self.ca, "corral-local-ca")
            _pki.create_ca(self.front_proxy_ca, "corral-front-proxy-ca")
            _pki.create_signing_key(self.sa_key_file, self.sa_pub_file)
        # Leaf certificates are cheap: reissue them so SAN or identity changes apply.
        dns, ips = _pki.apiserver_sans(
            extra_ips=[self.advertise_address], service_cidr=self.service_cidr
        )
        _pki.issue_cert(
            self.ca,
            self._pair("apiserver"),
            "kube-apiserver",
            server=True,
            dns_names=dns,
            ip_addresses=ips,
        )
        _pki.issue_cert(
            self.ca,
            self._pair("apiserver-kubelet-client"),
            "kube-apiserver-kubelet-client",
            organizations=["system:masters"],
            client=True,
        )
        _pki.issue_cert(
            self.front_proxy_ca, self._pair("front-proxy-client"), "front-proxy-client", client=True
        )
        for name, cn, orgs in (
            ("admin", "corral-admin", ["system:masters"]),
            ("controller-manager", "system:kube-controller-manager", []),
            ("scheduler", "system:kube-scheduler", []),
        ):
            _pki.issue_cert(self.ca, self._pair(name), cn, organizations=orgs, client=True)

    def _pair(self, name: str) -> _pki.KeyPair:
        pki = self.state_dir / "pki"
        return _pki.KeyPair(pki / f"{name}.crt", pki / f"{name}.key")

    def _write_kubeconfig(self, path: Path, pair_name: str, user: str) -> None:
        pair = self._pair(pair_name)
        write_private(
            path,
            render_kubeconfig(
                server=self.server_url,
                ca_pem=self.ca.cert.read_bytes(),
                client_cert_pem=pair.cert.read_bytes(),
                client_key_pem=pair.key.read_bytes(),
                user=user,
            ),
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        self._procs[name] = _process.spawn(argv, self.log_file(name))
        pids = {n: p.pid for n, p in self._procs.items()}
        (self.state_dir / "pids.json").write_text(json.dumps(pids))

    def _reap_stale(self) -> None:
        """Kill components a crashed earlier run left behind in this state directory."""
        path = self.state_dir / "pids.json"
        try:
            pids = json.loads(path.read_text())
        except (OSError, ValueError):
            return
        for name, pid in pids.items():
            if isinstance(pid, int) and _process.exe_of(pid).startswith(str(self.bin_dir)):
                self._log(f"stopping {name} (pid {pid}) left over from an earlier run")
                _process.signal_group(pid, 9)
        path.unlink(missing_ok=True)

    def _start_etcd(self) -> None:
        self._ports["etcd"] = free_port()
        self._ports["etcd-peer"] = free_port()
        client = f"http://127.0.0.1:{self._ports['etcd']}"
        peer = f"http://127.0.0.1:{self._ports['etcd-peer']}"
        self._log(f"starting etcd on {client}")
        self._spawn(
            "etcd",
            [
                str(self.bin_dir / "etcd"),
                "--name=corral",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=corral={peer}",
                # A throwaway dev/test store on a shared disk: fsync per write would
                # make every API call wait for the disk other jobs are hammering.
                "--unsafe-no-fsync",
                "--log-level=warn",
                "--quota-backend-bytes=2147483648",
            ],
        )

    def _start_apiserver(self) -> None:
        self._ports["apiserver"] = free_port("0.0.0.0")
        pki = self.state_dir / "pki"
        fp = self._pair("front-proxy-client")
        kc = self._pair("apiserver-kubelet-client")
        self._log(f"starting kube-apiserver on 0.0.0.0:{self.port}")
        self._spawn(
            "kube-apiserver",
            [
                str(self.bin_dir / "kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self._ports['etcd']}",
                "--bind-address=0.0.0.0",
                f"--secure-port={self.port}",
                f"--advertise-address={self.advertise_address}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={self.ca.cert}",
                f"--kubelet-client-certificate={kc.cert}",
                f"--kubelet-client-key={kc.key}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={self.sa_pub_file}",
                f"--service-account-signing-key-file={self.sa_key_file}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--allow-privileged=true",
                f"--requestheader-client-ca-file={self.front_proxy_ca.cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={fp.cert}",
                f"--proxy-client-key-file={fp.key}",
                "--enable-aggregator-routing=true",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _start_controllers(self) -> None:
        cm_kubeconfig = self.state_dir / "controller-manager.kubeconfig"
        sched_kubeconfig = self.state_dir / "scheduler.kubeconfig"
        self._write_kubeconfig(
            cm_kubeconfig, "controller-manager", "system:kube-controller-manager"
        )
        self._write_kubeconfig(sched_kubeconfig, "scheduler", "system:kube-scheduler")
        self._ports["controller-manager"] = free_port()
        self._ports["scheduler"] = free_port()
        self._log("starting kube-controller-manager and kube-scheduler")
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin_dir / "kube-controller-manager"),
                f"--kubeconfig={cm_kubeconfig}",
                f"--authentication-kubeconfig={cm_kubeconfig}",
                f"--authorization-kubeconfig={cm_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self._ports['controller-manager']}",
                f"--cert-dir={self.state_dir / 'controller-manager-certs'}",
                # Defaults plus the token signer/cleaner kubeadm also enables; node IPAM
                # stays off because the node agent assigns pod IPs from 10.244.0.0/16.
                "--controllers=*,bootstrap-signer-controller,token-cleaner-controller",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.sa_key_file}",
                f"--root-ca-file={self.ca.cert}",
                f"--cluster-signing-cert-file={self.ca.cert}",
                f"--cluster-signing-key-file={self.ca.key}",
                f"--service-cluster-ip-range={self.service_cidr}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._spawn(
            "kube-scheduler",
            [
                str(self.bin_dir / "kube-scheduler"),
                f"--kubeconfig={sched_kubeconfig}",
                f"--authentication-kubeconfig={sched_kubeconfig}",
                f"--authorization-kubeconfig={sched_kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self._ports['scheduler']}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ],
        )

    # ---- waiting -------------------------------------------------------------------------

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            code = proc.poll()
            if code is not None:
                tail = _process.tail(self.log_file(name))
                message = (
                    f"{name} exited with code {code} during start-up; last lines of "
                    f"{self.log_file(name)}:\n{tail}"
                )
                if "address already in use" in tail:
                    raise _PortTaken(name, message)
                raise ClusterError(message)

    def _wait(self, what: str, started: float, probe: Callable[[], str | None]) -> None:
        """Poll `probe` (None = ready, else a reason) with a progress line every 10 s."""
        last_report = time.monotonic()
        reason = "not tried yet"
        while True:
            self._check_alive()
            reason = probe() or ""
            if not reason:
                return
            now = time.monotonic()
            if now - started > self.startup_timeout_s:
                component = what.split()[0]
                hint = ""
                if component in self._procs:
                    log = self.log_file(component)
                    hint = f"\nlast lines of {log}:\n{_process.tail(log)}"
                raise ClusterError(
                    f"timed out after {self.startup_timeout_s:.0f}s waiting for {what} "
                    f"({reason}); raise CORRAL_CLUSTER_START_TIMEOUT if the machine is busy{hint}"
                )
            if now - last_report >= 10:
                self._log(f"waiting for {what} ({now - started:.0f}s): {reason}")
                last_report = now
            time.sleep(0.25)

    def _admin_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.cert))
        admin = self._pair("admin")
        ctx.load_cert_chain(str(admin.cert), str(admin.key))
        return ctx

    def _get(self, path: str, ctx: ssl.SSLContext, port: int | None = None) -> tuple[int, str]:
        conn = http.client.HTTPSConnection("127.0.0.1", port or self.port, context=ctx, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()

    def _probe(self, path: str, ctx: ssl.SSLContext, port: int | None = None) -> str | None:
        try:
            status, body = self._get(path, ctx, port)
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        if status == 200:
            return None
        return f"HTTP {status}: {body.strip()[-300:]}"

    def _wait_apiserver_ready(self, started: float) -> None:
        ctx = self._admin_context()
        self._wait("kube-apiserver /readyz", started, lambda: self._probe("/readyz", ctx))
        self._write_kubeconfig(self.kubeconfig, "admin", "corral-admin")

    def _wait_controllers(self, started: float) -> None:
        # Their serving certificates are self-signed in memory; on loopback the
        # health check only asks "is it up", not "who is it".
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        for name, key in (
            ("kube-scheduler", "scheduler"),
            ("kube-controller-manager", "controller-manager"),
        ):
            probe = functools.partial(self._probe, "/healthz", insecure, self._ports[key])
            self._wait(f"{name} /healthz", started, probe)
        # The controller-manager is doing its job once it has created the default
        # ServiceAccount; pods cannot be created in a namespace before that.
        ctx = self._admin_context()
        path = "/api/v1/namespaces/default/serviceaccounts/default"
        self._wait(
            "kube-controller-manager default ServiceAccount",
            started,
            lambda: self._probe(path, ctx),
        )

"""KEDA on the local platform, for `make bench-scale-peers` (issue #13).

Called by bench/scale_peers.py once its platform (bench/scale.py's `Platform`:
control plane, node agent, PostgreSQL, corral's operator) is up. Runs KEDA the
way bench/keda/README.md works out, section by section:

- the binaries and CRDs `make keda-bins` (tools/keda/build.sh) caches under
  $CORRAL_CACHE/keda-v<version>/; `built()` runs the script, which returns in
  about a second when its stamp matches;
- certificates handed in (README section "Certificates"): a throwaway CA and
  one key pair for both ends of the operator <-> adapter gRPC link and for the
  adapter's serving side; cert-controller's rotator cannot serve host processes;
- `keda` (the operator) and `keda-adapter` as host processes with the local
  admin kubeconfig, every port given explicitly;
- the adapter registered as `v1beta1.external.metrics.k8s.io` through a
  selector-less Service and an EndpointSlice at the host's address on the pod
  bridge, with the CA as the APIService's caBundle;
- the ClusterRole and binding that let the HPA controller (which calls as
  kube-system/horizontal-pod-autoscaler) read external metrics.

Nothing here runs in `make test`, CI or `.ci/run`.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bench.scale import wait_until
from corral_local.localcluster import _pki
from corral_local.postgres import free_port

ROOT = Path(__file__).resolve().parent.parent
KEDA_VERSION = "2.21.0"
CACHE = Path(os.environ.get("CORRAL_CACHE", Path.home() / ".cache" / "corral"))
HOME = CACHE / f"keda-v{KEDA_VERSION}"
NAMESPACE = "keda"
HOST_ADDRESS = "10.244.0.1"  # the host on the node agent's bridge (corral0)
ADAPTER_SERVICE = "keda-metrics-apiserver"
GRPC_AUTHORITY = "keda-operator.keda.svc.cluster.local"


class KedaError(RuntimeError):
    """KEDA cannot be built or started here; the message says where and why."""


def built() -> Path:
    """The cached KEDA build, made by tools/keda/build.sh when missing
    (about 18 minutes cold on 2 cores, a second when cached)."""
    env = {**os.environ, "KEDA_VERSION": KEDA_VERSION}
    result = subprocess.run(["bash", str(ROOT / "tools" / "keda" / "build.sh")], env=env)
    if result.returncode != 0:
        raise KedaError(
            f"`bash tools/keda/build.sh` (make keda-bins) exited {result.returncode}; "
            "its output above says which step failed"
        )
    for binary in ("keda", "keda-adapter"):
        if not os.access(HOME / "bin" / binary, os.X_OK):
            raise KedaError(f"{HOME / 'bin' / binary} is missing after `make keda-bins`")
    return HOME


class Keda:
    """KEDA's operator and metrics adapter as host processes on `platform`;
    `start()` returns once the external metrics API is Available."""

    def __init__(self, platform: Any, workdir: Path, say: Any) -> None:
        self.platform = platform
        self.workdir = workdir
        self.say = say
        self.certs = workdir / "certs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.adapter_port = free_port(HOST_ADDRESS)

    # -- start ---------------------------------------------------------------------

    def start(self) -> None:
        home = built()
        self._certificates()
        self.say(f"applying KEDA v{KEDA_VERSION}'s CRDs")
        # Server-side: the ScaledJob CRD is larger than the annotation
        # client-side apply would keep.
        self.platform.kubectl("apply", "--server-side", "-f", str(home / "crds"), timeout_s=120)
        for crd in ("scaledobjects.keda.sh", "triggerauthentications.keda.sh"):
            # (`kubectl wait` fails outright while a new CRD has no conditions yet)
            def established(c: str = crd) -> bool:
                return "True" in self.platform.kubectl(
                    "get", "crd", c, "-o",
                    "jsonpath={.status.conditions[?(@.type=='Established')].status}",
                )  # fmt: skip

            wait_until(established, f"the CRD {crd} Established", 60)
        self.platform.kubectl("create", "namespace", NAMESPACE)
        kubeconfig = str(self.platform.cluster.kubeconfig)
        env = {
            **os.environ,
            "KUBECONFIG": kubeconfig,
            "WATCH_NAMESPACE": "",  # all namespaces; must be set
            "POD_NAMESPACE": NAMESPACE,
            "KEDA_CLUSTER_OBJECT_NAMESPACE": NAMESPACE,
        }
        env.pop("KUBERNETES_SERVICE_HOST", None)
        grpc = f"127.0.0.1:{free_port()}"
        self.say("starting keda (the operator) and keda-adapter as host processes")
        self._spawn("keda", env, [
            str(home / "bin" / "keda"), f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--enable-cert-rotation=false", f"--cert-dir={self.certs}",
            f"--metrics-service-bind-address={grpc}",
            f"--metrics-bind-address=127.0.0.1:{free_port()}",
            f"--health-probe-bind-address=127.0.0.1:{free_port()}",
            "--zap-log-level=info", "--zap-encoder=console", "--zap-time-encoding=rfc3339",
        ])  # fmt: skip
        self._spawn("keda-adapter", env, [
            str(home / "bin" / "keda-adapter"), f"--kubeconfig={kubeconfig}",
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--bind-address={HOST_ADDRESS}", f"--secure-port={self.adapter_port}",
            f"--cert-dir={self.certs}", f"--tls-cert-file={self.certs / 'tls.crt'}",
            f"--tls-private-key-file={self.certs / 'tls.key'}",
            f"--metrics-service-address={grpc}",
            f"--metrics-service-grpc-authority={GRPC_AUTHORITY}",
            f"--port={free_port()}", "--zap-log-level=info",
        ])  # fmt: skip
        self.platform.kubectl("apply", "-f", "-", input=self._registration())
        self.say("waiting for the external metrics API (APIService Available)")
        try:
            self.platform.kubectl("wait", "--for=condition=Available", "--timeout=120s",
                                  "apiservice/v1beta1.external.metrics.k8s.io", timeout_s=150)  # fmt: skip
        except Exception as exc:
            raise KedaError(
                "the APIService v1beta1.external.metrics.k8s.io did not become Available "
                f"in 120 s ({exc}); see {self.workdir}/keda-adapter.log and "
                f"`kubectl get apiservice v1beta1.external.metrics.k8s.io -o yaml`"
            ) from exc
        self._check_alive()

    def _spawn(self, name: str, env: dict[str, str], argv: list[str]) -> None:
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        self.processes[name] = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def _check_alive(self) -> None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-2000:]
                raise KedaError(f"{name} exited with {proc.returncode}; its log ends:\n{tail}")

    def _certificates(self) -> None:
        """ca.crt, tls.crt, tls.key in one directory: KEDA's gRPC link reads
        all three from --cert-dir on both ends (mutual TLS, one certificate
        with serverAuth and clientAuth), and the adapter serves tls.crt."""
        ca = _pki.KeyPair(self.certs / "ca.crt", self.certs / "ca.key")
        _pki.create_ca(ca, "corral-bench-keda-ca")
        _pki.issue_cert(
            ca, _pki.KeyPair(self.certs / "tls.crt", self.certs / "tls.key"), "keda",
            server=True, client=True,
            dns_names=[GRPC_AUTHORITY, "keda-operator", f"{ADAPTER_SERVICE}.{NAMESPACE}.svc",
                       f"{ADAPTER_SERVICE}.{NAMESPACE}.svc.cluster.local", "localhost"],
            ip_addresses=["127.0.0.1", HOST_ADDRESS],
        )  # fmt: skip

    def _registration(self) -> str:
        ca_bundle = base64.b64encode((self.certs / "ca.crt").read_bytes()).decode()
        docs: list[dict[str, Any]] = [
            {   # no selector: the endpoint is the host process, given below
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE},
                "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP"}]},
            },
            {   # the slice's port name must equal the Service's (aggregator routing)
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE,
                             "labels": {"kubernetes.io/service-name": ADAPTER_SERVICE}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [HOST_ADDRESS], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": self.adapter_port, "protocol": "TCP"}],
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
                "spec": {
                    "group": "external.metrics.k8s.io", "version": "v1beta1",
                    "groupPriorityMinimum": 100, "versionPriority": 100,
                    "service": {"name": ADAPTER_SERVICE, "namespace": NAMESPACE, "port": 443},
                    "caBundle": ca_bundle,
                },
            },
            {   # KEDA's config/metrics-server/role.yaml: read external metrics
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": "keda-external-metrics-reader"},
                "rules": [{"apiGroups": ["external.metrics.k8s.io"], "resources": ["*"],
                           "verbs": ["get", "list", "watch"]}],
            },
            {   # the HPA controller calls as its own service account
                # (--use-service-account-credentials on the controller-manager)
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": "keda-hpa-controller-external-metrics"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "keda-external-metrics-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler",
                              "namespace": "kube-system"}],
            },
        ]  # fmt: skip
        return "\n---\n".join(yaml.safe_dump(d) for d in docs)

    # -- stop ----------------------------------------------------------------------

    def stop(self) -> None:
        """Stop both processes; the APIService goes first, so the API server
        does not keep routing discovery to an adapter that is gone."""
        try:
            self.platform.kubectl("delete", "apiservice", "v1beta1.external.metrics.k8s.io",
                                  "--ignore-not-found", check=False)  # fmt: skip
        except Exception as exc:  # teardown only: the cluster goes next anyway
            print(f"deleting the APIService failed: {exc}", file=sys.stderr)
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.processes.values():
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""The node agent: N Nodes, their Leases, and a pod worker per bound pod.

Started by `__main__` (the CLI) or in-process by tests. It registers each Node
and keeps it Ready (status + Lease heartbeats), watches every pod, starts a
`_pod.PodWorker` for each pod bound to one of its nodes, serves the chaos
control socket (`_control`), and on shutdown stops every container and removes
the sandboxes it made.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from corral_local import hostimage
from corral_local.nodeagent._images import ImageMap
from corral_local.nodeagent._kube import ApiError, KubeClient
from corral_local.nodeagent._logserver import serve_logs
from corral_local.nodeagent._network import BridgeNetwork, HostNetwork, netns_problem
from corral_local.nodeagent._nodespec import NodeSpec, node_object, node_status
from corral_local.nodeagent._pod import Backoff, PodContext, PodWorker
from corral_local.nodeagent._runtime import mount_namespaces_problem
from corral_local.nodeagent._status import micro_time, now_iso

Json = dict[str, Any]
log = logging.getLogger("corral.nodeagent")

LEASE_NAMESPACE = "kube-node-lease"


@dataclass
class AgentConfig:
    kubeconfig: Path
    nodes: list[NodeSpec]
    state_dir: Path
    images_file: Path | None = None
    bridge: str = "corral0"
    pod_cidr: str = "10.244.0.0/16"
    lease_duration_s: int = 40
    lease_renew_s: float = 10.0
    status_every_s: float = 60.0
    backoff: Backoff = field(default_factory=Backoff)
    network: str = "auto"  # auto | bridge | host
    kubelet_port: int = 10250


def _use_host_image() -> IO[bytes] | None:
    """Point `{python}` in the image map at a host image pods can execute, and
    hold it (`hostimage.hold`: no build elsewhere prunes it while we run).

    As root the agent drops each container to its runAsUser, and that user
    usually cannot enter the developer's virtualenv (pyenv under /root), so
    corral is snapshotted into a world-readable host image first.
    """
    given = os.environ.get("CORRAL_IMAGE_PYTHON")
    if given:  # built by make dev or the e2e fixture
        image = Path(given).parent.parent
        if not (image / ".complete").exists():
            return None  # not a host image: nothing a build would prune
        try:
            return hostimage.hold(image)
        except OSError as exc:
            log.warning("host image %s not held (%s): a build elsewhere may prune it", image, exc)
            return None
    if os.geteuid() != 0 or hostimage.source_tree() is None:
        return None
    image = hostimage.ensure_image(say=log.info)
    held = hostimage.hold(image)
    os.environ["CORRAL_IMAGE_PYTHON"] = str(image / "bin" / "python")
    log.info("pods run corral from host image %s", image)
    return held


class NodeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.kube = KubeClient(config.kubeconfig)
        self._image_held = _use_host_image()  # for the agent's life
        self.images = ImageMap.load(config.images_file)
        # Why pods share the host's network, or have no private mounts (None: they do
        # not); in the log, `describe()` and the ready file, so a test can say why.
        self.network_problem = "--network host" if config.network == "host" else netns_problem()
        use_bridge = config.network == "bridge" or self.network_problem is None
        if use_bridge:
            self.network_problem = None
        self.network: BridgeNetwork | HostNetwork = (
            BridgeNetwork(config.bridge, config.pod_cidr) if use_bridge else HostNetwork()
        )
        self.mounts_problem = mount_namespaces_problem()
        self.private_mounts = self.mounts_problem is None
        for what, problem in (
            ("pods share the host's network", self.network_problem),
            ("containers get no mount namespace", self.mounts_problem),
        ):
            if problem is not None:
                log.warning("%s: %s", what, problem)
        self.nodes = {n.name: n for n in config.nodes}
        self.stopped_nodes: set[str] = set()
        self.workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._node_conditions: dict[str, list[Json]] = {}
        self._last_status_at: dict[str, float] = {}
        self._resync = threading.Event()
        self._log_server: Any = None
        config.state_dir.mkdir(parents=True, exist_ok=True)
        self.pod_context = PodContext(
            kube=self.kube,
            network=self.network,
            images=self.images,
            state_dir=config.state_dir,
            private_mounts=self.private_mounts,
            backoff=config.backoff,
            node_allocatable=lambda node: (
                self.nodes[node].full_capacity() if node in self.nodes else {}
            ),
            on_exit=self._worker_exited,
        )

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> None:
        self.network.up()
        served = serve_logs(
            self.network.host_ip, self._log_file, self.config.state_dir / "tls", self.kube.ca_file
        )
        if served is not None:
            self._log_server, self.config.kubelet_port = served
        for spec in self.nodes.values():
            self._register(spec)
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "pod-watch")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        log.info(
            "node agent up: nodes=%s network=%s private-mounts=%s",
            ",".join(self.nodes),
            "bridge " + self.config.bridge if isinstance(self.network, BridgeNetwork) else "host",
            self.private_mounts,
        )

    def stop(self) -> None:
        """Stop every container (SIGTERM, 2 s, SIGKILL) and remove what was made."""
        self._stop.set()
        with self._lock:
            workers = list(self.workers.values())
        for w in workers:
            w.removed()  # terminate quickly, leave the API objects alone
        for w in workers:
            w.join(timeout=10)
            if w.is_alive():  # stuck (a hook?): nothing may outlive the agent
                w.hard_stop()
                w.join(timeout=5)
        for t in self._threads:
            t.join(timeout=2)
        if self._log_server is not None:
            self._log_server.stopping.set()
            self._log_server.shutdown()
        self.network.down()

    def _log_file(self, namespace: str, pod: str, container: str, previous: bool) -> Path | None:
        """The newest incarnation's log (or the one before it) of a container."""
        dirs = sorted(
            (self.config.state_dir / "pods").glob(f"{namespace}_{pod}_*"),
            key=lambda p: p.stat().st_mtime,
        )
        if not dirs:
            return None
        runs = sorted(
            (int(p.stem), p)
            for p in (dirs[-1] / "logs" / container).glob("*.log")
            if p.stem.isdigit()
        )
        if len(runs) < (2 if previous else 1):
            return None
        return runs[-2 if previous else -1][1]

    # -- chaos ------------------------------------------------------------------------
    def kill_pod(self, namespace: str, name: str, container: str | None = None) -> list[str]:
        with self._lock:
            workers = [
                w for w in self.workers.values() if (w.namespace, w.pod_name) == (namespace, name)
            ]
        if not workers:
            raise KeyError(f"pod {namespace}/{name} is not running on this agent's nodes")
        return [c for w in workers for c in w.chaos_kill(container)]

    def stop_node(self, node: str) -> int:
        if node not in self.nodes:
            raise KeyError(f"node {node!r} is not one of this agent's nodes")
        with self._lock:
            self.stopped_nodes.add(node)
            workers = [w for w in self.workers.values() if w.node == node]
        for w in workers:
            w.hard_stop()
        for w in workers:
            w.join(timeout=30)
        return len(workers)

    def start_node(self, node: str) -> None:
        if node not in self.nodes:
            raise KeyError(f"node {node!r} is not one of this agent's nodes")
        with self._lock:
            self.stopped_nodes.discard(node)
        self._register(self.nodes[node])
        for pod in self.kube.request("GET", "/api/v1/pods").get("items", []):
            self._handle(pod)

    def describe(self) -> Json:
        with self._lock:
            return {
                "nodes": [{"name": n, "stopped": n in self.stopped_nodes} for n in self.nodes],
                "pods": [w.describe() for w in self.workers.values()],
                "network": "bridge" if isinstance(self.network, BridgeNetwork) else "host",
                "privateMounts": self.private_mounts,
                "networkProblem": self.network_problem,
                "privateMountsProblem": self.mounts_problem,
            }

    # -- nodes and leases -------------------------------------------------------------------
    def _address(self) -> str:
        return self.network.host_ip

    def _register(self, spec: NodeSpec) -> None:
        body = node_object(spec)
        try:
            self.kube.request("POST", "/api/v1/nodes", body)
        except ApiError as exc:
            if exc.status != 409:
                raise
            self.kube.request(
                "PATCH",
                f"/api/v1/nodes/{spec.name}",
                {"metadata": {"labels": body["metadata"]["labels"]}},
                content_type="application/merge-patch+json",
            )
        self._post_status(spec)
        self._renew_lease(spec)

    def _post_status(self, spec: NodeSpec) -> None:
        status = node_status(
            spec,
            self._address(),
            now_iso(),
            self.config.kubelet_port,
            self._node_conditions.get(spec.name, []),
        )
        self.kube.request(
            "PATCH",
            f"/api/v1/nodes/{spec.name}/status",
            {"status": status},
            content_type="application/strategic-merge-patch+json",
        )
        self._node_conditions[spec.name] = status["conditions"]
        self._last_status_at[spec.name] = time.monotonic()

    def _renew_lease(self, spec: NodeSpec) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{spec.name}"
        renew = {"spec": {"renewTime": micro_time(), "holderIdentity": spec.name}}
        try:
            self.kube.request("PATCH", path, renew, content_type="application/merge-patch+json")
            return
        except ApiError as exc:
            if exc.status != 404:
                raise
        node = self.kube.get(f"/api/v1/nodes/{spec.name}") or {}
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {
                "name": spec.name,
                "namespace": LEASE_NAMESPACE,
                "ownerReferences": [
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "name": spec.name,
                        "uid": node.get("metadata", {}).get("uid", ""),
                    }
                ],
            },
            "spec": {
                "holderIdentity": spec.name,
                "leaseDurationSeconds": self.config.lease_duration_s,
                "renewTime": micro_time(),
            },
        }
        with contextlib.suppress(ApiError):
            self.kube.request(
                "POST", f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", lease
            )

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.config.lease_renew_s):
            for spec in list(self.nodes.values()):
                if spec.name in self.stopped_nodes:
                    continue
                try:
                    self._renew_lease(spec)
                    due = self._last_status_at.get(spec.name, 0) + self.config.status_every_s
                    if time.monotonic() >= due:
                        self._post_status(spec)
                except Exception as exc:
                    log.warning("node %s: heartbeat failed: %s", spec.name, exc)

    # -- pods ----------------------------------------------------------------------------------
    def _worker_exited(self, uid: str, finished: bool) -> None:
        with self._lock:
            worker = self.workers.get(uid)
            if worker is not None and worker.ident == threading.get_ident():
                del self.workers[uid]  # only itself: a successor may already be registered
            if finished:
                # late watch events of a pod we already terminated must not
                # start it again (a node stop is not finished: start_node resumes)
                self._finished.add(uid)

    def _handle(self, pod: Json) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in self.nodes or node in self.stopped_nodes or self._stop.is_set():
            return
        uid = pod["metadata"]["uid"]
        with self._lock:
            if uid in self._finished:
                return
            worker = self.workers.get(uid)
            if worker is not None:
                worker.update(pod)
                return
            phase = (pod.get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                if pod["metadata"].get("deletionTimestamp"):
                    self.kube.delete_pod_now(
                        pod["metadata"]["namespace"], pod["metadata"]["name"], uid
                    )
                return
            worker = PodWorker(self.pod_context, pod)
            self.workers[uid] = worker
        worker.start()

    def _forget(self, uid: str) -> None:
        with self._lock:
            worker = self.workers.get(uid)
        if worker is not None:
            worker.removed()

    def _watch_loop(self) -> None:
        version = ""
        while not self._stop.is_set():
            try:
                if not version or self._resync.is_set():
                    self._resync.clear()
                    listing = self.kube.request("GET", "/api/v1/pods")
                    version = listing["metadata"]["resourceVersion"]
                    seen = set()
                    for pod in listing.get("items", []):
                        seen.add(pod["metadata"]["uid"])
                        self._handle(pod)
                    with self._lock:
                        gone = [u for u in self.workers if u not in seen]
                    for uid in gone:
                        self._forget(uid)
                for kind, obj in self.kube.watch(
                    "/api/v1/pods", query={"resourceVersion": version}, timeout_s=60
                ):
                    if self._stop.is_set() or self._resync.is_set():
                        break
                    if kind == "ERROR":
                        version = ""
                        break
                    version = obj.get("metadata", {}).get("resourceVersion", version)
                    if kind == "BOOKMARK":
                        continue
                    if kind == "DELETED":
                        self._forget(obj["metadata"]["uid"])
                    else:
                        self._handle(obj)
            except ApiError as exc:
                if exc.status == 410:
                    version = ""
                    continue
                log.warning("pod watch: %s", exc)
                self._stop.wait(1.0)
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("pod watch interrupted: %s", exc)
                self._stop.wait(1.0)

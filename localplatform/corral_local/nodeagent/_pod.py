"""One pod's life on a node, as the kubelet's pod worker lives it.

`_agent` starts a `PodWorker` thread for each pod bound to one of its nodes and
feeds it every newer version of the pod from its watch. The worker builds the
sandbox (netns + volumes), runs init containers in order, then the containers,
restarts them by restartPolicy with capped exponential back-off, runs probes,
publishes status (`_status`) whenever it changes, and on deletion stops each
container in kubelet order (preStop, SIGTERM, SIGKILL at the end of the grace
period) before removing the pod object with grace 0.
"""

from __future__ import annotations

import contextlib
import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlparse

from corral_local.nodeagent._env import ConfigError, Sources, command_line, container_env
from corral_local.nodeagent._identity import container_identity
from corral_local.nodeagent._images import ImageMap, image_python, normalise
from corral_local.nodeagent._kube import ApiError, KubeClient
from corral_local.nodeagent._network import Sandbox
from corral_local.nodeagent._probes import ProbeSchedule, ProbeWorker, run_http, run_tcp
from corral_local.nodeagent._runtime import (
    ContainerProcess,
    LaunchSpec,
    Namespaces,
    exec_in,
    exit_code_of,
    interpreter_shadow,
)
from corral_local.nodeagent._status import (
    ContainerRecord,
    now_iso,
    pod_conditions,
    pod_phase,
)
from corral_local.nodeagent._volumes import VolumeContext, materialise

Json = dict[str, Any]
log = logging.getLogger("corral.nodeagent")

HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Network(Protocol):
    host_ip: str
    gateway: str

    def create(self, pod_uid: str) -> Sandbox: ...

    def delete(self, sandbox: Sandbox) -> None: ...


@dataclass
class Backoff:
    """Crash back-off: base * 2^n seconds, capped; reset after a long clean run."""

    base_s: float = 10.0
    cap_s: float = 300.0

    def delay(self, consecutive_crashes: int) -> float:
        return float(min(self.cap_s, self.base_s * (2 ** max(0, consecutive_crashes - 1))))

    @property
    def reset_after_s(self) -> float:
        return 2 * self.cap_s


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def grace_period_s(pod: Json) -> float:
    meta = pod.get("metadata") or {}
    if meta.get("deletionGracePeriodSeconds") is not None:
        return float(meta["deletionGracePeriodSeconds"])
    spec_grace = (pod.get("spec") or {}).get("terminationGracePeriodSeconds")
    return float(30 if spec_grace is None else spec_grace)


@dataclass
class PodContext:
    """What every pod worker shares with the agent."""

    kube: KubeClient
    network: Network
    images: ImageMap
    state_dir: Path
    private_mounts: bool
    backoff: Backoff
    node_allocatable: Callable[[str], dict[str, str]]
    on_exit: Callable[[str, bool], None]  # (pod uid, finished: terminated for good)


class PodWorker(threading.Thread):
    def __init__(self, ctx: PodContext, pod: Json) -> None:
        meta = pod["metadata"]
        super().__init__(daemon=True, name=f"pod-{meta['namespace']}/{meta['name']}")
        self.ctx = ctx
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.node: str = pod["spec"]["nodeName"]
        self._pod = pod
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._removed = False
        self._hard_stop = False
        self._killed = threading.Event()  # set with _hard_stop, to cut waits short
        self._removed_at: float | None = None
        self.sandbox: Sandbox | None = None
        self.dir = ctx.state_dir / "pods" / f"{self.namespace}_{self.pod_name}_{self.uid}"
        self.volumes: dict[str, Path] = {}
        self._token_refresh_at: float | None = None
        spec = pod["spec"]
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init_specs: list[Json] = list(spec.get("initContainers") or [])
        self.specs: list[Json] = list(spec.get("containers") or [])
        previous = {
            s["name"]: s
            for s in ((pod.get("status") or {}).get("containerStatuses") or [])
            + ((pod.get("status") or {}).get("initContainerStatuses") or [])
        }
        self.records: dict[str, ContainerRecord] = {}
        for c, init in [(c, True) for c in self.init_specs] + [(c, False) for c in self.specs]:
            rec = ContainerRecord(name=c["name"], image=c.get("image", ""), init=init)
            before = previous.get(c["name"])
            if before and before.get("containerID"):
                # an earlier agent ran it: this start is a restart
                rec.restart_count = int(before.get("restartCount", 0)) + 1
            self.records[c["name"]] = rec
        self.procs: dict[str, ContainerProcess] = {}
        self._execs: set[subprocess.Popen[bytes]] = set()  # exec probes and hooks running
        self.launch: dict[str, LaunchSpec] = {}
        self.probes: dict[str, list[ProbeWorker]] = {}
        self.restart_at: dict[str, float] = {}
        self.crashes: dict[str, int] = {}
        self.started_mono: dict[str, float] = {}
        self._to_kill: dict[str, str] = {}  # container -> why (probe failure)
        self._stopping: set[str] = set()
        self._init_failed = False
        self._last_status: Json | None = None
        self._last_conditions: list[Json] | None = None
        self._start_time = (pod.get("status") or {}).get("startTime") or now_iso()

    # -- inputs from the agent --------------------------------------------------
    def update(self, pod: Json) -> None:
        with self._lock:
            self._pod = pod
        self._wake.set()

    def removed(self) -> None:
        """The pod object is gone (or the agent stops): stop fast, skip preStop."""
        self._removed = True
        self._removed_at = time.monotonic()
        self._kill_execs()
        self._wake.set()

    def _kill_execs(self) -> None:
        for helper in list(self._execs):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(helper.pid, signal.SIGKILL)

    def hard_stop(self) -> None:
        """The node died: everything dies now, and nothing is reported."""
        self._hard_stop = True
        self._killed.set()
        with self._lock:
            for proc in self.procs.values():
                proc.kill_all()
        self._kill_execs()
        self._wake.set()

    def chaos_kill(self, container: str | None = None) -> list[str]:
        """kill -9 the container's (or every container's) processes."""
        killed = []
        with self._lock:
            for name, proc in self.procs.items():
                if container in (None, name) and proc.poll() is None:
                    proc.kill_all()
                    killed.append(name)
        self._wake.set()
        return killed

    def describe(self) -> Json:
        with self._lock:
            return {
                "namespace": self.namespace,
                "name": self.pod_name,
                "uid": self.uid,
                "node": self.node,
                "podIP": self.sandbox.pod_ip if self.sandbox else None,
                "dir": str(self.dir),
                "containers": [
                    {
                        "name": n,
                        "pid": self.procs[n].pid if n in self.procs else None,
                        "state": r.state,
                        "restartCount": r.restart_count,
                        "log": str(self.log_path(n, r.restart_count)),
                    }
                    for n, r in self.records.items()
                ],
            }

    # -- helpers ----------------------------------------------------------------
    @property
    def pod(self) -> Json:
        with self._lock:
            return self._pod

    def log_path(self, container: str, restart: int) -> Path:
        return self.dir / "logs" / container / f"{restart}.log"

    def _event(self, reason: str, message: str, etype: str = "Normal") -> None:
        if self._hard_stop:
            return
        stamp = now_iso()
        self.ctx.kube.create_event(
            self.namespace,
            {
                "metadata": {"generateName": f"{self.pod_name}."},
                "involvedObject": {
                    "kind": "Pod",
                    "apiVersion": "v1",
                    "namespace": self.namespace,
                    "name": self.pod_name,
                    "uid": self.uid,
                },
                "reason": reason,
                "message": message,
                "type": etype,
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "eventTime": None,
                "count": 1,
                "source": {"component": "kubelet", "host": self.node},
                "reportingComponent": "kubelet",
                "reportingInstance": self.node,
            },
        )

    def _deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    # -- the loop ---------------------------------------------------------------
    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.error(
                "pod %s/%s: worker crashed:\n%s",
                self.namespace,
                self.pod_name,
                traceback.format_exc(),
            )
            for proc in list(self.procs.values()):
                proc.kill_all()
        finally:
            self._stop_probes(None)
            self._teardown_sandbox()
            self.ctx.on_exit(self.uid, not self._hard_stop)

    def _loop(self) -> None:
        while True:
            if self._hard_stop:
                for proc in list(self.procs.values()):
                    proc.kill_all()
                return
            if self._removed or self._deleting():
                self._terminate()
                return
            phase = self._phase()
            if phase in ("Succeeded", "Failed"):
                self._publish()
                self._teardown_sandbox()
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            if self.sandbox is None and not self._make_sandbox():
                self._publish()
                self._wake.wait(2.0)
                self._wake.clear()
                continue
            self._refresh_tokens()
            self._step()
            self._publish()
            self._wake.wait(0.2)
            self._wake.clear()

    # -- sandbox ------------------------------------------------------------------
    def _host_ip(self) -> str:
        return self.ctx.network.host_ip

    def _volume_context(self, pod_ip: str) -> VolumeContext:
        def token(audiences: list[str] | None, expiration_s: int) -> str:
            sa = self.pod["spec"].get("serviceAccountName") or "default"
            answer = self.ctx.kube.request_token(
                self.namespace, sa, audiences=audiences, expiration_s=expiration_s, pod=self.pod
            )
            return str(answer["status"]["token"])

        return VolumeContext(
            pod=self.pod,
            secret=lambda n: self.ctx.kube.get_secret(self.namespace, n),
            config_map=lambda n: self.ctx.kube.get_config_map(self.namespace, n),
            token=token,
            pod_ip=pod_ip,
            host_ip=self._host_ip(),
            node_allocatable=self.ctx.node_allocatable(self.node),
        )

    def _make_sandbox(self) -> bool:
        host_network = bool(self.pod["spec"].get("hostNetwork"))
        try:
            sandbox = (
                Sandbox(self._host_ip(), None)
                if host_network
                else self.ctx.network.create(self.uid)
            )
        except Exception as exc:
            self._event("FailedCreatePodSandBox", f"network: {exc}", "Warning")
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        try:
            refresh: float | None = None
            ctx = self._volume_context(sandbox.pod_ip)
            for volume in self.pod["spec"].get("volumes") or []:
                path, at = materialise(volume, self.dir / "volumes", ctx)
                self.volumes[volume["name"]] = path
                if at is not None:
                    refresh = at if refresh is None else min(refresh, at)
            self._token_refresh_at = refresh
        except (ConfigError, ApiError, OSError) as exc:
            if not host_network:
                self.ctx.network.delete(sandbox)
            self._event("FailedMount", f"MountVolume.SetUp failed: {exc}", "Warning")
            for rec in self.records.values():
                rec.message = str(exc)
            return False
        self._write_etc(sandbox)
        with self._lock:
            self.sandbox = sandbox
        return True

    def _write_etc(self, sandbox: Sandbox) -> None:
        """/etc/hosts and /etc/resolv.conf for the pod, as the kubelet writes them.

        There is no cluster DNS: resolv.conf points at the pod's own loopback, so
        a lookup fails at once instead of timing out against an unreachable
        server (http.server's getfqdn would hang for seconds).
        """
        etc = self.dir / "etc"
        etc.mkdir(exist_ok=True)
        hostname = self.pod["spec"].get("hostname") or self.pod_name
        (etc / "hosts").write_text(
            "# Kubernetes-managed hosts file (corral node agent).\n"
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
            f"{sandbox.pod_ip}\t{hostname}\n"
        )
        (etc / "resolv.conf").write_text(
            "# corral node agent: no cluster DNS\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
        )
        for f in ("hosts", "resolv.conf"):
            (etc / f).chmod(0o644)

    def _refresh_tokens(self) -> None:
        if self._token_refresh_at is None or time.time() < self._token_refresh_at:
            return
        assert self.sandbox is not None
        ctx = self._volume_context(self.sandbox.pod_ip)
        refresh: float | None = None
        for volume in self.pod["spec"].get("volumes") or []:
            if "projected" in volume:
                try:
                    _, at = materialise(volume, self.dir / "volumes", ctx)
                except (ConfigError, ApiError, OSError) as exc:
                    log.warning("pod %s: token refresh failed: %s", self.pod_name, exc)
                    at = time.time() + 10
                if at is not None:
                    refresh = at if refresh is None else min(refresh, at)
        self._token_refresh_at = refresh

    def _teardown_sandbox(self) -> None:
        with self._lock:
            sandbox, self.sandbox = self.sandbox, None
        if sandbox is not None and sandbox.netns:
            self.ctx.network.delete(sandbox)

    # -- containers -----------------------------------------------------------------
    def _service_env(self) -> dict[str, str]:
        url = urlparse(self.ctx.kube.server)
        port = str(url.port or 443)
        host = (
            self.ctx.network.gateway
            if self.sandbox and self.sandbox.netns
            else (url.hostname or "127.0.0.1")
        )
        return {
            "KUBERNETES_SERVICE_HOST": host,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://{host}:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": host,
        }

    def _build_launch(self, spec: Json) -> LaunchSpec:
        """Resolve image, env, command and mounts; ConfigError / LookupError on failure."""
        if self.records[spec["name"]].init and spec.get("restartPolicy") == "Always":
            # Left to the init loop it would wait for the sidecar to exit: Init for ever.
            raise ConfigError(
                f"init container {spec['name']} has restartPolicy: Always (a sidecar "
                "container): sidecar containers are not supported by the corral node agent; "
                "make it a regular container of the pod"
            )
        image = self.ctx.images.resolve(spec.get("image", ""))
        if image is None:
            raise LookupError(
                f'image "{spec.get("image", "")}" (as "{normalise(spec.get("image", ""))}") '
                "is not in the node agent's image map; add an entry to images.yaml "
                "or pass --images FILE"
            )
        assert self.sandbox is not None
        sources = Sources(
            secret=lambda n: self.ctx.kube.get_secret(self.namespace, n),
            config_map=lambda n: self.ctx.kube.get_config_map(self.namespace, n),
            pod_ip=self.sandbox.pod_ip,
            host_ip=self._host_ip(),
            node_allocatable=self.ctx.node_allocatable(self.node),
        )
        venv_bin = str(Path(image_python()).parent)
        base = {"PATH": f"{venv_bin}:{HOST_PATH}", "HOSTNAME": self.pod_name, "HOME": "/root"}
        base.update(image.env)
        base.update(self._service_env())
        env = container_env(self.pod, spec, sources, base)
        argv = command_line(spec, image.entrypoint, image.cmd, env)
        if not argv:
            raise ConfigError(
                f"container {spec['name']}: no command (image has none, pod gives none)"
            )
        sc = spec.get("securityContext") or {}
        who = container_identity(self.pod, spec, os.geteuid(), os.getegid())
        uid, gid = who.uid, who.gid
        if uid is not None and uid != 0:
            env.setdefault("HOME", "/")
            if env.get("HOME") == "/root":
                env["HOME"] = "/"
        mounts: list[tuple[str, str, bool]] = []
        for m in spec.get("volumeMounts") or []:
            source = self.volumes.get(m["name"])
            if source is None:
                raise ConfigError(f"volumeMount {m['name']!r} names no volume of the pod")
            if m.get("subPath"):
                source = source / m["subPath"]
                if not source.exists():
                    source.mkdir(parents=True, exist_ok=True)
            mounts.append((str(source), m["mountPath"], bool(m.get("readOnly"))))
        if self.sandbox.netns:
            for f in ("hosts", "resolv.conf"):
                mounts.append((str(self.dir / "etc" / f), f"/etc/{f}", False))
        mounts += self._identity_files(uid, gid)
        return LaunchSpec(
            argv=argv,
            env=env,
            cwd=spec.get("workingDir") or image.working_dir,
            mounts=mounts,
            read_only_root=bool(sc.get("readOnlyRootFilesystem")),
            hostname=self.pod["spec"].get("hostname") or self.pod_name,
            uid=uid,
            gid=gid,
            groups=who.groups,
            shadow=interpreter_shadow() if uid is not None and uid != 0 else [],
        )

    def _identity_files(self, uid: Any, gid: Any) -> list[tuple[str, str, bool]]:
        """/etc/passwd and /etc/group that know the runAsUser/runAsGroup.

        An image names its users; the host does not know uid 65532, and
        getpass.getuser() (kopf calls it) fails for a uid without an entry.
        """
        out: list[tuple[str, str, bool]] = []
        etc = self.dir / "etc"
        etc.mkdir(exist_ok=True)
        for ident, table, path in ((uid, pwd, "passwd"), (gid, grp, "group")):
            if ident is None:
                continue
            try:
                (pwd.getpwuid if table is pwd else grp.getgrgid)(int(ident))
                continue  # the host knows it
            except KeyError:
                pass
            name = "nonroot" if int(ident) == 65532 else f"u{int(ident)}"
            if path == "passwd":
                gid_of = int(gid) if gid is not None else int(ident)
                line = f"{name}:x:{int(ident)}:{gid_of}:{name}:/:/usr/sbin/nologin\n"
            else:
                line = f"{name}:x:{int(ident)}:\n"
            target = etc / f"{path}-{int(ident)}"
            target.write_text(Path(f"/etc/{path}").read_text() + line)
            target.chmod(0o644)
            out.append((str(target), f"/etc/{path}", True))
        return out

    def _spec(self, name: str) -> Json:
        return next(c for c in self.init_specs + self.specs if c["name"] == name)

    def _start(self, spec: Json) -> None:
        name = spec["name"]
        rec = self.records[name]
        try:
            launch = self._build_launch(spec)
        except LookupError as exc:
            first = rec.reason != "ErrImagePull"
            rec.state, rec.reason, rec.message = (
                "waiting",
                "ErrImagePull" if first else "ImagePullBackOff",
                str(exc),
            )
            if first:
                self._event("Failed", f"Failed to pull image: {exc}", "Warning")
            self.restart_at[name] = time.monotonic() + self.ctx.backoff.delay(1)
            return
        except (ConfigError, ApiError, ValueError) as exc:
            rec.state, rec.reason, rec.message = "waiting", "CreateContainerConfigError", str(exc)
            self._event("Failed", f"Error: {exc}", "Warning")
            self.restart_at[name] = time.monotonic() + 2.0
            return
        assert self.sandbox is not None
        ns = Namespaces(self.sandbox.netns_path, self.ctx.private_mounts)
        if rec.container_id:
            rec.restart_count += 1
        log_path = self.log_path(name, rec.restart_count)
        with self._lock:
            proc = ContainerProcess.start(launch, ns, log_path, self.dir / "run")
            self.procs[name] = proc
            self.launch[name] = launch
        self.restart_at.pop(name, None)
        self.started_mono[name] = time.monotonic()
        rec.state, rec.reason, rec.message = "running", "", ""
        rec.started_at = now_iso()
        rec.container_id = f"corral://{self.uid}/{name}/{rec.restart_count}/{proc.pid}"
        rec.image_id = f"corral://{normalise(rec.image)}"
        rec.exit_code = rec.signal = None
        rec.ready = False
        rec.started = "startupProbe" not in spec
        self._event("Started", f"Started container {name} (pid {proc.pid})")
        if not rec.init:
            self._start_probes(spec, startup_done=rec.started)
        if rec.started and "readinessProbe" not in spec and not rec.init:
            rec.ready = True

    def _on_exit(self, name: str, returncode: int) -> None:
        rec = self.records[name]
        proc = self.procs.pop(name)
        proc.reap_group()
        self._stop_probes(name)
        code, sig = exit_code_of(returncode)
        rec.state = "terminated"
        rec.exit_code, rec.signal = code, sig
        rec.reason = "Completed" if code == 0 else "Error"
        rec.message = self._to_kill.pop(name, "")
        rec.finished_at = now_iso()
        rec.ready = False
        rec.started = False
        ran_s = time.monotonic() - self.started_mono.get(name, time.monotonic())
        if ran_s > self.ctx.backoff.reset_after_s:
            self.crashes[name] = 0
        if self._removed or self._deleting() or self._hard_stop:
            return
        policy = self.restart_policy
        if rec.init and policy == "Always":
            policy = "OnFailure"  # init containers run to completion
        if not should_restart(policy, code):
            if rec.init and code != 0:
                self._init_failed = True
            return
        self.crashes[name] = self.crashes.get(name, 0) + 1
        delay = self.ctx.backoff.delay(self.crashes[name])
        rec.last_terminated = rec.terminated_json()
        rec.state, rec.reason = "waiting", "CrashLoopBackOff"
        rec.message = f"back-off {delay:g}s restarting failed container={name} pod={self.pod_name}"
        self.restart_at[name] = time.monotonic() + delay
        if delay > 0:
            self._event("BackOff", f"Back-off restarting failed container {name}", "Warning")

    def _step(self) -> None:
        now = time.monotonic()
        with self._lock:
            exited = [(n, p.poll()) for n, p in self.procs.items()]
        for name, code in exited:
            if code is not None and name not in self._stopping:
                self._on_exit(name, code)
        for name, why in list(self._to_kill.items()):
            if name in self.procs and name not in self._stopping:
                self._stopping.add(name)
                # a probe kill is a kill like any other: preStop first, within the grace period
                threading.Thread(
                    target=self._stop_container,
                    args=(name, grace_period_s(self.pod), True, why),
                    daemon=True,
                ).start()
        # init containers in order: the first not yet successful one runs
        for spec in self.init_specs:
            rec = self.records[spec["name"]]
            if rec.state == "terminated" and rec.exit_code == 0:
                continue
            if self._init_failed:
                return
            if (
                spec["name"] not in self.procs
                and rec.state != "terminated"
                and now >= self.restart_at.get(spec["name"], 0)
            ):
                self._start(spec)
            return
        for spec in self.specs:
            name = spec["name"]
            rec = self.records[name]
            if name in self.procs or name in self._stopping or rec.state == "terminated":
                continue
            if now >= self.restart_at.get(name, 0):
                self._start(spec)

    # -- probes ----------------------------------------------------------------------
    def _attempt(self, name: str, probe: Json) -> Callable[[float], tuple[bool, str]]:
        spec = self._spec(name)

        def attempt(timeout_s: float) -> tuple[bool, str]:
            host = self.sandbox.pod_ip if self.sandbox else "127.0.0.1"
            if "httpGet" in probe:
                return run_http(probe["httpGet"], host, spec, timeout_s)
            if "tcpSocket" in probe:
                return run_tcp(probe["tcpSocket"], host, spec, timeout_s)
            if "exec" in probe:
                return self._exec(name, probe["exec"].get("command") or [], timeout_s)
            return False, "probe type not supported by the node agent (grpc?)"

        return attempt

    def _exec(self, name: str, command: list[str], timeout_s: float) -> tuple[bool, str]:
        with self._lock:
            proc = self.procs.get(name)
            launch = self.launch.get(name)
        if launch is None or not command:
            return False, "container is not running"
        spec = LaunchSpec(**{**launch.__dict__, "argv": list(command)})
        code, out = exec_in(
            proc.pid if proc else None,
            self.sandbox.netns_path if self.sandbox else None,
            spec,
            timeout_s,
            self._execs,
        )
        return code == 0, out.strip()

    def _start_probes(self, spec: Json, *, startup_done: bool) -> None:
        name = spec["name"]
        started = time.monotonic()
        kinds = ["startupProbe"] if not startup_done else ["readinessProbe", "livenessProbe"]
        workers = self.probes.setdefault(name, [])
        for kind in kinds:
            if kind not in spec:
                continue
            initial = {"readinessProbe": False, "livenessProbe": True, "startupProbe": None}[kind]
            schedule = ProbeSchedule.from_spec(spec[kind], started, initial)
            worker = ProbeWorker(
                kind, schedule, self._attempt(name, spec[kind]), self._prober(name)
            )
            workers.append(worker)
            worker.start()

    def _prober(self, name: str) -> Callable[[str, bool | None, str, bool], None]:
        def on_change(kind: str, result: bool | None, message: str, changed: bool) -> None:
            with self._lock:
                rec = self.records[name]
                if rec.state != "running":
                    return
                if message:
                    self._event(
                        "Unhealthy", f"{kind[:-5].capitalize()} probe failed: {message}", "Warning"
                    )
                if not changed:
                    return
                if kind == "readinessProbe":
                    rec.ready = bool(result)
                elif kind == "startupProbe" and result:
                    # started: the startup probe is done, liveness/readiness take over
                    for worker in [w for w in self.probes.get(name, []) if w.kind == kind]:
                        worker.stop()
                        self.probes[name].remove(worker)
                    rec.started = True
                    if "readinessProbe" not in self._spec(name):
                        rec.ready = True
                    self._start_probes(self._spec(name), startup_done=True)
                elif result is False and kind in ("livenessProbe", "startupProbe"):
                    self._to_kill[name] = (
                        f"Container {name} failed {kind[:-5]} probe, will be restarted"
                    )
            self._wake.set()

        return on_change

    def _stop_probes(self, name: str | None, kinds: tuple[str, ...] | None = None) -> None:
        """Stop the probes of `name` (None: of every container), of `kinds` only if given."""
        for key in [name] if name else list(self.probes):
            workers = self.probes.get(key, [])
            for worker in [w for w in workers if kinds is None or w.kind in kinds]:
                worker.stop()
                workers.remove(worker)
            if not workers:
                self.probes.pop(key, None)

    # -- stopping ----------------------------------------------------------------------
    def _pre_stop(self, name: str, hook: Json, timeout_s: float) -> None:
        if "exec" in hook:
            ok, out = self._exec(name, hook["exec"].get("command") or [], timeout_s)
        elif "httpGet" in hook:
            host = self.sandbox.pod_ip if self.sandbox else "127.0.0.1"
            ok, out = run_http(hook["httpGet"], host, self._spec(name), timeout_s)
        elif "sleep" in hook:
            self._killed.wait(min(timeout_s, float(hook["sleep"].get("seconds", 0))))
            ok, out = True, ""
        else:
            ok, out = False, "unsupported preStop handler"
        if not ok:
            self._event("FailedPreStopHook", f"PreStop hook for {name} failed: {out}", "Warning")

    def _stop_container(self, name: str, grace_s: float, pre_stop: bool, why: str) -> None:
        """preStop, SIGTERM, then SIGKILL when the grace period runs out."""
        with self._lock:
            proc = self.procs.get(name)
        if proc is None:
            return
        start = time.monotonic()
        deadline = start + grace_s
        self._event("Killing", f"Stopping container {name}{': ' + why if why else ''}")
        hook = (self._spec(name).get("lifecycle") or {}).get("preStop")
        if pre_stop and hook and proc.poll() is None:
            self._pre_stop(name, hook, max(grace_s, 0.001))
            if time.monotonic() >= deadline:
                deadline = time.monotonic() + 2.0  # the kubelet's one-off 2 s extension
        if proc.poll() is None:
            proc.signal_main(signal.SIGTERM)
        while proc.poll() is None and time.monotonic() < deadline:
            if self._removed_at is not None:
                # the object went away meanwhile (or the agent stops): 2 s, no more
                deadline = min(deadline, self._removed_at + 2.0)
            if self._killed.wait(0.05):
                break
        if proc.poll() is None:
            proc.kill_all()
            proc.popen.wait()
        with self._lock:
            self._stopping.discard(name)
            if name in self.procs:
                self._on_exit(name, proc.popen.returncode)
        self._wake.set()

    def _terminate(self) -> None:
        grace = grace_period_s(self.pod)
        if self._removed:
            grace = min(grace, 2.0)  # force-deleted: the object is already gone
        self.restart_at.clear()
        # The kubelet keeps probing readiness while a pod terminates (a draining
        # server may say it is not ready any more); liveness and startup stop,
        # so nothing restarts a container being stopped. Each container's
        # readiness probe stops when it exits. Gone object: no one to tell.
        self._stop_probes(None, None if self._removed else ("livenessProbe", "startupProbe"))
        threads = []
        for name in list(self.procs):
            if name in self._stopping:
                continue
            self._stopping.add(name)
            t = threading.Thread(
                target=self._stop_container, args=(name, grace, not self._removed, ""), daemon=True
            )
            t.start()
            threads.append(t)
        for t in threads:
            while t.is_alive():
                t.join(0.2)
                if not self._removed and not self._hard_stop:
                    try:  # readiness changes during the grace period
                        self._publish()
                    except (ApiError, OSError) as exc:
                        log.warning("pod %s/%s: status: %s", self.namespace, self.pod_name, exc)
        deadline = time.monotonic() + grace + 5
        while self._stopping and time.monotonic() < deadline:  # liveness kills in flight
            time.sleep(0.05)
        for rec in self.records.values():
            if rec.state == "waiting":
                # never (re)started: reported as the kubelet does for such containers
                rec.state = "terminated"
                rec.reason = "Error" if rec.last_terminated else "ContainerStatusUnknown"
                rec.exit_code = 137 if rec.exit_code is None else rec.exit_code
                rec.finished_at = rec.finished_at or now_iso()
        self._teardown_sandbox()
        if self._removed or self._hard_stop:
            return
        with contextlib.suppress(ApiError):
            self._publish(final=True)
        for attempt in range(10):
            try:
                self.ctx.kube.delete_pod_now(self.namespace, self.pod_name, self.uid)
                break
            except ApiError as exc:
                log.warning(
                    "pod %s/%s: delete failed (%s), retrying", self.namespace, self.pod_name, exc
                )
                time.sleep(min(5.0, 0.5 * 2**attempt))
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    # -- status ---------------------------------------------------------------------------
    def _phase(self) -> str:
        init = [self.records[c["name"]] for c in self.init_specs]
        regular = [self.records[c["name"]] for c in self.specs]
        return pod_phase(self.restart_policy, init, regular, init_failed_for_good=self._init_failed)

    def _publish(self, final: bool = False) -> None:
        if self._hard_stop:
            return
        with self._lock:
            init = [self.records[c["name"]] for c in self.init_specs]
            regular = [self.records[c["name"]] for c in self.specs]
            phase = self._phase()
            if final and phase not in ("Succeeded", "Failed"):
                phase = "Succeeded" if all(r.exit_code == 0 for r in regular) else "Failed"
            sandbox = self.sandbox
            pod_ip = sandbox.pod_ip if sandbox else (self._last_status or {}).get("podIP")
            conditions = pod_conditions(
                self.pod, phase, sandbox is not None, init, regular, self._last_conditions
            )
            status: Json = {
                "phase": phase,
                "conditions": conditions,
                "hostIP": self._host_ip(),
                # "$patch: replace": a new sandbox has a new IP, and a merged
                # list of two IPv4 addresses is invalid
                "hostIPs": [{"ip": self._host_ip()}, {"$patch": "replace"}],
                "startTime": self._start_time,
                "containerStatuses": [r.to_status() for r in regular],
            }
            if init:
                status["initContainerStatuses"] = [r.to_status() for r in init]
            if pod_ip:
                status["podIP"] = pod_ip
                status["podIPs"] = [{"ip": pod_ip}, {"$patch": "replace"}]
        if status == self._last_status:
            return
        try:
            self.ctx.kube.patch_pod_status(self.namespace, self.pod_name, status)
        except ApiError as exc:
            if exc.status not in (404, 409):
                # keep the pod running; the next change (or tick) tries again
                log.warning(
                    "pod %s/%s: status update refused: %s", self.namespace, self.pod_name, exc
                )
            return
        self._last_status = status
        self._last_conditions = conditions

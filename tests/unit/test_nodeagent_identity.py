"""Who a container runs as, and what the node agent refuses to start
(corral_local.nodeagent._identity, through `_pod.PodWorker._start`), and
`make dev`'s refusal to run without root (corral_local.dev)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest

from corral_local import dev
from corral_local.nodeagent._env import ConfigError
from corral_local.nodeagent._identity import Identity, container_identity
from corral_local.nodeagent._images import ImageMap
from corral_local.nodeagent._kube import KubeClient
from corral_local.nodeagent._network import HostNetwork, Sandbox
from corral_local.nodeagent._pod import Backoff, PodContext, PodWorker

Json = dict[str, Any]


class _Kube:
    """What `PodWorker._start` asks of the API before a container starts."""

    server = "https://127.0.0.1:6443"

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def create_event(self, namespace: str, event: dict[str, Any]) -> None:
        self.events.append(event)


def _worker(tmp_path: Path, kube: _Kube, security_context: dict[str, Any]) -> PodWorker:
    pod = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {
            "nodeName": "n1",
            "securityContext": security_context,
            "containers": [{"name": "main", "image": "busybox", "command": ["true"]}],
        },
    }
    ctx = PodContext(
        kube=cast(KubeClient, kube),
        network=HostNetwork(),
        images=ImageMap.load(None),
        state_dir=tmp_path,
        private_mounts=False,
        backoff=Backoff(),
        node_allocatable=lambda node: {},
        on_exit=lambda uid, finished: None,
    )
    worker = PodWorker(ctx, pod)
    worker.sandbox = Sandbox("127.0.0.1", None)  # as _make_sandbox leaves it
    worker.dir.mkdir(parents=True)
    return worker


def _start(worker: PodWorker) -> None:
    try:
        worker._start(worker.specs[0])
    finally:  # a container the test should not have started: not left running
        for proc in worker.procs.values():
            proc.kill_all()
            proc.popen.wait()


def test_a_run_as_user_under_an_agent_without_root_is_a_container_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    kube = _Kube()
    worker = _worker(tmp_path, kube, {"runAsUser": 65532, "runAsGroup": 65532})
    _start(worker)
    rec = worker.records["main"]
    assert (rec.state, rec.reason) == ("waiting", "CreateContainerConfigError")
    assert "runAsUser 65532" in rec.message
    assert "needs the node agent to run as root" in rec.message
    assert not worker.procs
    assert [e["reason"] for e in kube.events] == ["Failed"]
    assert "needs the node agent to run as root" in kube.events[0]["message"]


def test_make_dev_refuses_to_start_without_root_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import corral_local.localcluster as localcluster

    def no_cluster(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("make dev started a cluster without root")

    monkeypatch.setattr(localcluster, "LocalCluster", no_cluster)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setenv("CORRAL_DEV_DIR", str(tmp_path / "dev"))
    assert dev.up() != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "root" in err[0], err
    assert not (tmp_path / "dev").exists()


def _pod(pod_sc: dict[str, Any], container_sc: dict[str, Any] | None = None) -> tuple[Json, Json]:
    spec: Json = {"name": "main", **({"securityContext": container_sc} if container_sc else {})}
    pod: Json = {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"securityContext": pod_sc, "containers": [spec]},
    }
    return pod, spec


def test_the_container_security_context_wins_over_the_pod_one() -> None:
    pod, spec = _pod({"runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 2000}, {"runAsUser": 7})
    assert container_identity(pod, spec, 0, 0) == Identity(7, 1000, [2000])
    assert container_identity(*_pod({}), 0, 0) == Identity(None, None, [])


@pytest.mark.parametrize(
    ("pod_sc", "container_sc", "message"),
    [
        ({"runAsNonRoot": True}, None, "container has runAsNonRoot and image will run as root"),
        (
            {},
            {"runAsNonRoot": True, "runAsUser": 0},
            "container's runAsUser breaks non-root policy",
        ),
        ({"runAsNonRoot": True, "runAsUser": 0}, None, "breaks non-root policy"),
    ],
)
def test_run_as_non_root_refuses_root_with_the_kubelets_words(
    pod_sc: dict[str, Any], container_sc: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        container_identity(*_pod(pod_sc, container_sc), 0, 0)
    assert '(pod: "p_ns(u-1)", container: main)' in str(refused.value)


def test_run_as_non_root_lets_a_non_root_user_run_and_a_container_may_lift_it() -> None:
    assert container_identity(*_pod({"runAsNonRoot": True, "runAsUser": 65532}), 0, 0).uid == 65532
    pod, spec = _pod({"runAsNonRoot": True}, {"runAsNonRoot": False})
    assert container_identity(pod, spec, 0, 0).uid is None


def test_an_agent_without_root_runs_containers_as_itself_only() -> None:
    assert container_identity(*_pod({"runAsUser": 1000}), 1000, 1000).uid == 1000
    with pytest.raises(
        ConfigError, match="runAsGroup 0, which needs the node agent to run as root"
    ):
        container_identity(*_pod({"runAsUser": 1000, "runAsGroup": 0}), 1000, 1000)

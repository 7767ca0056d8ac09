"""Kubelet rules of the node agent: phases, conditions, probes, back-off, IPs, images, nodes."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from corral_local.nodeagent._images import ImageMap, normalise
from corral_local.nodeagent._ipam import FileIpam, next_free
from corral_local.nodeagent._nodespec import node_object, parse_node, parse_nodes
from corral_local.nodeagent._pod import Backoff, grace_period_s, should_restart
from corral_local.nodeagent._probes import ProbeSchedule, resolve_port
from corral_local.nodeagent._status import ContainerRecord, pod_conditions, pod_phase


def _c(
    state: str, exit_code: int | None = None, ready: bool = False, crashed_before: bool = False
) -> ContainerRecord:
    rec = ContainerRecord(name="c", image="i", state=state, exit_code=exit_code, ready=ready)
    if crashed_before:
        rec.last_terminated = {"exitCode": 1}
    return rec


# -- phase ------------------------------------------------------------------------------
def test_a_pod_with_a_container_not_yet_started_is_pending() -> None:
    assert pod_phase("Always", [], [_c("running"), _c("waiting")]) == "Pending"


def test_a_pod_waiting_to_restart_a_crashed_container_is_running() -> None:
    assert pod_phase("Always", [], [_c("waiting", crashed_before=True)]) == "Running"


def test_a_pod_stays_pending_until_its_init_containers_succeed() -> None:
    assert pod_phase("Always", [_c("terminated", 0), _c("running")], [_c("waiting")]) == "Pending"


def test_an_init_container_failing_for_good_fails_the_pod() -> None:
    assert (
        pod_phase("Never", [_c("terminated", 1)], [_c("waiting")], init_failed_for_good=True)
        == "Failed"
    )


@pytest.mark.parametrize(
    ("policy", "codes", "phase"),
    [
        ("Never", [0, 0], "Succeeded"),
        ("Never", [0, 2], "Failed"),
        ("OnFailure", [0, 0], "Succeeded"),
        ("OnFailure", [0, 2], "Running"),
        ("Always", [0, 0], "Running"),
    ],
)
def test_terminated_containers_give_the_phase_the_restart_policy_implies(
    policy: str, codes: list[int], phase: str
) -> None:
    assert pod_phase(policy, [], [_c("terminated", c) for c in codes]) == phase


# -- conditions --------------------------------------------------------------------------
def test_ready_needs_every_container_ready() -> None:
    conds = {
        c["type"]: c
        for c in pod_conditions({}, "Running", True, [], [_c("running", ready=True), _c("running")])
    }
    assert conds["ContainersReady"]["status"] == "False"
    assert conds["Ready"]["reason"] == "ContainersNotReady"
    conds = {
        c["type"]: c for c in pod_conditions({}, "Running", True, [], [_c("running", ready=True)])
    }
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] is None
    assert conds["Initialized"]["status"] == "True"


def test_a_condition_keeps_its_transition_time_while_its_status_holds() -> None:
    earlier = [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    conds = {
        c["type"]: c
        for c in pod_conditions({}, "Running", True, [], [_c("running", ready=True)], earlier)
    }
    assert conds["Ready"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"


def test_readiness_gates_hold_ready_back_until_their_condition_is_true() -> None:
    pod = {
        "spec": {"readinessGates": [{"conditionType": "corral.dev/drained"}]},
        "status": {"conditions": []},
    }
    conds = {
        c["type"]: c for c in pod_conditions(pod, "Running", True, [], [_c("running", ready=True)])
    }
    assert conds["ContainersReady"]["status"] == "True"
    assert conds["Ready"]["status"] == "False"


def test_a_completed_pod_is_not_ready_with_reason_pod_completed() -> None:
    conds = {
        c["type"]: c for c in pod_conditions({}, "Succeeded", False, [], [_c("terminated", 0)])
    }
    assert conds["Ready"]["reason"] == "PodCompleted"


def test_container_status_clears_old_state_keys_with_nulls_for_the_merge_patch() -> None:
    status = _c("running").to_status()
    assert status["state"]["waiting"] is None and status["state"]["running"] is not None


# -- probes -------------------------------------------------------------------------------
def test_a_probe_waits_its_initial_delay_then_runs_every_period() -> None:
    s = ProbeSchedule.from_spec(
        {"initialDelaySeconds": 5, "periodSeconds": 2}, started_at=100.0, initial=False
    )
    assert not s.due(104.9) and s.due(105.0)
    s.record(True, 105.0)
    assert not s.due(106.9) and s.due(107.0)


def test_a_probe_fails_only_after_failure_threshold_consecutive_failures() -> None:
    s = ProbeSchedule.from_spec({"failureThreshold": 3}, started_at=0.0, initial=True)
    assert not s.record(False, 1) and not s.record(False, 2)
    assert s.record(False, 3) and s.result is False


def test_a_success_resets_the_failure_count_and_success_threshold_applies() -> None:
    s = ProbeSchedule.from_spec(
        {"failureThreshold": 2, "successThreshold": 2}, started_at=0.0, initial=False
    )
    s.record(False, 1)
    s.record(True, 2)
    assert s.failures == 0 and s.result is False
    assert s.record(True, 3) and s.result is True


def test_probe_defaults_are_the_kubelet_defaults() -> None:
    s = ProbeSchedule.from_spec({}, started_at=0.0, initial=None)
    assert (s.period_s, s.timeout_s, s.success_threshold, s.failure_threshold) == (10, 1, 1, 3)


def test_named_probe_ports_resolve_through_the_container_ports() -> None:
    container = {"ports": [{"name": "http", "containerPort": 8080}]}
    assert resolve_port("http", container) == 8080
    assert resolve_port("9090", container) == 9090
    with pytest.raises(ValueError, match="named port 'metrics'"):
        resolve_port("metrics", container)


# -- restarts and grace ---------------------------------------------------------------------
def test_crash_back_off_doubles_from_its_base_and_is_capped() -> None:
    b = Backoff(base_s=10, cap_s=300)
    assert [b.delay(n) for n in (1, 2, 3, 4, 5, 6, 7)] == [10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize(
    ("policy", "code", "restart"),
    [
        ("Always", 0, True),
        ("Always", 1, True),
        ("OnFailure", 0, False),
        ("OnFailure", 1, True),
        ("Never", 1, False),
    ],
)
def test_restart_policy_decides_whether_an_exited_container_restarts(
    policy: str, code: int, restart: bool
) -> None:
    assert should_restart(policy, code) is restart


def test_the_deletion_grace_period_overrides_the_spec_grace_period() -> None:
    assert grace_period_s({"metadata": {}, "spec": {}}) == 30
    assert grace_period_s({"metadata": {}, "spec": {"terminationGracePeriodSeconds": 5}}) == 5
    assert (
        grace_period_s(
            {
                "metadata": {"deletionGracePeriodSeconds": 0},
                "spec": {"terminationGracePeriodSeconds": 5},
            }
        )
        == 0
    )


# -- IP allocation ----------------------------------------------------------------------------
def test_ip_allocation_skips_network_gateway_and_taken_addresses() -> None:
    net = ipaddress.IPv4Network("10.244.0.0/29")
    taken = {ipaddress.IPv4Address("10.244.0.2")}
    assert next_free(net, taken) == ipaddress.IPv4Address("10.244.0.3")


def test_ip_allocation_wraps_around_and_reports_a_full_network() -> None:
    net = ipaddress.IPv4Network("10.244.0.0/29")  # hosts .1-.6, .1 is the gateway
    assert next_free(net, [], start_after=6) == ipaddress.IPv4Address("10.244.0.2")
    assert next_free(net, [net.network_address + i for i in range(2, 7)]) is None


def test_file_leases_never_hand_out_an_address_twice_and_free_it_on_release(tmp_path: Path) -> None:
    ipam = FileIpam("10.244.0.0/29", tmp_path)
    got = {ipam.allocate(f"pod-{i}") for i in range(5)}
    assert len(got) == 5
    with pytest.raises(RuntimeError, match="is full"):
        ipam.allocate("one-too-many")
    ipam.release(ipaddress.IPv4Address("10.244.0.4"))
    assert ipam.allocate("again") == ipaddress.IPv4Address("10.244.0.4")


def test_a_lease_held_by_a_dead_process_is_reclaimed(tmp_path: Path) -> None:
    (tmp_path / "10.244.0.2").write_text("999999999 ghost\n")
    ipam = FileIpam("10.244.0.0/29", tmp_path)
    assert ipam.allocate("new") == ipaddress.IPv4Address("10.244.0.2")


# -- images and nodes ------------------------------------------------------------------------------
def test_image_names_lose_their_registry_and_gain_latest() -> None:
    assert normalise("ghcr.io/acme/corral-worker:1.2") == "acme/corral-worker:1.2"
    assert normalise("docker.io/library/busybox") == "busybox:latest"
    assert normalise("localhost:5000/corral:dev") == "corral:dev"


def test_the_built_in_image_map_knows_the_corral_and_test_images_only() -> None:
    images = ImageMap.load()
    worker = images.resolve("ghcr.io/acme/corral-worker:0.1.0")
    assert (
        worker is not None and worker.entrypoint[0].endswith("/corral") and worker.cmd == ["worker"]
    )
    assert images.resolve("corral-test/httpserver:1") is not None
    assert images.resolve("nginx:1.27") is None


def test_a_user_image_map_is_tried_before_the_built_in_one(tmp_path: Path) -> None:
    extra = tmp_path / "images.yaml"
    extra.write_text(
        'images:\n  - match: "nginx:*"\n    entrypoint: ["{python}", "-m", "http.server"]\n'
    )
    found = ImageMap.load(extra).resolve("nginx:1.27")
    assert found is not None and found.entrypoint[1:] == ["-m", "http.server"]


def test_node_specs_give_topology_labels_and_capacity() -> None:
    spec = parse_node("eu-1:region=eu,zone=eu-a,cpu=8,team=red")
    assert spec.labels == {
        "topology.kubernetes.io/region": "eu",
        "topology.kubernetes.io/zone": "eu-a",
        "team": "red",
    }
    assert spec.full_capacity()["cpu"] == "8"
    labels = node_object(spec)["metadata"]["labels"]
    assert (
        labels["kubernetes.io/hostname"] == "eu-1"
        and labels["topology.kubernetes.io/zone"] == "eu-a"
    )


def test_node_lists_accept_a_count_and_reject_duplicates_and_bad_names() -> None:
    assert [n.name for n in parse_nodes(["2"])] == ["node-1", "node-2"]
    with pytest.raises(ValueError, match="repeated"):
        parse_nodes(["a", "a"])
    with pytest.raises(ValueError, match="not a valid node name"):
        parse_node("Bad_Name")


def test_log_tails_count_lines_from_the_end() -> None:
    from corral_local.nodeagent._logserver import tail_lines

    data = b"one\ntwo\nthree\n"
    assert tail_lines(data, 2) == b"two\nthree\n"
    assert tail_lines(data, -1) == data
    assert tail_lines(data, 0) == b""


def test_exit_codes_of_signalled_processes_are_128_plus_the_signal() -> None:
    from corral_local.nodeagent._runtime import exit_code_of

    assert exit_code_of(-9) == (137, 9)
    assert exit_code_of(-15) == (143, 15)
    assert exit_code_of(3) == (3, None)


def test_a_probe_worker_acts_only_when_the_failure_threshold_is_reached() -> None:
    import threading

    from corral_local.nodeagent._probes import ProbeWorker

    outcomes = iter([False, True, False, False, False, True])
    seen: list[tuple[bool | None, bool]] = []
    done = threading.Event()

    def attempt(timeout_s: float) -> tuple[bool, str]:
        ok = next(outcomes, None)
        if ok is None:
            done.set()
            return True, ""
        return ok, "" if ok else "boom"

    schedule = ProbeSchedule.from_spec({"periodSeconds": 0.001, "failureThreshold": 3}, 0.0, True)
    worker = ProbeWorker(
        "livenessProbe", schedule, attempt, lambda k, r, m, changed: seen.append((r, changed))
    )
    worker.start()
    assert done.wait(5)
    worker.stop()
    worker.join(5)
    # every failure is reported, but the result flips only at the third in a row
    assert seen[:4] == [(True, False), (True, False), (True, False), (False, True)]
    assert seen[4] == (True, True)

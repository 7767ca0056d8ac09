"""The autoscaler's deciding functions (corral.controller.scaling): how many
workers a pool wants, how a dip in demand is smoothed, and which workers
leave first so that scaling down never removes a busy one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from corral.api.v1alpha1 import ScaleDown
from corral.controller.scaling import (
    Demand,
    FlowRate,
    PodView,
    ScalePlan,
    Stabilizer,
    WorkerView,
    choose_to_remove,
    plan_scale,
    recommend,
)
from tests.unit._pools import make_pool

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _spec(**spec: Any) -> Any:
    return make_pool(**spec).spec


def _demand(waiting: int = 0, running: int = 0, busy: int = 0, rate: Any = None) -> Demand:
    return Demand(waiting=waiting, running=running, busy_workers=busy, rate=rate)


# ------------------------------------------------------------------ recommend


def test_default_mode_wants_enough_workers_for_waiting_and_running_jobs() -> None:
    spec = _spec(replicas={"min": 1, "max": 20}, autoscaling={"jobsPerWorker": 50})
    rec = recommend(spec, _demand(waiting=340, running=12), current=2)
    assert (rec.replicas, rec.wanted) == (8, 8)  # ceil(352 / 50)
    assert rec.reason == "340 waiting + 12 running, 50 per worker"
    assert not rec.limited_by_max


def test_demand_beyond_max_is_held_at_max_and_says_so() -> None:
    spec = _spec(replicas={"min": 1, "max": 5}, autoscaling={"jobsPerWorker": 10})
    rec = recommend(spec, _demand(waiting=1000), current=5)
    assert (rec.replicas, rec.wanted, rec.limited_by_max) == (5, 100, True)


def test_min_is_a_floor_even_with_no_demand() -> None:
    spec = _spec(replicas={"min": 3, "max": 5})
    assert recommend(spec, _demand(), current=4).replicas == 3


def test_min_equal_to_max_pins_the_pool() -> None:
    spec = _spec(replicas={"min": 4, "max": 4}, autoscaling={"jobsPerWorker": 1})
    assert recommend(spec, _demand(), current=4).replicas == 4
    assert recommend(spec, _demand(waiting=100), current=4).replicas == 4


def test_a_paused_pool_wants_zero_workers() -> None:
    spec = _spec(paused=True, replicas={"min": 3, "max": 5})
    assert recommend(spec, _demand(waiting=100), current=4).replicas == 0


def test_without_autoscaling_the_pool_runs_exactly_min_whatever_the_demand() -> None:
    spec = _spec(autoscaling={"enabled": False}, replicas={"min": 3, "max": 5})
    assert recommend(spec, _demand(waiting=10_000), current=1).replicas == 3
    assert recommend(spec, _demand(), current=5).replicas == 3


def test_from_zero_the_first_worker_waits_for_activation_depth() -> None:
    spec = _spec(replicas={"min": 0, "max": 5}, autoscaling={"activationDepth": 5})
    assert recommend(spec, _demand(waiting=4), current=0).replicas == 0
    assert recommend(spec, _demand(waiting=5), current=0).replicas == 1
    # Once running, a pool keeps a worker for any demand below the threshold.
    assert recommend(spec, _demand(waiting=2), current=1).replicas == 1


@pytest.mark.parametrize("activation", [0, 1])
def test_activation_depth_zero_and_one_both_mean_any_waiting_job(activation: int) -> None:
    spec = _spec(replicas={"min": 0, "max": 5}, autoscaling={"activationDepth": activation})
    assert recommend(spec, _demand(), current=0).replicas == 0
    assert recommend(spec, _demand(waiting=1), current=0).replicas == 1


def test_demand_falling_to_zero_lets_a_pool_at_min_zero_go_to_zero() -> None:
    spec = _spec(replicas={"min": 0, "max": 5})
    assert recommend(spec, _demand(), current=3).replicas == 0


def test_never_fewer_than_the_workers_that_hold_jobs() -> None:
    spec = _spec(replicas={"min": 0, "max": 10}, autoscaling={"jobsPerWorker": 100})
    rec = recommend(spec, _demand(running=4, busy=4), current=6)
    assert rec.replicas == 4
    assert "4 worker(s) hold jobs" in rec.reason


def test_target_wait_mode_sizes_the_pool_by_littles_law_plus_the_backlog() -> None:
    spec = _spec(
        replicas={"min": 0, "max": 50}, concurrency=2, autoscaling={"targetWaitSeconds": 10}
    )
    steady = recommend(spec, _demand(rate=FlowRate(10.0, 1.0)), current=3)
    # 10 jobs/s x 1 s = 10 busy slots, at 80% of 2 slots per worker: 6.25 -> 7.
    assert steady.replicas == 7
    backlog = recommend(spec, _demand(waiting=40, rate=FlowRate(10.0, 1.0)), current=3)
    # plus 40 waiting x 1 s / (10 s x 2 slots) = 2 workers: 8.25 -> 9.
    assert backlog.replicas == 9
    assert "within 10s" in backlog.reason


def test_target_wait_mode_gives_the_same_answer_for_the_same_rate() -> None:
    spec = _spec(replicas={"min": 0, "max": 50}, autoscaling={"targetWaitSeconds": 5})
    answers = {
        recommend(spec, _demand(rate=FlowRate(8.0, 2.5)), current=c).replicas for c in range(1, 9)
    }
    assert len(answers) == 1


def test_target_wait_mode_without_a_measured_rate_falls_back_to_jobs_per_worker() -> None:
    spec = _spec(
        replicas={"min": 0, "max": 50},
        autoscaling={"targetWaitSeconds": 5, "jobsPerWorker": 10},
    )
    assert recommend(spec, _demand(waiting=35), current=1).replicas == 4


# ---------------------------------------------------------------- stabilizer


def test_the_stabilizer_scales_up_at_once() -> None:
    stabilizer = Stabilizer.seeded(0.0, 2)
    assert stabilizer.add(1.0, 9, 300) == 9


def test_the_stabilizer_scales_down_only_after_a_whole_window_of_lower_demand() -> None:
    stabilizer = Stabilizer.seeded(0.0, 5)
    assert stabilizer.add(10.0, 2, 60) == 5
    assert stabilizer.add(59.0, 2, 60) == 5
    assert stabilizer.add(61.0, 2, 60) == 2


def test_a_dip_in_demand_does_not_scale_down() -> None:
    stabilizer = Stabilizer.seeded(0.0, 5)
    for t, rec in [(10, 1), (20, 5), (30, 1), (70, 1)]:
        held = stabilizer.add(float(t), rec, 60)
    assert held == 5  # the 5 at t=20 is still inside the window at t=70
    assert stabilizer.add(81.0, 1, 60) == 1


def test_the_stabilizer_keeps_few_samples_however_often_it_is_asked() -> None:
    stabilizer = Stabilizer.seeded(0.0, 3)
    for i in range(10_000):
        stabilizer.add(i * 0.01, 3, 300)
    assert len(stabilizer.samples) == 1


# ------------------------------------------------------------- choosing pods


def _pod(
    name: str,
    ready: bool = True,
    terminating: bool = False,
    created: str = "",
    marked: bool = False,
) -> PodView:
    return PodView(name=name, ready=ready, terminating=terminating, created=created, marked=marked)


def _worker(
    worker_id: int,
    name: str,
    in_flight: int = 0,
    state: str = "active",
    by: str | None = None,
    live: bool = True,
) -> WorkerView:
    return WorkerView(
        id=worker_id, name=name, state=state, in_flight=in_flight, drain_by=by, live=live
    )


def test_idle_workers_are_removed_before_busy_ones() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c"), _pod("d")]
    workers = [_worker(1, "a", 3), _worker(2, "b", 0), _worker(3, "c", 1), _worker(4, "d", 0)]
    assert sorted(choose_to_remove(pods, workers, 2)) == ["b", "d"]
    assert sorted(choose_to_remove(pods, workers, 3)) == ["b", "c", "d"]


def test_pods_with_nothing_to_lose_go_first() -> None:
    pods = [_pod("busy"), _pod("idle"), _pod("starting", ready=False), _pod("drained")]
    workers = [
        _worker(1, "busy", 2),
        _worker(2, "idle", 0),
        _worker(3, "drained", 0, state="drained", by="admin"),
    ]
    assert choose_to_remove(pods, workers, 3) == ["starting", "drained", "idle"]


def test_terminating_pods_are_never_chosen() -> None:
    pods = [_pod("a", terminating=True), _pod("b")]
    assert choose_to_remove(pods, [_worker(1, "a"), _worker(2, "b", 4)], 1) == ["b"]


def test_a_pod_several_rows_claim_counts_as_holding_the_most_any_of_them_holds() -> None:
    pods = [_pod("a"), _pod("b")]
    workers = [_worker(1, "a", 0), _worker(7, "a", 5), _worker(2, "b", 1)]
    assert choose_to_remove(pods, workers, 1) == ["b"]


def test_a_row_posing_as_a_busy_pod_and_reporting_drained_gets_no_busy_pod_removed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # /tmp/rc/spoof.py: a third worker of the pool renames itself after the
    # busy pod render-aaa and reports drained and idle; the newest row used
    # to win, so the scale-down took render-aaa (3 jobs) for drained.
    pods = [_pod("render-aaa", created="1"), _pod("render-bbb", created="2")]
    workers = [
        _worker(1, "render-aaa", 3),
        _worker(2, "render-bbb", 0),
        _worker(3, "render-aaa", 0, state="drained", by="self"),
    ]
    plan = _plan(desired=1, current=2, pods=pods, workers=workers)
    assert (plan.drain, plan.lowest_cost, plan.replicas) == ((2,), (), None)
    assert plan.scale_down is not None and plan.scale_down.pods == ["render-bbb"]
    assert "render-aaa is claimed by 2 registry rows (workers 1, 3)" in caplog.text
    # Both rows drained and idle (the real one too): still not trusted.
    both = [_worker(1, "render-aaa", 0, "drained", "self"), workers[2], _worker(2, "render-bbb")]
    plan = _plan(desired=1, current=2, pods=pods, workers=both)
    assert plan.scale_down is not None and plan.scale_down.pods == ["render-bbb"]


def test_a_heartbeat_reporting_2147483647_jobs_counts_as_its_concurrency() -> None:
    # /tmp/rc/inflight.py: one worker of concurrency 1 pinned its pool at max.
    from types import SimpleNamespace
    from typing import cast

    from corral.controller.observed import PoolSnapshot, worker_view
    from corral.queue import Backlog, Worker, WorkerState

    liar = SimpleNamespace(
        id=1, name="infl-1", state=WorkerState.ACTIVE, in_flight=2147483647, concurrency=1,
        last_heartbeat=NOW, enrolled_at=NOW, drain_requested_by=None,
    )  # fmt: skip
    snapshot = PoolSnapshot(Backlog(0, 0, capped=False), [cast(Worker, liar)], None)
    demand = snapshot.demand(NOW, concurrency=1)
    assert (demand.running, demand.busy_workers) == (1, 1)
    spec = _spec(replicas={"min": 0, "max": 50}, autoscaling={"jobsPerWorker": 1})
    assert recommend(spec, demand, current=1).replicas == 1
    assert snapshot.figures(NOW).running == 1
    assert worker_view(cast(Worker, liar), NOW).in_flight == 1


# -------------------------------------------------------------- plan_scale


def _plan(**kwargs: Any) -> ScalePlan:
    defaults: dict[str, Any] = {
        "reason": "r",
        "pods": [],
        "workers": [],
        "in_progress": None,
        "drain_timeout_s": 300,
        "now": NOW,
    }
    return plan_scale(**{**defaults, **kwargs})


def _four() -> tuple[list[PodView], list[WorkerView]]:
    pods = [_pod(n) for n in "abcd"]
    workers = [_worker(1, "a", 3), _worker(2, "b", 0), _worker(3, "c", 1), _worker(4, "d", 0)]
    return pods, workers


def _by_scaler(workers: list[WorkerView], names: str, state: str) -> list[WorkerView]:
    """`workers` with those named in `names` idle and set to `state` by the scaler."""
    return [
        w if w.name not in names else _worker(w.id, w.name, 0, state, "scaler") for w in workers
    ]


def _draining_b_and_d() -> ScaleDown:
    """The scale-down of `_four()` from 4 to 2 that chose b and d, begun at NOW."""
    return ScaleDown(target_replicas=2, pods=["b", "d"], started_at=NOW)


def test_scaling_up_is_immediate_and_says_why() -> None:
    plan = _plan(desired=7, current=2, reason="340 waiting + 12 running, 50 per worker")
    assert plan.replicas == 7
    assert [(e.reason, e.message) for e in plan.events] == [
        ("Scaled", "scaled 2 -> 7: 340 waiting + 12 running, 50 per worker")
    ]


def test_no_change_means_no_action_and_no_event() -> None:
    pods, workers = _four()
    assert _plan(desired=4, current=4, pods=pods, workers=workers) == ScalePlan()


def test_scaling_down_drains_the_idlest_workers_first_and_waits() -> None:
    pods, workers = _four()
    plan = _plan(desired=2, current=4, pods=pods, workers=workers)
    assert plan.replicas is None  # nothing is removed before the drain is done
    assert sorted(plan.drain) == [2, 4]
    assert plan.scale_down == _draining_b_and_d()
    assert [e.reason for e in plan.events] == ["Draining"]


def test_once_drained_the_chosen_pods_are_marked_and_replicas_go_down() -> None:
    pods, workers = _four()
    started = _draining_b_and_d()
    draining = _by_scaler(workers, "bd", "draining")
    waiting = _plan(desired=2, current=4, pods=pods, workers=draining, in_progress=started)
    assert (waiting.replicas, waiting.drain, waiting.events) == (None, (), ())
    assert waiting.scale_down == started
    drained = _by_scaler(workers, "bd", "drained")
    done = _plan(
        desired=2, current=4, pods=pods, workers=drained, in_progress=started,
        now=NOW + timedelta(seconds=3),
    )  # fmt: skip
    assert done.replicas == 2
    assert done.lowest_cost == ("b", "d")
    assert done.scale_down is None
    assert [e.reason for e in done.events] == ["Scaled"]
    assert "drained: b, d" in done.events[0].message


def test_when_every_worker_is_busy_the_least_busy_drains_and_nothing_goes_until_it_finishes() -> (
    None
):
    pods = [_pod(n) for n in "abc"]
    workers = [_worker(1, "a", 2), _worker(2, "b", 1), _worker(3, "c", 3)]
    plan = _plan(desired=2, current=3, pods=pods, workers=workers)
    assert (plan.drain, plan.replicas) == ((2,), None)
    still = [_worker(1, "a", 2), _worker(2, "b", 1, "draining", "scaler"), _worker(3, "c", 3)]
    plan = _plan(desired=2, current=3, pods=pods, workers=still, in_progress=plan.scale_down)
    assert plan.replicas is None and plan.lowest_cost == ()


def test_new_demand_cancels_the_drain_of_the_workers_it_needs() -> None:
    pods, workers = _four()
    started = _draining_b_and_d()
    draining = _by_scaler(workers, "bd", "draining")
    plan = _plan(desired=4, current=4, pods=pods, workers=draining, in_progress=started)
    assert sorted(plan.undrain) == [2, 4]
    assert (plan.replicas, plan.scale_down) == (None, None)
    assert [e.reason for e in plan.events] == ["DrainCancelled"]


def test_a_smaller_drop_in_demand_cancels_only_part_of_the_drain() -> None:
    pods, _ = _four()
    started = _draining_b_and_d()
    draining = [
        _worker(1, "a", 3),
        _worker(2, "b", 0, "drained", "scaler"),
        _worker(3, "c", 1),
        _worker(4, "d", 1, "draining", "scaler"),
    ]
    plan = _plan(desired=3, current=4, pods=pods, workers=draining, in_progress=started)
    # b has drained already and is kept for removal; d (still busy) goes back to work.
    assert plan.undrain == (4,)
    assert plan.replicas == 3 and plan.lowest_cost == ("b",)


def test_pods_marked_by_a_finished_scale_down_stay_drained_until_the_replicaset_removes_them() -> (
    None
):
    # Replicas went 3 -> 1 a moment ago; the ReplicaSet has not deleted b and c yet.
    pods = [_pod("a"), _pod("b", ready=False, marked=True), _pod("c", ready=False, marked=True)]
    workers = _by_scaler([_worker(1, "a", 1), _worker(2, "b"), _worker(3, "c")], "bc", "drained")
    assert _plan(desired=1, current=1, pods=pods, workers=workers) == ScalePlan()
    # Demand falls further: the busy worker drains, the leaving ones are not chosen again.
    down = _plan(desired=0, current=1, pods=pods, workers=workers)
    assert (down.drain, down.undrain, down.replicas) == ((1,), (), None)
    # Demand for two: one of them is needed (the ReplicaSet removes the other).
    up = _plan(desired=2, current=1, pods=pods, workers=workers)
    assert (up.replicas, up.undrain) == (2, (2,))
    # As many pods as replicas: the ReplicaSet passed b over (the cost is best effort).
    passed_over = _plan(desired=2, current=2, pods=pods[:2], workers=workers)
    assert passed_over.undrain == (2,)


def test_a_drain_past_its_timeout_goes_ahead_and_says_so() -> None:
    pods, workers = _four()
    started = ScaleDown(target_replicas=3, pods=["b"], started_at=NOW)
    stuck = [w if w.name != "b" else _worker(2, "b", 1, "draining", "scaler") for w in workers]
    plan = _plan(
        desired=3, current=4, pods=pods, workers=stuck, in_progress=started,
        drain_timeout_s=60, now=NOW + timedelta(seconds=61),
    )  # fmt: skip
    assert (plan.replicas, plan.lowest_cost) == (3, ("b",))
    assert "drain.timeoutSeconds (60s) ran out" in plan.events[0].message


def test_replicas_without_a_pod_go_first_and_need_no_drain() -> None:
    pods = [_pod("a"), _pod("b"), _pod("c")]
    workers = [_worker(1, "a", 1), _worker(2, "b", 1), _worker(3, "c", 1)]
    plan = _plan(desired=3, current=5, pods=pods, workers=workers)
    assert (plan.replicas, plan.drain, plan.lowest_cost) == (3, (), ())


def test_a_pod_that_never_enrolled_is_removed_without_waiting() -> None:
    pods = [_pod("a"), _pod("new", ready=False)]
    plan = _plan(desired=1, current=2, pods=pods, workers=[_worker(1, "a", 2)])
    assert (plan.replicas, plan.lowest_cost, plan.drain) == (1, ("new",), ())


def test_a_worker_drained_by_hand_is_replaced_instead_of_lingering() -> None:
    pods, workers = _four()
    workers[1] = _worker(2, "b", 0, "drained", "admin")
    plan = _plan(desired=4, current=4, pods=pods, workers=workers)
    assert plan.replace == ("b",)
    assert plan.undrain == ()  # an admin's drain is not the scaler's to undo


def test_a_worker_drained_by_hand_is_the_first_to_go_when_scaling_down() -> None:
    pods, workers = _four()
    workers[0] = _worker(1, "a", 0, "drained", "admin")
    plan = _plan(desired=3, current=4, pods=pods, workers=workers)
    assert (plan.replicas, plan.lowest_cost) == (3, ("a",))


def test_a_worker_draining_itself_is_never_sent_back_to_work() -> None:
    pods, workers = _four()
    workers[1] = _worker(2, "b", 1, "draining", "self")
    plan = _plan(desired=5, current=4, pods=pods, workers=workers)
    assert plan.undrain == () and plan.replicas == 5


def test_scaling_down_never_picks_a_busy_worker_while_an_idle_one_exists() -> None:
    # Every mix of in-flight counts over five workers, removing one to four.
    import itertools

    for loads in itertools.product([0, 2], repeat=5):
        pods = [_pod(f"p{i}") for i in range(5)]
        workers = [_worker(i, f"p{i}", load) for i, load in enumerate(loads)]
        for k in range(1, 5):
            chosen = set(choose_to_remove(pods, workers, k))
            idle = {f"p{i}" for i, load in enumerate(loads) if load == 0}
            assert chosen <= idle or idle <= chosen, (loads, k, chosen)

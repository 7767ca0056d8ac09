"""What the operator's autoscaler reads and writes in the queue: the backlog
it scales on, one pool's workers, the drains it asks for and cancels, the
flow figures of target-wait mode, its LISTEN connection, and the record of
interrupted jobs that proves a scale-down interrupted nothing."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from corral.controller.queue_access import QueueAccess
from corral.controller.schedules import ScheduleFirer
from corral.queue import (
    InterruptionReason,
    JobSpec,
    JobStateError,
    Queue,
    ScheduleSpec,
    WorkerState,
)
from tests.integration._enrolled import enroll, run_sql


def test_the_backlog_counts_ready_jobs_of_the_pools_region_and_leaves_paused_queues_out_of_demand(
    database_url: str,
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    with Queue.connect(database_url) as queue:
        queue.enqueue_many(JobSpec("k", queue="a") for _ in range(3))
        queue.enqueue_many(JobSpec("k", queue="b") for _ in range(4))
        queue.enqueue("k", queue="a", region="eu", allow_empty_region=True)
        queue.enqueue("k", queue="a", region="us", allow_empty_region=True)  # another region's
        queue.enqueue("k", queue="a", run_at=later)  # not due yet
        queue.enqueue("k", queue="c")  # a queue the pool does not serve
        assert queue.backlog(["a", "b"], "eu") == queue.backlog(["a", "b"], "eu")
        backlog = queue.backlog(["a", "b"], "eu")
        assert (backlog.waiting, backlog.dispatchable) == (8, 8)
        queue.pause("b", reason="maintenance")
        backlog = queue.backlog(["a", "b"], "eu")
        assert (backlog.waiting, backlog.dispatchable) == (8, 4)
        queue.pause()  # every queue
        assert queue.backlog(["a", "b"], "eu").dispatchable == 0
        queue.resume()
        assert queue.backlog(["a", "b"], "eu").dispatchable == 8


def test_a_due_scheduled_job_counts_even_before_any_claim_promotes_it(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        job = queue.enqueue("k", queue="a", run_at=datetime.now(UTC) + timedelta(hours=1))
        run_sql(database_url, "UPDATE corral_jobs SET run_at = now() - interval '1 s' WHERE id = %s",
                (job,))  # fmt: skip
        assert queue.backlog(["a"], None).dispatchable == 1


def test_a_job_due_within_the_activation_lead_counts_as_demand_now(database_url: str) -> None:
    # activationLeadSeconds: a pool at zero starts its worker before the job
    # is due, not a pod's start-up time after.
    with Queue.connect(database_url) as queue:
        queue.enqueue("k", queue="a", run_at=datetime.now(UTC) + timedelta(seconds=3))
        ahead = queue.backlog(["a"], None, lead_s=5)
        assert (ahead.waiting, ahead.dispatchable) == (1, 1)
        now = queue.backlog(["a"], None, lead_s=0)
        assert (now.waiting, now.dispatchable) == (0, 0)
        assert queue.backlog(["a"], None) == now  # no lead by default


def test_the_operator_fires_an_occurrence_ahead_by_the_lead_and_the_backlog_counts_it_then(
    database_url: str,
) -> None:
    # A pool at zero has no worker to fire its schedule: the operator's firer
    # does, ahead by the largest activationLeadSeconds, into a job scheduled
    # for the occurrence, which the backlog with the pool's lead counts now.
    start = datetime.now(UTC) + timedelta(seconds=3)
    access = QueueAccess(database_url)
    told: list[set[str]] = []
    firer = ScheduleFirer(access.run, lambda: [5.0, 0.0], told.append)
    try:
        with Queue.connect(database_url) as queue:
            queue.create_schedule(ScheduleSpec("tick", "noop", every_s=1, start_at=start))
            assert queue.backlog(["noop"], None, lead_s=5).dispatchable == 0  # nothing fired yet
            fired = firer.fire_once()
            assert [f.schedule for f in fired] == ["tick"] and told == [{"noop"}]
            # One job: the next occurrence waits for it to finish (overlap=skip
            # decides at the occurrence's time, not now).
            assert (len(fired[0].job_ids), fired[0].skipped) == (1, 0)
            job = queue.get_job(fired[0].job_ids[0])
            assert job.state == "scheduled" and job.run_at == start  # not before its time
            ahead = queue.backlog(["noop"], None, lead_s=5)
            assert (ahead.waiting, ahead.dispatchable) == (1, 1)
            assert queue.backlog(["noop"], None, lead_s=0).dispatchable == 0
    finally:
        access.close()


def test_pool_workers_lists_only_that_pools_workers_that_are_not_removed(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        mine = enroll(queue, pool="ns/a", name="a-1")
        gone = enroll(queue, pool="ns/a", name="a-2")
        enroll(queue, pool="ns/b", name="b-1")
        queue.remove_worker(gone.worker_id)
        assert [w.name for w in queue.pool_workers("ns/a")] == ["a-1"]
        assert queue.pool_workers("ns/a")[0].id == mine.worker_id


def test_a_workers_jobs_count_as_held_from_its_claim_not_from_its_next_heartbeat(
    database_url: str,
) -> None:
    # Between a claim and the heartbeat that reports it, the jobs are neither
    # waiting nor (by the worker's own count) running: the scaler must still
    # see them, or demand dips and a pod goes.
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, pool="ns/a", name="a-1")
        queue.enqueue_many(JobSpec("k", queue="q") for _ in range(3))
        queue.heartbeat(worker.worker_id, worker.credential, in_flight=0)
        assert len(queue.claim(worker.worker_id, worker.credential, ["q"], batch=2)) == 2
        assert [w.in_flight for w in queue.pool_workers("ns/a")] == [2]
        # A report above what the table shows (results not yet written) stands.
        queue.heartbeat(worker.worker_id, worker.credential, in_flight=3)
        assert [w.in_flight for w in queue.pool_workers("ns/a")] == [3]


def test_the_scaler_drains_only_active_workers_and_cancels_only_its_own_drains(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        ids = [enroll(queue, pool="ns/a", name=f"w{i}").worker_id for i in range(3)]
        queue.request_drain(ids[2])  # an admin's drain
        assert queue.scaler_drain(ids) == ids[:2]
        states = {w.id: (w.state, w.drain_requested_by) for w in queue.pool_workers("ns/a")}
        assert states[ids[0]] == (WorkerState.DRAINING, "scaler")
        assert states[ids[2]] == (WorkerState.DRAINING, "admin")
        assert queue.scaler_undrain(ids) == ids[:2]
        states = {w.id: (w.state, w.drain_requested_by) for w in queue.pool_workers("ns/a")}
        assert states[ids[0]] == (WorkerState.ACTIVE, None)
        assert states[ids[2]] == (WorkerState.DRAINING, "admin")  # not the scaler's to undo


def test_a_worker_draining_itself_takes_over_the_scalers_drain_so_it_cannot_be_cancelled(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, pool="ns/a")
        queue.scaler_drain([worker.worker_id])
        assert queue.drain_self(worker.worker_id, worker.credential) is WorkerState.DRAINING
        assert queue.scaler_undrain([worker.worker_id]) == []
        assert queue.get_worker(worker.worker_id).drain_requested_by == "self"


def test_a_drained_report_racing_the_scalers_undrain_leaves_the_worker_active(
    database_url: str,
) -> None:
    # The worker reports `drained` while the operator cancels the drain; the
    # report must not land on the row the cancellation just made active (the
    # worker would then stay drained, and the scaler could no longer undo it).
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, pool="ns/a")
        assert queue.scaler_drain([worker.worker_id]) == [worker.worker_id]
        queue.mark_drained(worker.worker_id, worker.credential)
        reported: list[object] = []

        def report_drained() -> None:
            try:
                reported.append(queue.mark_drained(worker.worker_id, worker.credential))
            except JobStateError as exc:
                reported.append(str(exc))

        with psycopg.connect(database_url) as scaler:
            with scaler.transaction():
                assert Queue(scaler).scaler_undrain([worker.worker_id]) == [worker.worker_id]
                report = threading.Thread(target=report_drained)
                report.start()
                # The report waits for the cancellation's row lock.
                deadline = time.monotonic() + 10
                while not run_sql(
                    database_url,
                    "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE '%%mark_drained%%'",
                ):
                    assert time.monotonic() < deadline, "the report never waited for the lock"
                    time.sleep(0.02)
            report.join(10)
        assert reported == [f"worker {worker.worker_id} is active, not draining"]
        row = queue.get_worker(worker.worker_id)
        assert (row.state, row.drain_requested_by) == (WorkerState.ACTIVE, None)


def test_a_job_handed_back_at_shutdown_is_recorded_as_interrupted(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, queues=["q"])
        job = queue.enqueue("k", queue="q")
        other = queue.enqueue("k", queue="q")
        claimed = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2)
        queue.release_many([c for c in claimed if c.id == job])
        [interruption] = queue.interruptions()
        assert (interruption.job_id, interruption.worker_id) == (job, worker.worker_id)
        assert (interruption.reason, interruption.attempt) == (InterruptionReason.HANDED_BACK, 1)
        assert queue.interruptions(other) == []
        queue.complete_many([c for c in claimed if c.id == other])
        assert queue.interruptions(other) == []


def test_a_job_whose_lease_lapsed_is_recorded_as_interrupted_when_reaped(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, queues=["q"])
        job = queue.enqueue("k", queue="q")
        queue.claim(worker.worker_id, worker.credential, ["q"], batch=1, lease_s=1)
        run_sql(database_url, "UPDATE corral_jobs SET lease_expires_at = now() - interval '1 s'")
        assert queue.reap() == 1
        [interruption] = queue.interruptions(job)
        assert interruption.reason is InterruptionReason.LEASE_EXPIRED
        assert interruption.worker_id == worker.worker_id


def test_retention_deletes_old_interruption_records_with_the_finished_jobs(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, queues=["q"])
        queue.enqueue("k", queue="q")
        queue.release_many(queue.claim(worker.worker_id, worker.credential, ["q"], batch=1))
        run_sql(database_url, "UPDATE corral_job_interruptions SET at = now() - interval '2 days'")
        queue.purge_finished_batch(86400, batch=100)
        assert queue.interruptions() == []


def test_flow_counts_arrivals_and_the_mean_run_time_of_completed_jobs(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, queues=["q"])
        queue.enqueue_many(JobSpec("k", queue="q") for _ in range(6))
        queue.enqueue("k", queue="q", run_at=datetime.now(UTC) + timedelta(hours=1))  # later
        claimed = queue.claim(worker.worker_id, worker.credential, ["q"], batch=4)
        run_sql(database_url, "UPDATE corral_jobs SET started_at = now() - interval '2 s' "
                "WHERE state = 'running'")  # fmt: skip
        queue.complete_many(claimed)
        flow = queue.flow(["q"], None, window_s=60)
    assert (flow.arrivals, flow.completed) == (6, 4)
    assert flow.mean_duration_s is not None and 1.5 < flow.mean_duration_s < 10
    assert flow.arrivals_per_s == pytest.approx(6 / 60)


def test_a_listening_queue_hears_enqueues_by_queue_name(database_url: str) -> None:
    heard: list[set[str]] = []
    with Queue.connect(database_url) as listener, Queue.connect(database_url) as producer:
        listener.listen()
        assert listener.wait_for_jobs(0.05) == set()

        def wait() -> None:
            heard.append(listener.wait_for_jobs(10))

        thread = threading.Thread(target=wait)
        thread.start()
        time.sleep(0.2)
        producer.enqueue("k", queue="mail")
        thread.join(10)
        producer.enqueue_many(JobSpec("k", queue=q) for q in ("x", "y"))
        time.sleep(0.2)
        # Both wake-ups arrived while nobody waited: one call returns them all.
        assert listener.wait_for_jobs(1) == {"x", "y"}
    assert heard == [{"mail"}]

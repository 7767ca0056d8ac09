"""Claims: order, delays, regions, expiry, SKIP LOCKED concurrency and an O(batch) plan."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from corral.queue import ClaimedJob, Failure, JobSpec, JobState, Queue
from tests.integration._clients import Client, Connect
from tests.integration._enrolled import enroll, run_sql


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def test_claims_return_higher_priority_first_then_first_in_first_out(queue: Client) -> None:
    low = queue.enqueue_many([JobSpec("noop", queue="q", priority=0) for _ in range(3)])
    high = queue.enqueue_many([JobSpec("noop", queue="q", priority=10) for _ in range(3)])
    worker = enroll(queue)
    first = queue.claim(worker.worker_id, worker.credential, ["q"], batch=4)
    rest = queue.claim(worker.worker_id, worker.credential, ["q"], batch=4)
    assert [j.id for j in first] == high + low[:1]
    assert [j.id for j in rest] == low[1:]


def test_a_delayed_job_is_not_claimed_before_its_run_at(database_url: str, queue: Client) -> None:
    later = queue.enqueue("noop", queue="q", run_at=_now() + dt.timedelta(hours=1))
    soon = queue.enqueue("noop", queue="q", run_at=_now() + dt.timedelta(seconds=1))
    worker = enroll(queue)
    assert queue.get_job(soon).state == JobState.SCHEDULED
    assert queue.claim(worker.worker_id, worker.credential, ["q"]) == []
    run_sql(
        database_url,
        "UPDATE corral_jobs SET run_at = now() - interval '1 s' WHERE id = %s",
        [soon],
    )
    claimed = queue.claim(worker.worker_id, worker.credential, ["q"])
    assert [j.id for j in claimed] == [soon]
    assert later not in [j.id for j in claimed]


def test_a_job_with_a_region_is_claimed_only_by_workers_of_that_region(
    database_url: str, queue: Client
) -> None:
    anywhere = queue.enqueue("noop", queue="q")
    # Enqueued before any worker enrolls: the region check is waived.
    in_eu = queue.enqueue("noop", queue="q", region="eu", allow_empty_region=True)
    in_us = queue.enqueue("noop", queue="q", region="us", allow_empty_region=True)
    eu = enroll(queue, region="eu", name="eu-1")
    ap = enroll(queue, region="ap", name="ap-1")
    ap_got = queue.claim(ap.worker_id, ap.credential, ["q"], batch=10)
    eu_got = queue.claim(eu.worker_id, eu.credential, ["q"], batch=10)
    assert [j.id for j in ap_got] == [anywhere]
    assert [j.id for j in eu_got] == [in_eu]
    assert queue_state(database_url, in_us) == JobState.PENDING


def queue_state(url: str, job_id: int) -> JobState:
    with Queue.connect(url) as queue:
        return queue.get_job(job_id).state


def test_a_job_found_past_its_expiry_is_marked_expired_and_not_returned(
    database_url: str, queue: Client
) -> None:
    stale = queue.enqueue("noop", queue="q", expires_at=_now() + dt.timedelta(milliseconds=1))
    fresh = queue.enqueue("noop", queue="q", expires_at=_now() + dt.timedelta(hours=1))
    run_sql(
        database_url,
        "UPDATE corral_jobs SET expires_at = now() - interval '1 s' WHERE id = %s",
        [stale],
    )
    worker = enroll(queue)
    claimed = queue.claim(worker.worker_id, worker.credential, ["q"], batch=10)
    assert [j.id for j in claimed] == [fresh]
    assert queue.get_job(stale).state == JobState.EXPIRED


_EXPIRED_BACKLOG = (
    "INSERT INTO corral_jobs (kind, queue, state, max_attempts, expires_at)"
    " SELECT 'noop', 'q', 'pending', 5, now() - interval '1 s' FROM generate_series(1, %s)"
)


def _finished_states(url: str) -> dict[str, int]:
    rows = run_sql(url, "SELECT state, count(*) FROM corral_jobs_finished GROUP BY state")
    return {str(state): int(count) for state, count in rows}


def test_a_backlog_of_expired_jobs_does_not_hide_the_live_jobs_behind_it(
    database_url: str, queue: Client
) -> None:
    # 300 expired jobs at the head of the lane, 5 live ones behind them: one
    # claim for 5 moves the expired ones to the history and returns the 5.
    run_sql(database_url, _EXPIRED_BACKLOG, [300])
    live = queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(5)])
    worker = enroll(queue)
    claimed = queue.claim(worker.worker_id, worker.credential, ["q"], batch=5)
    assert [j.id for j in claimed] == live
    assert _finished_states(database_url) == {"expired": 300}
    [(left,)] = run_sql(database_url, "SELECT count(*) FROM corral_jobs WHERE state = 'pending'")
    assert left == 0


def test_a_claim_moves_a_bounded_number_of_expired_jobs_and_claims_only_its_batch(
    database_url: str,
) -> None:
    # More expired jobs than one call moves (5,000, and at most a read of the
    # batch more): the next claim goes on where this one stopped. Live jobs
    # read past the batch are not claimed.
    run_sql(database_url, _EXPIRED_BACKLOG, [6000])
    with Queue.connect(database_url) as queue:
        live = queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(1500)])
        worker = enroll(queue)
        first = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2)
        swept = _finished_states(database_url)["expired"]
        assert 5000 <= swept <= 5002, swept
        assert first == []
        second = queue.claim(worker.worker_id, worker.credential, ["q"], batch=2)
        assert [j.id for j in second] == live[:2]
        assert _finished_states(database_url) == {"expired": 6000}
        third = queue.claim(worker.worker_id, worker.credential, ["q"], batch=1000)
        assert [j.id for j in third] == live[2:1002]


def test_two_concurrent_claimers_never_get_the_same_job(
    database_url: str, connect: Connect
) -> None:
    total = 3000
    with connect(database_url) as queue:
        queue.enqueue_many([JobSpec("noop", queue="q") for _ in range(total)])
        workers = [enroll(queue, name=f"w{i}") for i in range(2)]
    seen: list[list[int]] = [[], []]

    def drain(index: int) -> None:
        me = workers[index]
        with connect(database_url) as mine:  # one per thread (its own event loop)
            while jobs := mine.claim(me.worker_id, me.credential, ["q"], batch=37):
                seen[index].extend(j.id for j in jobs)
                assert mine.complete_many(jobs) == []

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) + len(seen[1]) == total
    assert seen[0] and seen[1]  # both really competed


def _plans(url: str, action: Callable[[Queue], object]) -> list[dict[str, Any]]:
    """Run `action` with auto_explain sending every nested plan to us."""
    plans: list[dict[str, Any]] = []
    with psycopg.connect(url, autocommit=True) as conn:
        conn.add_notice_handler(
            lambda diag: (
                plans.append(json.loads(diag.message_primary.split("plan:", 1)[1]))
                if diag.message_primary and "plan:" in diag.message_primary
                else None
            )
        )
        for setting in (
            "LOAD 'auto_explain'",
            "SET auto_explain.log_min_duration = 0",
            "SET auto_explain.log_analyze = on",
            "SET auto_explain.log_nested_statements = on",
            "SET auto_explain.log_format = json",
            "SET client_min_messages = log",
        ):
            conn.execute(setting)
        action(Queue(conn))
    return plans


def _assert_reads_about(plans: list[dict[str, Any]], rows: int) -> None:
    nodes = [node for plan in plans for node in _nodes(plan["Plan"])]
    assert nodes
    # (corral_queues, a handful of settings rows, may be read whole.)
    big_seq_scans = [
        node["Relation Name"]
        for node in nodes
        if node["Node Type"] == "Seq Scan" and node["Relation Name"].startswith("corral_jobs")
    ]
    assert big_seq_scans == []
    touched = max(node["Actual Rows"] * node.get("Actual Loops", 1) for node in nodes)
    # Every node handles about a batch of rows, never the backlog.
    assert touched <= 3 * rows, touched


_BACKLOG = (
    "INSERT INTO corral_jobs (kind, queue, state, max_attempts, priority)"
    " SELECT 'noop', 'q', 'pending', 5, (g %% 3) FROM generate_series(1, 200000) g"
)


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found.extend(_nodes(child))
    return found


def test_a_claim_reads_only_its_batch_from_a_backlog_of_200k_jobs_even_before_analyze(
    database_url: str,
) -> None:
    # A bulk load straight into the table, no ANALYZE afterwards: the plan
    # must not depend on fresh statistics.
    run_sql(database_url, _BACKLOG)
    with Queue.connect(database_url) as queue:
        worker = enroll(queue)
    claimed: list[ClaimedJob] = []
    plans = _plans(
        database_url,
        lambda q: claimed.extend(q.claim(worker.worker_id, worker.credential, ["q"], batch=100)),
    )
    assert len(claimed) == 100
    _assert_reads_about(plans, 100)


def test_acknowledging_a_batch_reads_only_that_batch_at_a_200k_backlog(database_url: str) -> None:
    # The hot functions always use their generic plan, so the first call shows it.
    run_sql(database_url, _BACKLOG)
    with Queue.connect(database_url) as queue:
        worker = enroll(queue)
        jobs = queue.claim(worker.worker_id, worker.credential, ["q"], batch=300)
    done, failed, released = jobs[:100], jobs[100:200], jobs[200:]
    for action in (
        lambda q: q.complete_many(done),
        lambda q: q.fail_many([Failure(j, "boom") for j in failed]),
        lambda q: q.release_many(released),
        lambda q: q.heartbeat(worker.worker_id, worker.credential, in_flight=0),
    ):
        _assert_reads_about(_plans(database_url, action), 100)

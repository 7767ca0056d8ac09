"""The job browser's queue calls (browse_jobs, requeue_dead) on both clients:
filters, keyset pages newest first, and requeueing the dead jobs a filter
matches (the dashboard's Jobs page)."""

from __future__ import annotations

from corral.queue import Failure, JobState
from tests.integration._clients import Client
from tests.integration._enrolled import enroll


def _dead(queue: Client, queue_name: str, error: str, n: int) -> list[int]:
    ids = [queue.enqueue("render", {"i": i}, queue=queue_name, max_attempts=1) for i in range(n)]
    who = enroll(queue, queues=[queue_name], name=f"w-{queue_name}")
    claimed = queue.claim(who.worker_id, who.credential, [queue_name], batch=n)
    queue.fail_many([Failure(c, error, retry=False) for c in claimed], worker=who)
    return ids


def test_browse_filters_and_pages_newest_first(queue: Client) -> None:
    hot = [queue.enqueue("email", {"n": i}, queue="mail") for i in range(5)]
    dead = _dead(queue, "reports", "Bad Template: x", 3)
    assert [j.id for j in queue.browse_jobs(limit=100)] == sorted(hot + dead, reverse=True)
    assert [j.id for j in queue.browse_jobs(queue="mail", limit=2)] == hot[:-3:-1]
    page2 = queue.browse_jobs(queue="mail", before=hot[3], limit=2)
    assert [j.id for j in page2] == [hot[2], hot[1]]
    assert {j.id for j in queue.browse_jobs(state="dead")} == set(dead)
    assert {j.id for j in queue.browse_jobs(error="bad TEMPLATE")} == set(dead)
    assert {j.id for j in queue.browse_jobs(error="100%_")} == set()  # no LIKE wildcards
    assert {j.id for j in queue.browse_jobs(kind="email", state="pending")} == set(hot)
    assert queue.browse_jobs(region="us") == []
    assert queue.browse_jobs(queue="", kind="", region="", error="") != []  # blank: any


def test_requeue_dead_takes_only_what_the_filter_matches(queue: Client) -> None:
    smtp = _dead(queue, "mail", "smtp timeout", 2)
    tmpl = _dead(queue, "reports", "bad template", 2)
    assert queue.requeue_dead(error="SMTP") == 2
    assert {queue.get_job(i).state for i in smtp} == {JobState.PENDING}
    assert {queue.get_job(i).state for i in tmpl} == {JobState.DEAD}
    back = queue.get_job(smtp[0])
    assert back.attempt == 0 and back.last_error == "smtp timeout"
    assert queue.requeue_dead(queue="reports", limit=1) == 1
    assert queue.requeue_dead(queue="reports") == 1
    assert queue.requeue_dead() == 0


def test_recent_stats_counts_finished_jobs_from_the_counters(queue: Client) -> None:
    dead = _dead(queue, "reports", "boom", 2)
    waiting = queue.enqueue("email", {}, queue="reports")
    cancelled = queue.enqueue("email", {}, queue="mail")
    queue.cancel(cancelled)
    # before a rollup the counters hold nothing: unfinished jobs only
    (before,) = [s for s in queue.recent_stats() if s.queue == "reports"]
    assert JobState.DEAD not in before.counts and before.counts[JobState.PENDING] == 1
    queue.rollup_throughput()
    by_queue = {s.queue: s for s in queue.recent_stats(minutes=60)}
    assert by_queue["reports"].counts[JobState.DEAD] == len(dead)
    assert by_queue["reports"].counts[JobState.PENDING] == 1
    assert by_queue["reports"].oldest_pending_age_s is not None
    assert JobState.CANCELLED not in by_queue.get("mail", by_queue["reports"]).counts
    assert queue.get_job(waiting).state is JobState.PENDING

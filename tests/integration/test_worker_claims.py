"""How real `corral worker` processes size their claims (corral.worker.claimsize):
a claim never takes more jobs than the worker has free slots; a short burst
of jobs that outlast a claim is claimed in small batches so that every
worker woken for it runs some; a burst of jobs that finish before a claim
comes back is taken in one claim. Read from each worker's
`corral_worker_claim_batch_size` histogram and from who finished which job
in the database."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest

from corral import queue
from tests._metrics_doc import samples
from tests.integration._workers import WorkerProcess, mint_token, starting_workers, wait_until

pytestmark = pytest.mark.slow


def claim_sizes(worker: WorkerProcess) -> dict[str, float]:
    """The worker's claim-size histogram: bucket bound -> claims of at most
    that many jobs, plus `count`."""
    code, page = worker.http("/metrics")
    assert code == 200, page
    buckets = samples(page, "corral_worker_claim_batch_size_bucket")
    sizes = {dict(labels)["le"]: value for labels, value in buckets.items()}
    sizes["count"] = samples(page, "corral_worker_claim_batch_size_count")[()]
    return sizes


def finished_by(database_url: str) -> dict[str, int]:
    """Worker name -> jobs it finished."""
    with queue.Queue.connect(database_url) as q:
        rows = q.conn.execute(
            "SELECT w.name, count(*) FROM corral_jobs_finished f"
            " JOIN corral_workers w ON w.id = f.worker_id"
            " WHERE f.state = 'completed' GROUP BY w.name"
        ).fetchall()
    return {str(name): int(n) for name, n in rows}


def most_held_at_once(database_url: str, name: str) -> int:
    """The most jobs worker `name` held at one moment, from the database's own
    clock: a job is held from its claim (`started_at`) until its completion
    (`finished_at`), and the worker frees a slot only once the completion is
    written, so a claim within the free slots never overlaps more jobs than
    the worker has slots."""
    with queue.Queue.connect(database_url) as q:
        row = q.conn.execute(
            "SELECT max((SELECT count(*) FROM corral_jobs_finished g"
            "             WHERE g.worker_id = f.worker_id"
            "               AND g.started_at <= f.started_at AND g.finished_at > f.started_at))"
            "  FROM corral_jobs_finished f JOIN corral_workers w ON w.id = f.worker_id"
            " WHERE w.name = %s",
            (name,),
        ).fetchone()
    assert row is not None
    return int(row[0] or 0)


def test_a_claim_never_takes_more_jobs_than_the_free_slots(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> None:
    # Five slots and a deep queue of jobs that hold their slot a while: the
    # claim size grows past five (2, 4, 8, ...) but each claim is held to
    # the slots free at that moment.
    worker = WorkerProcess(
        worker_database_url, tmp_path / "w", name="narrow", token=mint_token(database_url),
        queues="bursts", args=("--concurrency", "5"),
    )  # fmt: skip
    try:
        worker.wait_ready()
        with queue.Queue.connect(database_url) as q:
            q.enqueue_many(
                [queue.JobSpec("hold", {"sleep_s": 0.05}, queue="bursts") for _ in range(60)]
            )
        wait_until(lambda: finished_by(database_url).get("narrow") == 60, 60, "60 jobs done")
        held = most_held_at_once(database_url, "narrow")
        assert 2 <= held <= 5, f"the worker held {held} jobs at once with 5 slots"
        sizes = claim_sizes(worker)
        assert sizes["count"] >= 12  # at least 60 / 5 claims
        assert sizes["5.0"] == sizes["count"], f"a claim took more than 5 jobs: {sizes}"
    finally:
        worker.stop()


def test_a_short_burst_is_shared_by_the_workers_it_woke(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> None:
    # Two idle workers with a hundred slots each; eight jobs that run 0.3 s
    # (far longer than a claim) arrive in one statement (one NOTIFY wakes
    # both). Claimed whole, one worker would take all eight in its first
    # claim. Claimed from a small start (2, then 4), no claim takes more than
    # five, whatever the timing; three bursts let the other worker's claims
    # land even on a machine busy enough to delay one process by a few claims.
    with ExitStack() as stack:
        pair = []
        for name in ("a", "b"):
            process = WorkerProcess(
                worker_database_url, tmp_path / name, name=name, token=mint_token(database_url),
                queues="bursts", args=("--concurrency", "100"),
            )  # fmt: skip
            stack.callback(process.stop)
            pair.append(process)
        for process in pair:
            process.wait_ready()
        for burst in range(1, 4):
            with queue.Queue.connect(database_url) as q:
                q.enqueue_many(
                    [queue.JobSpec("hold", {"sleep_s": 0.3}, queue="bursts") for _ in range(8)]
                )

            def burst_done(n: int = 8 * burst) -> bool:
                return sum(finished_by(database_url).values()) == n

            wait_until(burst_done, 30, f"burst {burst} done")
        for process in pair:
            sizes = claim_sizes(process)
            assert sizes["5.0"] == sizes["count"], f"{process.name} claimed >5 at once: {sizes}"
        ran = finished_by(database_url)
        assert set(ran) == {"a", "b"}, f"one worker ran every burst: {ran}"


def test_a_burst_of_jobs_quicker_than_a_claim_is_taken_in_one_claim(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> None:
    # No-op jobs finish in microseconds, a claim takes a round trip: once the
    # worker has timed both (the first jobs), another worker's claim could
    # not start such jobs sooner, so a burst is claimed whole (no 2, 4, 2).
    with (
        starting_workers(database_url, worker_database_url, tmp_path, queues="bursts") as start,
        queue.Queue.connect(database_url) as q,
    ):
        worker = start("quick", "--concurrency", "100")
        q.enqueue_many([queue.JobSpec("noop", {}, queue="bursts") for _ in range(3)])
        wait_until(lambda: finished_by(database_url).get("quick") == 3, 30, "warm-up done")
        before = claim_sizes(worker)
        q.enqueue_many([queue.JobSpec("noop", {}, queue="bursts") for _ in range(8)])
        wait_until(lambda: finished_by(database_url).get("quick") == 11, 30, "the burst done")
        after = claim_sizes(worker)
    # One claim of 6 to 10 jobs: the whole burst (the small start would have
    # claimed 2, 4 and 2).
    assert after["10.0"] - after["5.0"] - (before["10.0"] - before["5.0"]) == 1, after


def test_a_handler_sees_the_jobs_times_in_utc_whatever_the_servers_zone(
    database_url: str, worker_database_url: str, tmp_path: Path
) -> None:
    # The database's own zone is not UTC (+05:30, no daylight saving): the
    # claim connection's session runs in UTC regardless, so the handler gets
    # the same instant as a datetime in UTC (corral.worker._queue).
    with queue.Queue.connect(database_url) as q:
        name = q.conn.execute("SELECT current_database()").fetchone()
        assert name is not None
        q.conn.execute(f"ALTER DATABASE \"{name[0]}\" SET TimeZone = 'Asia/Kolkata'")
    with queue.Queue.connect(database_url) as q:
        assert q.conn.execute("SHOW TimeZone").fetchone() == ("Asia/Kolkata",)
        job_id = q.enqueue("clock", queue="clock")
        enqueued = q.get_job(job_id).enqueued_at
    offset = enqueued.utcoffset()
    assert offset is not None and offset.total_seconds() == 19800
    worker = WorkerProcess(
        worker_database_url, tmp_path / "w", name="w", token=mint_token(database_url),
        queues="clock",
    )  # fmt: skip
    try:
        worker.wait_ready()
        wait_until(lambda: _result(database_url, job_id) is not None, what="the clock job's result")
    finally:
        worker.stop()
    assert _result(database_url, job_id) == {"zone": "UTC", "epoch": enqueued.timestamp()}


def _result(database_url: str, job_id: int) -> object:
    with queue.Queue.connect(database_url) as q:
        return q.get_job(job_id).result

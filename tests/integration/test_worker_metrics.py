"""A real `corral worker` process, scraped after it ran jobs: every worker
metric docs/metrics.md lists is on its /metrics page with the documented type
and labels, no undocumented `corral_*` metric is, and the counts are the jobs
it ran."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import queue
from tests._metrics_doc import problems, samples
from tests.integration._workers import WorkerProcess, mint_token, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def worker(database_url: str, worker_database_url: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    # As in a pool: the worker connects as the worker role, never as the admin.
    process = WorkerProcess(
        worker_database_url, tmp_path / "w", name="scraped", token=mint_token(database_url),
        queues="reports",
    )  # fmt: skip
    try:
        yield process.wait_ready()
    finally:
        process.stop()


def test_a_worker_that_ran_jobs_exports_every_documented_metric(
    database_url: str, worker: WorkerProcess
) -> None:
    with queue.Queue.connect(database_url) as q:
        q.enqueue_many([queue.JobSpec("noop", {"n": i}, queue="reports") for i in range(20)])
        q.enqueue("explode", {}, queue="reports", max_attempts=1)

    def finished() -> dict[tuple[tuple[str, str], ...], float] | None:
        code, page = worker.http("/metrics")
        assert code == 200, page
        jobs = samples(page, "corral_worker_jobs_total")
        done = jobs.get((("outcome", "completed"), ("queue", "reports")))
        failed = jobs.get((("outcome", "exception"), ("queue", "reports")))
        return jobs if done == 20 and failed == 1 else None

    wait_until(finished, 30, "20 completed jobs and 1 failed one in /metrics")
    _, page = worker.http("/metrics")
    assert problems(page, "worker") == []
    durations = samples(page, "corral_worker_job_duration_seconds_count")
    assert durations == {(("queue", "reports"),): 21.0}
    assert samples(page, "corral_worker_ready") == {(): 1.0}
    assert samples(page, "corral_worker_draining") == {(): 0.0}

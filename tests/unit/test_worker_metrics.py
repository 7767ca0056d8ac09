"""The worker's job counters exist from the start: a series that appears
only with its first increment hides that increment from increase() and
rate(), so the first failure of a queue would never show (docs/metrics.md,
`corral_worker_jobs_total`). And the outcomes counted on top of `completed`
are kept out of the dashboard's stacked throughput."""

from __future__ import annotations

import json
from pathlib import Path

from corral.queue.records import FailureReason
from corral.worker.config import WorkerSettings
from corral.worker.metrics import ALSO_COMPLETED, OUTCOMES, WorkerMetrics
from corral.worker.runtime import Worker
from tests._metrics_doc import DOC, samples

DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "corral" / "dashboards" / "corral.json"


def _jobs(metrics: WorkerMetrics) -> dict[tuple[str, str], float]:
    found = samples(metrics.render().decode(), "corral_worker_jobs_total")
    return {(dict(k)["queue"], dict(k)["outcome"]): v for k, v in found.items()}


def test_every_outcome_of_every_queue_starts_at_zero() -> None:
    metrics = WorkerMetrics(lambda: {}, queues=["emails", "reports"])
    assert _jobs(metrics) == {(q, o): 0 for q in ("emails", "reports") for o in OUTCOMES}
    occurrences = samples(metrics.render().decode(), "corral_worker_schedule_occurrences_total")
    assert occurrences == {(("outcome", "enqueued"),): 0, (("outcome", "skipped"),): 0}


def test_a_count_moves_its_own_series_and_a_new_queue_gets_every_outcome() -> None:
    metrics = WorkerMetrics(lambda: {}, queues=["emails"])
    metrics.count("emails", "timeout")
    metrics.count("other", "completed", 2)
    jobs = _jobs(metrics)
    assert jobs[("emails", "timeout")] == 1
    assert jobs[("emails", "completed")] == 0
    assert {o for q, o in jobs if q == "other"} == set(OUTCOMES)
    assert jobs[("other", "completed")] == 2
    assert metrics.jobs == {("emails", "timeout"): 1, ("other", "completed"): 2}


def test_a_worker_exports_its_queues_outcomes_before_its_first_job() -> None:
    settings = WorkerSettings(database_url="postgresql://w@db.invalid/corral", queues=["a", "b"])
    runtime = Worker(settings)
    assert set(_jobs(runtime.metrics)) == {(q, o) for q in ("a", "b") for o in OUTCOMES}


def test_the_outcomes_are_the_workers_failure_reasons_and_the_refusals() -> None:
    # The reaper's lease_expired is not a worker's count; a refused result is
    # counted as result_refused.
    reasons = set(FailureReason) - {FailureReason.LEASE_EXPIRED, FailureReason.RESULT}
    assert set(OUTCOMES) == {"completed", *map(str, reasons), *ALSO_COMPLETED}
    (row,) = [line for line in DOC.read_text().splitlines() if "`corral_worker_jobs_total`" in line]
    for outcome in OUTCOMES:
        assert f"`{outcome}`" in row, outcome


def test_the_stacked_throughput_counts_each_job_once() -> None:
    # lease_lost, result_refused and unstorable are counted on top of the
    # job's `completed`: stacked with it, they would count it twice.
    dashboard = json.loads(DASHBOARD.read_text())
    (panel,) = [
        p
        for p in dashboard["panels"]
        if any("corral_worker_jobs_total" in t["expr"] for t in p.get("targets", []))
    ]
    assert panel["fieldConfig"]["defaults"]["custom"]["stacking"]["mode"] == "normal"
    unstacked = {
        o["matcher"]["options"]
        for o in panel["fieldConfig"]["overrides"]
        if o["matcher"]["id"] == "byFrameRefID"
        and {"id": "custom.stacking", "value": {"mode": "none"}} in o["properties"]
    }
    for target in panel["targets"]:
        if target["refId"] in unstacked:
            continue
        assert f'outcome!~"{"|".join(ALSO_COMPLETED)}"' in target["expr"], target["expr"]

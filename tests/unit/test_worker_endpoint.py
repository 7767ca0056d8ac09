"""The worker's HTTP routes and metrics, without sockets: readiness follows
enrollment and drain, POST /drain drains, /metrics counts by queue and outcome."""

from __future__ import annotations

import json
from typing import Any

from corral.worker.endpoint import Endpoint
from corral.worker.metrics import Histogram, WorkerMetrics, parse_text


class FakeWorker:
    def __init__(self) -> None:
        self.state = "active"
        self.metrics = WorkerMetrics(lambda: {"in_flight": 2.0})

    def status(self) -> dict[str, Any]:
        return {"state": self.state, "in_flight": 2}

    def is_ready(self) -> tuple[bool, str]:
        return self.state == "active", self.state

    def is_healthy(self) -> tuple[bool, str]:
        return True, "ok"

    def request_drain(self, reason: str) -> None:
        self.state = "draining"

    def render_metrics(self) -> bytes:
        return self.metrics.render()


def test_readyz_is_200_while_active_and_503_once_draining() -> None:
    worker = FakeWorker()
    endpoint = Endpoint(worker, "127.0.0.1", 0)
    assert endpoint._route("GET", "/readyz")[0] == 200
    code, _, body = endpoint._route("POST", "/drain")
    assert code == 202 and json.loads(body)["state"] == "draining"
    assert endpoint._route("GET", "/readyz")[0] == 503
    assert endpoint._route("GET", "/healthz")[0] == 200  # drained workers stay alive


def test_drain_refuses_get_so_a_probe_cannot_drain_a_worker_by_accident() -> None:
    worker = FakeWorker()
    assert Endpoint(worker, "127.0.0.1", 0)._route("GET", "/drain")[0] == 405
    assert worker.state == "active"


def test_metrics_count_jobs_by_queue_and_outcome_and_export_gauges() -> None:
    worker = FakeWorker()
    worker.metrics.count("emails", "completed", 3)
    worker.metrics.count("emails", "timeout")
    worker.metrics.observe_duration("emails", 0.002)
    samples = parse_text(worker.render_metrics().decode())
    assert samples['corral_worker_jobs_total{outcome="completed",queue="emails"}'] == 3
    assert samples['corral_worker_jobs_total{outcome="timeout",queue="emails"}'] == 1
    assert samples['corral_worker_job_duration_seconds_count{queue="emails"}'] == 1
    assert samples["corral_worker_in_flight"] == 2


def test_histogram_buckets_are_cumulative_with_an_inf_bucket() -> None:
    h = Histogram((1.0, 5.0))
    for value in (0.5, 1.0, 3.0, 9.0):
        h.observe(value)
    assert h.buckets() == [("1.0", 2.0), ("5.0", 3.0), ("+Inf", 4.0)]
    assert h.total == 13.5

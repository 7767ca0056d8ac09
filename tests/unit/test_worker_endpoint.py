"""The worker's HTTP routes and metrics, without sockets: readiness follows
enrollment and drain, POST /drain drains, /metrics counts by queue and outcome."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.web_urldispatcher import MatchInfoError

from corral.worker.endpoint import DRAIN_KEY_FILE, read_drain_key, write_drain_key
from corral.worker.endpoint_http import Endpoint
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


KEY = "k3y"


def _call(
    endpoint: Endpoint, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    """Route a request through the endpoint's aiohttp app, without a socket."""
    return asyncio.run(_route(endpoint, method, path, headers or {}))


async def _route(
    endpoint: Endpoint, method: str, path: str, headers: dict[str, str]
) -> tuple[int, bytes]:
    request = make_mocked_request(method, path, headers=headers, app=endpoint.app)
    match = await endpoint.app.router.resolve(request)
    if isinstance(match, MatchInfoError):
        return match.http_exception.status, b""
    response = await match.handler(request)
    assert isinstance(response, web.Response)
    return response.status, bytes(response.body or b"")  # type: ignore[arg-type]


def _endpoint(worker: FakeWorker) -> Endpoint:
    return Endpoint(worker, "127.0.0.1", 0, drain_key=KEY)


def test_readyz_is_200_while_active_and_503_once_draining() -> None:
    worker = FakeWorker()
    endpoint = _endpoint(worker)
    assert (_call(endpoint, "GET", "/readyz"))[0] == 200
    code, body = _call(endpoint, "POST", "/drain", {"Authorization": f"Bearer {KEY}"})
    assert code == 202 and json.loads(body)["state"] == "draining"
    assert (_call(endpoint, "GET", "/readyz"))[0] == 503
    assert (_call(endpoint, "GET", "/healthz"))[0] == 200  # drained workers stay alive


def test_drain_refuses_get_so_a_probe_cannot_drain_a_worker_by_accident() -> None:
    worker = FakeWorker()
    assert (_call(_endpoint(worker), "GET", "/drain"))[0] == 405
    assert worker.state == "active"


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, 401),
        ({"Authorization": "Bearer"}, 401),
        ({"Authorization": "Basic azN5Og=="}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"Authorization": f"Bearer {KEY}x"}, 403),
    ],
)
def test_drain_without_the_workers_own_key_is_refused(headers: dict[str, str], code: int) -> None:
    worker = FakeWorker()
    assert (_call(_endpoint(worker), "POST", "/drain", headers))[0] == code
    assert worker.state == "active"


def test_a_worker_without_a_drain_key_refuses_every_drain() -> None:
    worker = FakeWorker()
    endpoint = Endpoint(worker, "127.0.0.1", 0, drain_key=None)
    assert (_call(endpoint, "POST", "/drain", {"Authorization": "Bearer "}))[0] == 401
    assert (_call(endpoint, "POST", "/drain", {"Authorization": "Bearer x"}))[0] == 403
    assert worker.state == "active"


def test_metrics_healthz_and_status_stay_open_without_a_key() -> None:
    endpoint = _endpoint(FakeWorker())
    for path in ("/metrics", "/healthz", "/livez", "/readyz", "/status"):
        assert (_call(endpoint, "GET", path))[0] == 200, path
    assert (_call(endpoint, "GET", "/nope"))[0] == 404


def test_the_drain_key_file_is_random_private_and_replaced_on_each_start(tmp_path: Path) -> None:
    first = write_drain_key(tmp_path / "state")
    assert read_drain_key(tmp_path / "state") == first
    assert stat.S_IMODE((tmp_path / "state" / DRAIN_KEY_FILE).stat().st_mode) == 0o600
    second = write_drain_key(tmp_path / "state")
    assert second != first and len(second) >= 40
    assert read_drain_key(tmp_path / "state") == second


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

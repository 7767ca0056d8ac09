"""The observability kit's files, checked without helm or Prometheus: every
metric the alerts and the dashboard query is one docs/metrics.md lists, the
doc's alerts are the chart's, and the doc check itself catches what it must.

helm renders the monitoring templates and promtool checks and tests the rules
in the e2e tier (tests/e2e/test_chart_monitoring.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from corral.worker.metrics import WorkerMetrics
from tests._metrics_doc import DOC, documented, problems

CHART = Path(__file__).resolve().parents[2] / "charts" / "corral"
RULES = CHART / "templates" / "prometheusrule.yaml"
DASHBOARD = CHART / "dashboards" / "corral.json"


def _queried(text: str) -> set[str]:
    """Metric names in PromQL text, histogram series folded into their family."""
    names = set(re.findall(r"\b(corral_[a-z0-9_]+)", text))
    return {re.sub(r"_(bucket|sum|count)$", "", name) for name in names}


def _targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p.get("targets", [])]


def test_every_metric_the_alerts_query_is_documented() -> None:
    names = {row.name for row in documented()}
    used = _queried(RULES.read_text())
    assert used, "the PrometheusRule queries no corral metric"
    assert used - names == set()


def test_the_alerts_use_only_metrics_the_operator_exports() -> None:
    # The alerts must work with the operator's ServiceMonitor alone.
    operator = {row.name for row in documented("operator")}
    assert _queried(RULES.read_text()) - operator == set()


def test_every_metric_the_dashboard_queries_is_documented() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for t in _targets(dashboard))
    exprs += " ".join(v.get("definition", "") for v in dashboard["templating"]["list"])
    assert _queried(exprs) - {row.name for row in documented()} == set()


def test_the_dashboard_shows_queues_durations_pools_and_drains() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(t["expr"] for t in _targets(dashboard))
    for needed in (
        "corral_queue_jobs",  # depth per queue
        "corral_worker_jobs_total",  # throughput per queue
        "corral_worker_job_duration_seconds_bucket",  # duration histogram
        "corral_pool_replicas",  # replicas vs desired
        "corral_pool_scale_down_duration_seconds_bucket",  # drain times
        "corral_worker_draining",
    ):
        assert needed in exprs, needed


def test_every_dashboard_query_goes_through_the_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_alerts_in_the_doc_are_the_alerts_in_the_chart() -> None:
    in_chart = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    in_doc = set(re.findall(r"^\| `(Corral\w+)` \|", DOC.read_text(), re.MULTILINE))
    assert in_chart == in_doc
    assert len(in_chart) == 7


def test_a_worker_rendered_in_process_matches_the_doc() -> None:
    # The gauges `corral worker` exports (WorkerRuntime._gauges).
    gauges = {"in_flight": 1, "concurrency": 4, "draining": 0, "ready": 1, "stuck_handlers": 0}
    metrics = WorkerMetrics(lambda: dict(gauges))
    metrics.count("emails", "completed")
    metrics.observe_duration("emails", 0.2)
    metrics.observe_latency("emails", 0.01)
    assert problems(metrics.render().decode(), "worker") == []


def test_the_doc_check_reports_missing_undocumented_mistyped_and_mislabelled_metrics() -> None:
    page = "\n".join(
        [
            "# TYPE corral_worker_in_flight counter",  # a gauge in the doc
            "corral_worker_in_flight_total 1",
            "# TYPE corral_worker_ready gauge",
            'corral_worker_ready{pod="x"} 1',  # no labels in the doc
            "# TYPE corral_worker_surprise gauge",
            "corral_worker_surprise 1",
        ]
    )
    found = "\n".join(problems(page, "worker"))
    assert "corral_worker_in_flight: documented as gauge, exported as counter" in found
    assert "corral_worker_ready: labels ['pod'], documented []" in found
    assert "corral_worker_surprise: exported, not in docs/metrics.md" in found
    assert "corral_worker_jobs_total: documented, not exported" in found

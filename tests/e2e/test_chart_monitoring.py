"""The chart's observability kit as helm renders it: off by default; when on,
a ServiceMonitor and a PodMonitor that scrape what the operator and the worker
pods serve, a dashboard ConfigMap holding the dashboard file, and a
PrometheusRule whose rules promtool (from Debian's `prometheus` package,
fetched by `make promtool`) accepts and whose alerts fire on their scenarios
(tests/e2e/prometheus/alerts.test.yaml) and stay quiet otherwise.

Needs helm and promtool, no cluster: the Prometheus Operator's CRDs are not
installed here, so the objects are checked by their fields, not by a dry run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from corral_local.localcluster import default_bin_dir

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "corral"
MONITORING_VALUES = CHART / "ci" / "monitoring-values.yaml"
ALERT_TESTS = Path(__file__).resolve().parent / "prometheus" / "alerts.test.yaml"
KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def _helm(*args: str) -> subprocess.CompletedProcess[str]:
    helm = default_bin_dir() / "helm"
    assert helm.exists(), f"{helm} is missing: run `make cluster-bins`"
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


def _render(*args: str, release: str = "corral") -> list[dict[str, Any]]:
    result = _helm("template", release, str(CHART), "--namespace", "corral-system", *args)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def promtool() -> Path:
    """$CORRAL_CACHE/promtool-v<PROMTOOL_VERSION>/bin/promtool, as `make promtool`
    unpacks it from Debian's `prometheus` package."""
    pinned = re.search(
        r"^PROMTOOL_VERSION \?= (\S+)$", (ROOT / "Makefile").read_text(), re.MULTILINE
    )
    assert pinned is not None, "the Makefile no longer pins PROMTOOL_VERSION"
    version = os.environ.get("PROMTOOL_VERSION") or pinned.group(1)
    cache = Path(os.environ.get("CORRAL_CACHE") or Path.home() / ".cache" / "corral")
    path = cache / f"promtool-v{version}" / "bin" / "promtool"
    assert path.exists(), f"{path} is missing: run `make promtool`"
    return path


def _promtool(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(promtool()), *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def _rules_file(tmp_path: Path, *args: str) -> Path:
    rule = _one(_render("-f", str(MONITORING_VALUES), *args), "PrometheusRule")
    path = tmp_path / "corral-rules.yaml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    return path


def test_the_chart_lints_with_the_observability_kit_on() -> None:
    result = _helm("lint", "--strict", str(CHART), "-f", str(MONITORING_VALUES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_observability_kit_is_off_by_default() -> None:
    docs = _render()
    assert KINDS.isdisjoint(d["kind"] for d in docs)
    assert not [d for d in docs if d["metadata"]["name"].endswith("-dashboard")]


def test_the_service_monitor_scrapes_the_operator_keeping_the_pools_namespace() -> None:
    docs = _render("-f", str(MONITORING_VALUES))
    monitor = _one(docs, "ServiceMonitor")
    service = _one(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["corral-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http"
    assert endpoint["path"] == "/metrics"
    assert endpoint["honorLabels"] is True
    assert endpoint["interval"] == "30s"


def test_a_long_release_name_keeps_the_metrics_service_a_dns_label_the_alerts_select() -> None:
    release = "r" * 53  # the longest release name helm accepts
    docs = _render("-f", str(MONITORING_VALUES), release=release)
    name = _one(docs, "Service")["metadata"]["name"]
    assert len(name) <= 63 and name.startswith(release) and not name.endswith("-"), name
    rule = _one(docs, "PrometheusRule")
    for alert in (r for group in rule["spec"]["groups"] for r in group["rules"]):
        assert f'job="{name}"' in alert["expr"]  # the job the ServiceMonitor gives it


def test_the_service_monitor_needs_the_metrics_service() -> None:
    result = _helm(
        "template", "corral", str(CHART), "-f", str(MONITORING_VALUES),
        "--set", "metrics.service=false",
    )  # fmt: skip
    assert result.returncode != 0
    assert "monitoring.operator.serviceMonitor needs metrics.service: true" in result.stderr


def test_the_pod_monitor_scrapes_every_worker_pod_with_its_pool_and_region() -> None:
    docs = _render("-f", str(MONITORING_VALUES))
    monitor = _one(docs, "PodMonitor")
    # What the operator puts on worker pods (corral.controller.naming / deployment).
    assert monitor["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "corral-worker"}
    }
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")
    relabel = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert relabel == {
        "pool": ["__meta_kubernetes_pod_label_corral_dev_pool"],
        "region": ["__meta_kubernetes_pod_label_corral_dev_region"],
    }


def test_the_pod_monitor_follows_the_watched_namespaces() -> None:
    docs = _render("-f", str(MONITORING_VALUES), "--set", "watch.namespaces={jobs,batch}")
    assert _one(docs, "PodMonitor")["spec"]["namespaceSelector"] == {
        "matchNames": ["jobs", "batch"]
    }
    docs = _render(
        "-f", str(MONITORING_VALUES), "--set", "monitoring.workers.namespaces={etl}"
    )  # fmt: skip
    assert _one(docs, "PodMonitor")["spec"]["namespaceSelector"] == {"matchNames": ["etl"]}


def test_the_dashboard_configmap_holds_the_dashboard_file() -> None:
    docs = _render("-f", str(MONITORING_VALUES))
    (config,) = [d for d in docs if d["metadata"]["name"] == "corral-dashboard"]
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads((CHART / "dashboards" / "corral.json").read_text())
    assert json.loads(config["data"]["corral.json"]) == shipped


def test_a_mistyped_monitoring_value_is_rejected_by_name() -> None:
    result = _helm("template", "t", str(CHART), "--set", "monitoring.rules.enabeld=true")
    assert result.returncode != 0
    assert "additional properties 'enabeld' not allowed" in result.stderr


def test_promtool_accepts_the_alerting_rules(tmp_path: Path) -> None:
    rules = _rules_file(tmp_path)
    result = _promtool("check", "rules", str(rules), timeout_s=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


def test_each_alert_fires_on_its_scenario_and_stays_quiet_otherwise(tmp_path: Path) -> None:
    _rules_file(tmp_path)  # alerts.test.yaml reads corral-rules.yaml beside it
    tests = tmp_path / "alerts.test.yaml"
    tests.write_text(ALERT_TESTS.read_text())
    result = _promtool("test", "rules", str(tests), timeout_s=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_alerts_follow_the_thresholds_and_labels_in_the_values(tmp_path: Path) -> None:
    rules = yaml.safe_load(
        _rules_file(
            tmp_path,
            "--set", "monitoring.rules.oldestWaitingSeconds=900",
            "--set", "monitoring.rules.deadJobsThreshold=10",
            "--set", "monitoring.rules.operatorSelector=job=\"my-corral\"",
        ).read_text()
    )  # fmt: skip
    alerts = {r["alert"]: r for group in rules["groups"] for r in group["rules"]}
    assert ") > 900\n" in alerts["CorralOldestJobWaitingTooLong"]["expr"]
    assert alerts["CorralDeadJobsRising"]["expr"].endswith("> 10")
    for alert in alerts.values():
        assert 'job="my-corral"' in alert["expr"]
        assert "corral-metrics" not in alert["expr"]
        assert alert["labels"]["team"] == "platform"
        assert alert["labels"]["severity"] in ("warning", "critical")

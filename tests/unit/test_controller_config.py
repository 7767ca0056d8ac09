"""Operator settings: errors name the flag, its variable and the fix."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner

from corral.cli import cli
from corral.controller.config import OperatorConfig, OperatorConfigError


def test_a_missing_database_url_names_the_flag_and_variable() -> None:
    with pytest.raises(OperatorConfigError, match="--database-url / CORRAL_DATABASE_URL"):
        OperatorConfig(database_url="")


def test_a_default_region_that_is_not_a_dns_label_is_refused() -> None:
    with pytest.raises(OperatorConfigError, match="CORRAL_DEFAULT_REGION 'EU_West'"):
        OperatorConfig(database_url="postgresql://x@h/db", default_region="EU_West")


def test_watching_no_namespace_means_cluster_wide() -> None:
    assert OperatorConfig(database_url="postgresql://x@h/db").clusterwide
    assert not OperatorConfig(
        database_url="postgresql://x@h/db", watch_namespaces=("jobs",)
    ).clusterwide


def test_corral_operator_reports_a_bad_setting_as_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["operator"], env={"CORRAL_DATABASE_URL": ""})
    assert result.exit_code == 2
    assert "CORRAL_DATABASE_URL is not set" in result.output


def test_the_environment_the_helm_chart_sets_configures_the_operator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import corral.controller.cli as operator_cli

    seen: list[OperatorConfig] = []

    def fake_run(config: OperatorConfig, kubeconfig: str | None = None) -> int:
        seen.append(config)
        return 0

    monkeypatch.setattr(operator_cli, "run", fake_run)
    env = {  # the names charts/corral/templates/deployment.yaml sets
        "CORRAL_DATABASE_URL": "postgresql://corral@db/corral",
        "CORRAL_OPERATOR_NAMESPACE": "corral-system",
        "CORRAL_OPERATOR_POD": "corral-7d9f-abcde",
        "CORRAL_WATCH_NAMESPACES": "jobs,batch",
        "CORRAL_WORKER_IMAGE": "acme/worker:2",
        "CORRAL_DEFAULT_REGION": "eu",
        "CORRAL_DEFAULT_REGION_CREATE": "false",
        "CORRAL_DEFAULT_REGION_DISPLAY_NAME": "Europe",
        "CORRAL_LEADER_LEASE": "corral-leader",
        "CORRAL_HTTP_PORT": "9090",
        "CORRAL_LOG_LEVEL": "WARNING",
    }
    result = CliRunner().invoke(cli, ["operator"], env=env)
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert config.namespace == "corral-system"
    assert config.identity == "corral-7d9f-abcde"
    assert config.watch_namespaces == ("jobs", "batch")
    assert config.worker_image == "acme/worker:2"
    assert (config.default_region, config.create_default_region) == ("eu", False)
    assert config.default_region_display_name == "Europe"
    assert (config.lease_name, config.http_port) == ("corral-leader", 9090)


def test_every_variable_the_chart_sets_is_one_the_operator_reads() -> None:
    from pathlib import Path

    template = Path(__file__).resolve().parents[2] / "charts/corral/templates/deployment.yaml"
    chart_env = set(re.findall(r"- name: (CORRAL_[A-Z_]+)", template.read_text()))
    help_text = CliRunner().invoke(cli, ["operator", "--help"], terminal_width=400).output
    read = set(re.findall(r"CORRAL_[A-Z_]+", help_text))
    assert chart_env and chart_env <= read, chart_env - read


@pytest.mark.parametrize(
    ("flag", "seconds"), [(None, 7 * 86_400.0), ("30d", 30 * 86_400.0), ("0", 0.0)]
)
def test_registry_retention_defaults_to_a_week_and_0_keeps_every_row(
    monkeypatch: pytest.MonkeyPatch, flag: str | None, seconds: float
) -> None:
    import corral.controller.cli as operator_cli

    seen: list[OperatorConfig] = []
    monkeypatch.setattr(operator_cli, "run", lambda config, kubeconfig=None: seen.append(config))
    args = ["operator", *(["--registry-retention", flag] if flag else [])]
    result = CliRunner().invoke(cli, args, env={"CORRAL_DATABASE_URL": "postgresql://c@db/c"})
    assert result.exit_code == 0, result.output
    assert seen[0].registry_retention_s == seconds


@pytest.mark.parametrize(
    ("value", "says"),
    [("10m", "must be at least 1h"), ("soon", "--registry-retention 'soon' is not a duration")],
)
def test_a_registry_retention_too_short_or_not_a_duration_names_the_flag(
    value: str, says: str
) -> None:
    result = CliRunner().invoke(
        cli,
        ["operator", "--registry-retention", value],
        env={"CORRAL_DATABASE_URL": "postgresql://c@db/c"},
    )
    assert result.exit_code == 2 and says in result.output, result.output


@pytest.mark.parametrize(
    ("field", "flag"),
    [("database_url", "--database-url / CORRAL_DATABASE_URL"),
     ("worker_database_url", "--worker-database-url / CORRAL_WORKER_DATABASE_URL")],
)  # fmt: skip
@pytest.mark.parametrize(
    "url", ["corral:s3cretPW@db/corral", "postgresql://corral:s3cretPW@db:99999/corral"]
)
def test_a_malformed_database_url_names_the_flag_and_never_the_password(
    field: str, flag: str, url: str
) -> None:
    urls = {"database_url": "postgresql://op:op-pw@db/corral", field: url}
    with pytest.raises(OperatorConfigError) as caught:
        OperatorConfig(urls["database_url"], urls.get("worker_database_url"))
    assert str(caught.value).startswith(flag), caught.value
    assert "s3cretPW" not in str(caught.value)


def test_corral_operator_refuses_a_malformed_url_before_starting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import corral.controller.cli as operator_cli

    started: list[OperatorConfig] = []
    monkeypatch.setattr(operator_cli, "run", lambda config, kubeconfig=None: started.append(config))
    env = {"CORRAL_DATABASE_URL": "postgresql//corral:s3cretPW@db/corral"}
    result = CliRunner().invoke(cli, ["operator"], env=env)
    assert result.exit_code == 2 and started == []
    assert "--database-url / CORRAL_DATABASE_URL" in result.output and "mistyped" in result.output
    assert "s3cretPW" not in result.output


def test_the_operators_log_never_shows_a_database_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import logging

    import corral.controller.cli as operator_cli

    def run(config: OperatorConfig, kubeconfig: str | None = None) -> int:
        # What psycopg or a reconnect loop may say, in a message and in a traceback.
        log = logging.getLogger("corral.controller.autoscaler")
        log.warning("LISTEN lost (%s)", "connection failed: password=0p-s3cret host=db")
        try:
            raise RuntimeError("postgresql://op:0p-s3cret@db/corral refused wk-s3cret")
        except RuntimeError:
            log.exception("reconnecting")
        return 0

    monkeypatch.setattr(operator_cli, "run", run)
    env = {
        "CORRAL_DATABASE_URL": "postgresql://op:0p-s3cret@db/corral",
        "CORRAL_WORKER_DATABASE_URL": "host=db user=w password=wk-s3cret dbname=corral",
    }
    result = CliRunner().invoke(cli, ["operator"], env=env)
    assert result.exit_code == 0, result.output
    assert "LISTEN lost" in result.output and "reconnecting" in result.output
    assert "s3cret" not in result.output, result.output


@pytest.mark.parametrize("kubeconfig", ["/nonexistent/kubeconfig", "/etc/hostname"])
def test_a_kubeconfig_that_cannot_be_loaded_is_one_line_naming_the_flag(
    kubeconfig: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", "")  # run() sets it from the flag; restored after
    result = CliRunner().invoke(
        cli, ["operator", "--database-url", "postgresql://op@db/corral", "--kubeconfig", kubeconfig]
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception  # not a ConfigException
    assert "Traceback" not in result.output
    assert f"--kubeconfig / KUBECONFIG: cannot load {kubeconfig}" in result.output, result.output

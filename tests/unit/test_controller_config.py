"""Operator settings: errors name the flag, its variable and the fix."""

from __future__ import annotations

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

"""The chart's web dashboard (templates/web-dashboard.yaml), checked from its
files: off by default, every RBAC rule says why and only lists, and its pod
and container are as restricted as the operator's (the same securityContext)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "corral"
TEMPLATE = (CHART / "templates" / "web-dashboard.yaml").read_text()


def test_the_dashboard_is_off_by_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["dashboard"]["enabled"] is False
    assert TEMPLATE.startswith("{{- if .Values.dashboard.enabled }}")


def test_every_dashboard_rbac_rule_says_why_and_only_lists() -> None:
    lines = TEMPLATE.splitlines()
    rules = [i for i, line in enumerate(lines) if re.match(r"^\s*- apiGroups:", line)]
    assert len(rules) == 2
    for index in rules:
        assert lines[index - 1].strip().startswith("#"), f"rule at line {index + 1} has no why"
        # The Pools page lists pools and Events; it never gets one by name or watches.
        assert lines[index + 2].strip() == 'verbs: ["list"]'


def _security_contexts(text: str) -> list[str]:
    """Each `securityContext:` block of a template, as its indented lines."""
    blocks, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "securityContext:":
            indent = len(line) - len(line.lstrip())
            body = []
            for following in lines[i + 1 :]:
                if len(following) - len(following.lstrip()) <= indent:
                    break
                body.append(following.strip())
            blocks.append("\n".join(body))
    return blocks


def test_the_dashboard_pod_is_as_restricted_as_the_operators() -> None:
    operator = _security_contexts((CHART / "templates" / "deployment.yaml").read_text())
    dashboard = _security_contexts(TEMPLATE)
    assert len(operator) == 2 and dashboard == operator
    assert "readOnlyRootFilesystem: true" in dashboard[1]

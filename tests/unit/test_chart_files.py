"""The Helm chart's documented contracts, checked from its files (no helm binary):
every RBAC rule says why, every value is documented and schema-checked, the
chart's CRDs are the generated ones."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "corral"


def test_every_rbac_rule_has_a_comment_saying_why() -> None:
    lines = (CHART / "templates" / "rbac.yaml").read_text().splitlines()
    rules = [i for i, line in enumerate(lines) if re.match(r"^\s*- apiGroups:", line)]
    assert len(rules) >= 9
    for index in rules:
        assert lines[index - 1].strip().startswith("#"), f"rbac.yaml line {index + 1} has no why"


def test_no_rbac_rule_grants_wildcards_or_secret_listing() -> None:
    text = (CHART / "templates" / "rbac.yaml").read_text()
    assert '"*"' not in text
    secrets_rule = re.search(r'resources: \["secrets"\]\n\s*verbs: \[(.*)\]', text)
    assert secrets_rule is not None
    verbs = {verb.strip().strip('"') for verb in secrets_rule.group(1).split(",")}
    assert verbs.isdisjoint({"list", "watch", "delete"})


def _objects_reject_unknown_keys(schema: dict[str, Any], path: str) -> list[str]:
    loose = []
    if schema.get("type") == "object" and "properties" in schema:
        if schema.get("additionalProperties") is not False:
            loose.append(path)
        for name, child in schema["properties"].items():
            loose += _objects_reject_unknown_keys(child, f"{path}.{name}")
    return loose


def test_the_values_schema_rejects_unknown_keys_at_every_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    for name, definition in schema.get("definitions", {}).items():
        assert _objects_reject_unknown_keys(definition, name) == []
    assert _objects_reject_unknown_keys(schema, "values") == []


def test_every_top_level_value_has_a_schema_and_a_comment() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    assert set(values) == set(schema["properties"])
    lines = text.splitlines()
    for key in values:
        (index,) = [i for i, line in enumerate(lines) if line.startswith(f"{key}:")]
        assert lines[index - 1].startswith("#"), f"values.yaml: {key} has no comment"


def test_the_chart_ships_the_generated_crds_kept_on_uninstall() -> None:
    root_crds = CHART.parents[1] / "crds"
    shipped = sorted(path.name for path in (CHART / "crds").glob("*.yaml"))
    assert shipped == sorted(path.name for path in root_crds.glob("*.yaml"))
    for name in shipped:
        assert (CHART / "crds" / name).read_text() == (root_crds / name).read_text()
        body = yaml.safe_load((CHART / "crds" / name).read_text())
        assert body["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

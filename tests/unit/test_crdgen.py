"""The generated CustomResourceDefinitions: checked-in copies are current, and
the schemas obey the API server's structural and CEL-cost rules."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from corral.api import crdgen

ROOT = Path(__file__).resolve().parents[2]
CRD_DIRS = [ROOT / "crds", ROOT / "charts" / "corral" / "crds"]


def _walk(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, child in node.get("properties", {}).items():
        yield from _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _walk(node["additionalProperties"], f"{path}{{}}")


def _schema(definition: crdgen.Definition) -> dict[str, Any]:
    version = crdgen.crd(definition)["spec"]["versions"][0]
    schema: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("directory", CRD_DIRS, ids=["crds", "chart"])
def test_the_checked_in_crds_equal_the_generator_output(directory: Path) -> None:
    for name, text in crdgen.rendered().items():
        path = directory / name
        assert path.exists(), f"{path} is missing: run `make crds`"
        assert path.read_text() == text, f"{path} is stale: run `make crds`"


def test_check_mode_reports_a_stale_file_and_how_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert crdgen.main(["--out", str(tmp_path)]) == 0
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 0
    stale = tmp_path / "regions.corral.dev.yaml"
    stale.write_text(stale.read_text().replace("NoWorkers", "Nobody"))
    assert crdgen.main(["--out", str(tmp_path), "--check"]) == 1
    assert "differs from the models; run `make crds`" in capsys.readouterr().err


@pytest.mark.parametrize("definition", crdgen.DEFINITIONS, ids=lambda d: d.kind)
def test_every_schema_node_has_a_type_and_every_field_a_description(
    definition: crdgen.Definition,
) -> None:
    for path, node in _walk(_schema(definition), definition.kind):
        free_form = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        assert "type" in node or free_form, f"{path} has no type"
        assert not ({"anyOf", "oneOf", "allOf"} & node.keys()) or node.get(
            "x-kubernetes-int-or-string"
        ), f"{path} uses a union, which is not structural"
        assert not ("properties" in node and "additionalProperties" in node), path
        is_field = path.count(".") >= 2 and path.split(".")[1] in ("spec", "status")
        if is_field and not path.endswith(("[]", "{}")):
            assert node.get("description"), f"{path} has no description"


@pytest.mark.parametrize("definition", crdgen.DEFINITIONS, ids=lambda d: d.kind)
def test_only_free_form_kubernetes_leaves_preserve_unknown_fields(
    definition: crdgen.Definition,
) -> None:
    preserved = [
        path
        for path, node in _walk(_schema(definition), definition.kind)
        if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    expected = ["WorkerPool.spec.template.affinity"] if definition.kind == "WorkerPool" else []
    assert preserved == expected


@pytest.mark.parametrize("definition", crdgen.DEFINITIONS, ids=lambda d: d.kind)
def test_every_list_map_and_string_in_the_spec_is_bounded_for_cel_cost(
    definition: crdgen.Definition,
) -> None:
    for path, node in _walk(_schema(definition)["properties"]["spec"], "spec"):
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} has no maxItems"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path} has no maxProperties"
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path} has no maxLength"


def test_min_above_max_has_a_cel_rule_whose_message_names_both_fields() -> None:
    replicas = _schema(crdgen.WORKERPOOL)["properties"]["spec"]["properties"]["replicas"]
    (rule,) = replicas["x-kubernetes-validations"]
    assert rule["rule"] == "self.min <= self.max"
    assert rule["message"].startswith("spec.replicas.min must not exceed spec.replicas.max")
    assert "messageExpression" not in rule  # too costly for the API server's CEL budget
    assert rule["fieldPath"] == ".min"


def test_sub_objects_default_to_their_own_defaults_written_out() -> None:
    spec = _schema(crdgen.WORKERPOOL)["properties"]["spec"]["properties"]
    for name in ("replicas", "autoscaling", "drain", "enrollment"):
        fields = spec[name]["properties"]
        defaults = {key: f["default"] for key, f in fields.items() if "default" in f}
        assert spec[name]["default"] == defaults, name
    assert spec["replicas"]["default"] == {"min": 1, "max": 10}
    assert "default" not in spec["database"]
    # Optional knobs have no default: absent means off.
    assert "targetWaitSeconds" not in spec["autoscaling"]["default"]


def test_workerpool_columns_and_names_match_what_kubectl_users_are_told() -> None:
    crd = crdgen.crd(crdgen.WORKERPOOL)
    version = crd["spec"]["versions"][0]
    default_columns = [
        c["name"] for c in version["additionalPrinterColumns"] if "priority" not in c
    ]
    assert default_columns == ["Region", "Queues", "Ready", "Desired", "Depth", "Phase", "Age"]
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority") == 1]
    assert {"Concurrency", "Workers", "Running", "Min", "Max"} <= set(wide)
    assert crd["spec"]["names"]["shortNames"] == ["wp"]
    assert crd["spec"]["names"]["categories"] == ["corral"]  # kubectl get corral
    (queues,) = [c for c in version["additionalPrinterColumns"] if c["name"] == "Queues"]
    # Not .spec.queues: a printer column shows a list as a JSON array.
    assert queues["jsonPath"] == ".status.queuesText"
    assert crd["spec"]["scope"] == "Namespaced"
    assert version["subresources"]["status"] == {}


def test_every_printer_column_and_scale_path_points_at_a_schema_field() -> None:
    for definition in crdgen.DEFINITIONS:
        crd = crdgen.crd(definition)
        version = crd["spec"]["versions"][0]
        fields = {path for path, _ in _walk(_schema(definition), "")}
        paths = [c["jsonPath"] for c in version["additionalPrinterColumns"]]
        paths += [p for k, p in version["subresources"].get("scale", {}).items()]
        for json_path in paths:
            if json_path.startswith(".metadata."):
                continue
            assert json_path in fields, f"{definition.kind}: {json_path} is not in the schema"


def test_the_scale_subresource_moves_replicas_min() -> None:
    scale = crdgen.crd(crdgen.WORKERPOOL)["spec"]["versions"][0]["subresources"]["scale"]
    assert scale == {
        "specReplicasPath": ".spec.replicas.min",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_region_is_cluster_scoped_with_short_name_rg() -> None:
    crd = crdgen.crd(crdgen.REGION)
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["rg"]


def test_crds_are_kept_when_the_helm_release_is_uninstalled() -> None:
    for text in crdgen.rendered().values():
        body = yaml.safe_load(text)
        assert body["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"

"""Container environment rules of the node agent (corral_local.nodeagent._env)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from corral_local.nodeagent._env import (
    ConfigError,
    Sources,
    command_line,
    container_env,
    expand,
    parse_quantity,
)

POD: dict[str, Any] = {
    "metadata": {
        "name": "web-0",
        "namespace": "shop",
        "uid": "u-1",
        "labels": {"app": "web", "tier": "front"},
        "annotations": {"note": "hi"},
    },
    "spec": {"nodeName": "node-a", "serviceAccountName": "sa"},
}


def _sources(
    secrets: dict[str, dict[str, str]] | None = None, maps: dict[str, dict[str, str]] | None = None
) -> Sources:
    secrets = secrets or {}
    maps = maps or {}
    return Sources(
        secret=lambda n: (
            {"data": {k: base64.b64encode(v.encode()).decode() for k, v in secrets[n].items()}}
            if n in secrets
            else None
        ),
        config_map=lambda n: {"data": maps[n]} if n in maps else None,
        pod_ip="10.244.0.7",
        host_ip="10.244.0.1",
        node_allocatable={"cpu": "4", "memory": "8Gi"},
    )


def test_expand_replaces_defined_variables_and_keeps_undefined_ones_verbatim() -> None:
    assert expand("$(A)-$(B)", {"A": "x"}) == "x-$(B)"


def test_expand_treats_a_double_dollar_as_an_escaped_dollar() -> None:
    assert expand("$$(A) costs $$5", {"A": "x"}) == "$(A) costs $5"


def test_expand_leaves_an_unterminated_reference_and_a_lone_dollar_alone() -> None:
    assert expand("$(A", {"A": "x"}) == "$(A"
    assert expand("a$b$", {}) == "a$b$"


def test_env_values_expand_only_against_variables_defined_before_them() -> None:
    container = {
        "env": [
            {"name": "B", "value": "$(A)/b"},
            {"name": "A", "value": "a"},
            {"name": "C", "value": "$(A)/c"},
        ]
    }
    env = container_env(POD, container, _sources())
    assert env["B"] == "$(A)/b"
    assert env["C"] == "a/c"


def test_env_reads_secret_and_config_map_keys_and_pod_fields() -> None:
    container = {
        "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "NOTE",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['note']"}},
            },
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "URL", "value": "postgres://u:$(PW)@$(IP)"},
        ]
    }
    env = container_env(
        POD, container, _sources({"db": {"password": "pw"}}, {"cfg": {"mode": "fast"}})
    )
    assert env["PW"] == "pw" and env["MODE"] == "fast"
    assert (env["NAME"], env["NS"], env["UID"]) == ("web-0", "shop", "u-1")
    assert (env["APP"], env["NOTE"], env["IP"], env["NODE"]) == (
        "web",
        "hi",
        "10.244.0.7",
        "node-a",
    )
    assert env["URL"] == "postgres://u:pw@10.244.0.7"


def test_env_from_prefixes_keys_skips_invalid_names_and_env_entries_win() -> None:
    container = {
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
            {"secretRef": {"name": "db"}},
        ],
        "env": [{"name": "USER", "value": "override"}],
    }
    sources = _sources(
        {"db": {"USER": "u", "PASSWORD": "p"}}, {"cfg": {"mode": "m", "bad key": "x"}}
    )
    env = container_env(POD, container, sources)
    assert env["CFG_mode"] == "m"
    assert "CFG_bad key" not in env
    assert env["PASSWORD"] == "p" and env["USER"] == "override"


def test_a_missing_secret_is_a_config_error_unless_the_reference_is_optional() -> None:
    ref: dict[str, Any] = {
        "name": "PW",
        "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}},
    }
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        container_env(POD, {"env": [ref]}, _sources())
    ref["valueFrom"]["secretKeyRef"]["optional"] = True
    assert "PW" not in container_env(POD, {"env": [ref]}, _sources())


def test_a_missing_key_in_an_existing_config_map_is_a_config_error() -> None:
    ref = {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "absent"}}}
    with pytest.raises(ConfigError, match="couldn't find key absent"):
        container_env(POD, {"env": [ref]}, _sources(maps={"cfg": {"other": "1"}}))


def test_resource_field_refs_use_limits_and_fall_back_to_node_allocatable() -> None:
    container = {
        "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "250m"}},
        "env": [
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "CPU_REQ",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
            {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
    }
    env = container_env(POD, container, _sources())
    assert (env["MEM"], env["CPU_REQ"], env["CPU_LIM"]) == ("256", "250", "4")


def test_parse_quantity_understands_decimal_and_binary_suffixes() -> None:
    assert parse_quantity("1Gi") == 2**30
    assert parse_quantity("250m") * 1000 == 250
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        parse_quantity("12 apples")


def test_command_replaces_the_image_entrypoint_and_drops_its_cmd() -> None:
    env = {"WHO": "world"}
    assert command_line({"command": ["echo", "$(WHO)"]}, ["/bin/entry"], ["default"], env) == [
        "echo",
        "world",
    ]
    assert command_line({"args": ["--x=$(WHO)"]}, ["/bin/entry"], ["default"], env) == [
        "/bin/entry",
        "--x=world",
    ]
    assert command_line({}, ["/bin/entry"], ["$(WHO)"], env) == ["/bin/entry", "$(WHO)"]

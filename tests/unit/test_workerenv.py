"""The operator and the worker agree on the worker's environment and on the
enrollment Secret's keys (corral.workerenv is the one list they all read)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import click

from corral import workerenv
from corral.api import v1alpha1
from corral.api.crdgen import rendered
from corral.controller.deployment import desired_deployment
from corral.controller.enrollment import desired_secret
from corral.worker.cli import worker
from corral.worker.config import ENV_VARS, WorkerSettings
from tests.unit._pools import make_pool, make_region


def _env(**spec: Any) -> list[dict[str, Any]]:
    deployment = desired_deployment(
        make_pool(**spec), region=make_region(), replicas=1, worker_image="corral:test"
    )
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = container["env"]
    assert isinstance(env, list)
    return env


def test_the_deployment_sets_exactly_the_variables_the_contract_says_the_operator_sets() -> None:
    assert [entry["name"] for entry in _env()] == list(workerenv.SET_BY_OPERATOR)


def test_every_variable_the_operator_sets_is_a_worker_setting_the_worker_reads() -> None:
    settings_vars = {ENV_VARS[field] for field in WorkerSettings.FIELDS if field in ENV_VARS}
    assert set(workerenv.SET_BY_OPERATOR) <= settings_vars
    assert set(ENV_VARS) <= set(WorkerSettings.FIELDS)


def test_every_worker_flag_reads_the_variable_the_contract_names() -> None:
    envvars = {
        p.envvar for p in worker.params if isinstance(p, click.Option) and isinstance(p.envvar, str)
    }
    # The token itself is read from the environment only, never as a flag.
    assert set(workerenv.BY_SETTING.values()) - {workerenv.ENROLLMENT_TOKEN} <= envvars


def test_the_crd_rejects_every_variable_the_operator_sets_and_names_them_in_its_rule() -> None:
    assert set(workerenv.SET_BY_OPERATOR) <= set(workerenv.RESERVED)
    assert v1alpha1.RESERVED_ENV == workerenv.RESERVED
    crds = "".join(rendered().values())
    for name in workerenv.RESERVED:
        assert f"'{name}'" in crds


def test_the_deployment_reads_the_secret_keys_the_secret_is_written_with() -> None:
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    secret = desired_secret(
        make_pool(), region="eu-west", token="crl_et_x", token_id="1", created_at=moment,
        expires_at=moment, database_url="postgresql://db/corral",
    )  # fmt: skip
    refs = {
        entry["name"]: entry["valueFrom"]["secretKeyRef"]["key"]
        for entry in _env()
        if "secretKeyRef" in entry.get("valueFrom", {})
    }
    assert refs == {workerenv.DATABASE_URL: workerenv.SECRET_DATABASE_URL_KEY}
    # The token is a mounted file (never an env var), read from the same Secret.
    pod = desired_deployment(
        make_pool(), region=make_region(), replicas=1, worker_image="corral:test"
    )["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    [item] = volume["secret"]["items"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"]]
    files = {entry["name"]: entry.get("value") for entry in _env()}
    assert files[workerenv.ENROLLMENT_TOKEN_FILE] == f"{mount['mountPath']}/{item['path']}"
    assert workerenv.ENROLLMENT_TOKEN not in files
    assert set(secret["data"]) == {*refs.values(), item["key"]}
    assert base64.b64decode(secret["data"][workerenv.SECRET_TOKEN_KEY]) == b"crl_et_x"

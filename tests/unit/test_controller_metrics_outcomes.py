"""The reconcile outcome counter counts every failure, whatever raised it:
a pool the model refuses (pydantic's ValidationError) or an API call lost in
transport is as much an error as a KubeError (docs/metrics.md,
`corral_operator_reconciles_total`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from prometheus_client import REGISTRY
from pydantic import BaseModel

from corral.controller.handlers import build_registry
from corral.controller.reconcile import Reconciler
from corral.kube import KubeError


class _Strict(BaseModel):
    replicas: int


def _validation_error() -> Exception:
    try:
        _Strict.model_validate({"replicas": "many"})
    except Exception as exc:
        return exc
    raise AssertionError("the model accepted a bad value")


class _FailingReconciler:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def reconcile_pool(self, body: dict[str, Any]) -> Any:
        raise self.error

    def reconcile_region(self, body: dict[str, Any]) -> Any:
        raise self.error


def _handler(reconciler: _FailingReconciler, name: str) -> Callable[..., Any]:
    registry = build_registry(cast(Reconciler, reconciler), resync_s=60)
    for handler in registry._changing.get_all_handlers():
        if getattr(handler.fn, "__name__", None) == name:
            return cast(Callable[..., Any], handler.fn)
    raise AssertionError(f"no handler {name}")


def _errors(kind: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "corral_operator_reconciles_total", {"kind": kind, "outcome": "error"}
        )
        or 0.0
    )


POOL = {"metadata": {"name": "p", "namespace": "jobs"}, "spec": {"queues": ["q"]}}
FAILURES = [
    pytest.param(_validation_error(), id="validation"),
    pytest.param(ConnectionResetError("connection reset by peer"), id="transport"),
    pytest.param(RuntimeError("anything else"), id="other"),
    pytest.param(KubeError("forbidden", status=403), id="kube"),
]


@pytest.mark.parametrize("error", FAILURES)
def test_a_pool_reconcile_that_raises_counts_as_an_error(error: Exception) -> None:
    handler = _handler(_FailingReconciler(error), "pool_changed")
    before = _errors("WorkerPool")
    with pytest.raises(Exception):  # noqa: B017 - kopf retries whatever it is
        handler(body=POOL)
    assert _errors("WorkerPool") == before + 1


@pytest.mark.parametrize("error", FAILURES)
def test_a_region_reconcile_that_raises_counts_as_an_error(error: Exception) -> None:
    handler = _handler(_FailingReconciler(error), "region_changed")
    before = _errors("Region")
    with pytest.raises(Exception):  # noqa: B017 - kopf retries whatever it is
        handler(body={"metadata": {"name": "eu"}, "spec": {}})
    assert _errors("Region") == before + 1

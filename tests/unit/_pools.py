"""Builders of WorkerPool and Region objects for the controller's unit tests."""

from __future__ import annotations

from typing import Any

from corral.api import Region, WorkerPool


def make_pool(name: str = "email", namespace: str = "jobs", **spec: Any) -> WorkerPool:
    return WorkerPool.from_kube(
        {
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {"queues": ["email", "sms"], **spec},
        }
    )


def make_region(name: str = "eu-west", **spec: Any) -> Region:
    return Region.from_kube({"metadata": {"name": name, "generation": 1}, "spec": spec})

"""Handlers: the decorator registers sync and async functions by name, a
payload model names the wrong field, and the registry refuses ambiguity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pydantic import BaseModel

import corral
from corral.worker.executors import builtin_registry
from corral.worker.handlers import HandlerRegistry, Job, PayloadError, handler, registry


class Email(BaseModel):
    to: str
    subject: str = ""


def make_job(payload: Any, kind: str = "k") -> Job[Any]:
    return Job(id=7, kind=kind, queue="q", payload=payload, attempt=2)


def test_the_decorator_registers_an_async_handler_under_its_name() -> None:
    @handler("unit-async-send")
    async def send(job: Job[Any]) -> str:
        return f"sent {job.id}"

    h = registry.get("unit-async-send")
    assert h is not None and h.is_async and h.fn is send.fn  # the function, undecorated
    assert asyncio.run(send(make_job({}))) == "sent 7"


def test_the_bare_decorator_uses_the_function_name_and_keeps_sync_functions_sync() -> None:
    @handler
    def unit_bare_resize(job: Job[Any]) -> int:
        return job.attempt

    h = registry.get("unit_bare_resize")
    assert h is not None and not h.is_async
    assert unit_bare_resize(make_job({})) == 2


def test_the_public_package_exports_the_decorator_and_job() -> None:
    assert corral.handler is handler
    assert corral.Job is Job
    assert {"handler", "Job", "HandlerError"} <= set(corral.__all__)


def test_registering_a_second_function_under_a_taken_name_is_refused() -> None:
    reg = HandlerRegistry()
    reg.register("dup", lambda job: None)
    with pytest.raises(ValueError, match="'dup' is already registered"):
        reg.register("dup", lambda job: 1)


def test_a_payload_that_misses_a_field_names_the_field() -> None:
    reg = HandlerRegistry()
    h = reg.register("mail", lambda job: None, payload=Email)
    with pytest.raises(PayloadError, match="to: Field required"):
        h.prepare(make_job({"subject": "hi"}))


def test_a_valid_payload_reaches_the_handler_as_its_model() -> None:
    reg = HandlerRegistry()
    h = reg.register("mail", lambda job: None, payload=Email)
    job = h.prepare(make_job({"to": "a@example.org"}))
    assert isinstance(job.payload, Email) and job.payload.to == "a@example.org"
    assert (job.id, job.attempt) == (7, 2)


def test_a_handlers_module_that_cannot_be_imported_is_named() -> None:
    with pytest.raises(ValueError, match="--handlers 'no_such_module_xyz'"):
        HandlerRegistry().load_module("no_such_module_xyz")


def test_a_module_function_path_registers_that_function() -> None:
    reg = HandlerRegistry()
    reg.load_module("json:dumps")
    assert "dumps" in reg


def test_the_builtin_kinds_are_noop_sleep_http_tcp_and_dns() -> None:
    assert builtin_registry().names() == [
        "dns",
        "grpc",
        "http",
        "noop",
        "ping",
        "sleep",
        "tcp",
        "websocket",
    ]


def test_a_sleep_job_says_how_long_it_slept_and_refuses_a_negative_time() -> None:
    h = builtin_registry().get("sleep")
    assert h is not None
    result = asyncio.run(h.fn(h.prepare(make_job({"seconds": 0.01}))))
    assert result["slept_s"] >= 0.01
    with pytest.raises(PayloadError, match="seconds"):
        h.prepare(make_job({"seconds": -1}))


def test_an_http_check_payload_without_a_scheme_is_a_payload_error() -> None:
    h = builtin_registry().get("http")
    assert h is not None
    with pytest.raises(PayloadError, match="url"):
        h.prepare(make_job({"url": "example.org"}))


def test_entry_points_register_callables_by_name_and_import_modules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib.metadata import EntryPoint

    import corral.worker.handlers as handlers_module

    points = [
        EntryPoint("json-dump", "json:dumps", "corral.handlers"),
        EntryPoint("a-module", "textwrap", "corral.handlers"),
    ]
    monkeypatch.setattr(handlers_module, "entry_points", lambda group: points)
    reg = HandlerRegistry()
    assert reg.load_entry_points() == ["json-dump", "a-module"]
    assert reg.names() == ["json-dump"]


def test_a_broken_entry_point_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib.metadata import EntryPoint

    import corral.worker.handlers as handlers_module

    broken = [EntryPoint("bad", "no_such_module_xyz:run", "corral.handlers")]
    monkeypatch.setattr(handlers_module, "entry_points", lambda group: broken)
    with pytest.raises(ValueError, match=r"entry point bad = no_such_module_xyz:run"):
        HandlerRegistry().load_entry_points()

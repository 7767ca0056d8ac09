"""The names users import from `corral`: listed in __all__, resolvable, and
cheap to import; a queue built from a URL string says what to call instead."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest

import corral
from corral.queue import AsyncQueue, Queue
from corral.queue.errors import log_notice
from corral.worker import handlers


def test_every_public_name_resolves() -> None:
    for name in corral.__all__:
        assert getattr(corral, name) is not None, name
    assert corral.Queue is Queue
    assert corral.AsyncQueue is AsyncQueue
    assert corral.handler is handlers.handler


def test_importing_corral_loads_neither_psycopg_nor_the_worker() -> None:
    code = "import sys, corral; print(sorted(m for m in sys.modules if m.startswith(('psycopg', 'corral.worker', 'corral.queue'))))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_a_queue_given_a_url_says_to_use_connect() -> None:
    with pytest.raises(
        TypeError, match=r"not a URL; open one from a URL with corral\.connect\(url\)"
    ):
        Queue("postgresql://corral:secret@db:5432/corral")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"await corral\.connect_async\(url\)"):
        AsyncQueue("postgresql://corral:secret@db:5432/corral")  # type: ignore[arg-type]


def test_the_error_does_not_repeat_the_url_and_its_password() -> None:
    with pytest.raises(TypeError) as raised:
        Queue("postgresql://corral:secret@db:5432/corral")  # type: ignore[arg-type]
    assert "secret" not in str(raised.value)


def test_defer_refuses_a_target_that_is_not_a_queue_or_connection() -> None:
    registry = handlers.HandlerRegistry()
    original, handlers.registry = handlers.registry, registry
    try:

        @corral.handler("unit-defer")
        def job(job: corral.Job[Any]) -> None: ...

        with pytest.raises(TypeError, match=r"expected a corral Queue .* got str"):
            job.defer("postgresql://db/corral", {})
        with pytest.raises(TypeError, match=r"expected a corral AsyncQueue .* got str"):
            asyncio.run(job.defer_async("postgresql://db/corral", {}))
    finally:
        handlers.registry = original


def test_a_decorated_handler_stays_callable_and_registers_the_function_itself() -> None:
    registry = handlers.HandlerRegistry()
    original, handlers.registry = handlers.registry, registry
    try:

        @corral.handler("unit-echo")
        async def echo(job: corral.Job[Any]) -> object:
            return job.payload

        assert asyncio.run(echo(corral.Job(1, "unit-echo", "q", {"a": 1}))) == {"a": 1}
        registered = registry.get("unit-echo")
        assert registered is not None
        assert registered.fn is echo.fn and registered.is_async
        assert echo.__name__ == "echo" and echo.kind == "unit-echo"
        # `--handlers module:function` of a decorated function is the same handler.
        registry.register("unit-echo", echo)
    finally:
        handlers.registry = original


class _Connection:
    """What Queue and AsyncQueue use of a psycopg connection when built."""

    def __init__(self) -> None:
        self.handlers: list[object] = []

    def add_notice_handler(self, callback: object) -> None:
        self.handlers.append(callback)

    def remove_notice_handler(self, callback: object) -> None:
        self.handlers.remove(callback)


def test_wrapping_the_callers_connection_again_and_again_logs_its_notices_once() -> None:
    # handler.defer(conn, ...) builds a Queue on the caller's connection per call.
    conn = _Connection()
    for _ in range(3):
        Queue(conn)  # type: ignore[arg-type]
        AsyncQueue(conn)  # type: ignore[arg-type]
    assert conn.handlers == [log_notice]

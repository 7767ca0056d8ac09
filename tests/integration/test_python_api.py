"""The Python API a user enqueues with, against a real PostgreSQL:
`corral.connect` / `corral.connect_async`, and a handler deferring jobs of its
own kind on a queue or inside the caller's transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterator
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

import corral
from corral.queue import JobState
from corral.worker import handlers
from tests.integration._enrolled import run_sql


class Email(BaseModel):
    to: str
    subject: str = "hello"


# What `@corral.handler` makes of the async `send_email` below.
SendEmail = corral.HandlerFunction[[corral.Job[Email]], Coroutine[Any, Any, object]]


@pytest.fixture
def send_email() -> Iterator[SendEmail]:
    """A `send-email` handler, registered in a registry of this test's own."""
    original, handlers.registry = handlers.registry, handlers.HandlerRegistry()
    try:

        @corral.handler("send-email", payload=Email)
        async def send_email(job: corral.Job[Email]) -> object:
            return {"sent_to": job.payload.to}

        yield send_email
    finally:
        handlers.registry = original


def test_connect_opens_a_queue_whose_enqueue_is_durable_on_return(database_url: str) -> None:
    with corral.connect(database_url) as queue:
        assert isinstance(queue, corral.Queue)
        job_id = queue.enqueue("noop", {"n": 1}, queue="default")
        assert run_sql(database_url, "SELECT queue FROM corral_jobs WHERE id = %s", [job_id]) == [
            ("default",)
        ]
    assert queue.conn.closed


def test_connect_async_opens_an_async_queue(database_url: str) -> None:
    async def enqueue() -> int:
        async with await corral.connect_async(database_url) as queue:
            assert isinstance(queue, corral.AsyncQueue)
            return await queue.enqueue("noop", {"n": 2})

    job_id = asyncio.run(enqueue())
    assert run_sql(database_url, "SELECT kind FROM corral_jobs WHERE id = %s", [job_id]) == [
        ("noop",)
    ]


def test_a_handler_defers_a_job_of_its_own_kind_with_options(
    database_url: str, send_email: SendEmail
) -> None:
    with corral.connect(database_url) as queue:
        job_id = send_email.defer(queue, {"to": "ada@example.com"}, queue="email", priority=5)
        job = queue.get_job(job_id)
    assert (job.kind, job.queue, job.priority, job.state) == (
        "send-email", "email", 5, JobState.PENDING,
    )  # fmt: skip
    assert job.payload == {"to": "ada@example.com"}


def test_a_handler_deferring_to_a_region_without_workers_is_refused_unless_allowed(
    database_url: str, send_email: SendEmail
) -> None:
    with corral.connect(database_url) as queue:
        with pytest.raises(corral.queue.EmptyRegion, match="region 'ap'"):
            send_email.defer(queue, {"to": "ada@example.com"}, region="ap")
        job_id = send_email.defer(
            queue, {"to": "ada@example.com"}, region="ap", allow_empty_region=True
        )
        assert queue.get_job(job_id).region == "ap"


def test_a_deferred_job_lands_only_if_the_callers_transaction_commits(
    database_url: str, send_email: SendEmail
) -> None:
    with psycopg.connect(database_url) as conn:
        with conn.transaction(force_rollback=True):
            send_email.defer(conn, {"to": "rolled-back@example.com"})
        with conn.transaction():
            kept = send_email.defer(conn, Email(to="kept@example.com"))
            # Not visible to anyone else until the caller commits.
            assert run_sql(database_url, "SELECT count(*) FROM corral_jobs") == [(0,)]
    rows = run_sql(database_url, "SELECT id, payload FROM corral_jobs")
    assert rows == [(kept, {"to": "kept@example.com", "subject": "hello"})]


def test_defer_async_joins_the_callers_async_transaction(
    database_url: str, send_email: SendEmail
) -> None:
    async def defer() -> int:
        conn = await psycopg.AsyncConnection.connect(database_url)
        async with conn, conn.transaction():
            return await send_email.defer_async(conn, {"to": "bob@example.com"}, priority=3)

    job_id = asyncio.run(defer())
    assert run_sql(database_url, "SELECT priority FROM corral_jobs WHERE id = %s", [job_id]) == [
        (3,)
    ]


def test_defer_rejects_a_payload_the_handler_would_refuse_before_writing_anything(
    database_url: str, send_email: SendEmail
) -> None:
    with (
        corral.connect(database_url) as queue,
        pytest.raises(corral.PayloadError, match=r"send-email\.defer: .*to: Field required"),
    ):
        send_email.defer(queue, {"subject": "no recipient"})
    assert run_sql(database_url, "SELECT count(*) FROM corral_jobs") == [(0,)]

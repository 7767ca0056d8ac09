"""Helpers shared by the queue's integration tests (plain functions, no fixtures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg

from corral.queue import Enrollment
from tests.integration._clients import Client


def enroll(
    queue: Client,
    *,
    region: str = "eu",
    queues: Sequence[str] = ("q",),
    name: str = "w",
    pool: str | None = None,
) -> Enrollment:
    token = queue.create_token(region, pool=pool, ttl_s=60, uses=1)
    return queue.enroll(token.secret, name=name, queues=list(queues), concurrency=4)


def run_sql(url: str, statement: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
    """Poke at the database directly (test set-up and inspection only). Rows
    are psycopg's `tuple[Any, ...]`: the column types are the statement's."""
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []

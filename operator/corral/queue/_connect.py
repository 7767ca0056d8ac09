"""Opening connections for corral.queue: one place that turns a DSN into a
psycopg connection with a clear, password-free error when it fails."""

from __future__ import annotations

from typing import Any

import psycopg

from corral.queue.dsn import check_dsn, connect_error

CONNECT_TIMEOUT_S = 10


def connect(dsn: str, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
    """A sync connection (autocommit by default, so each call is durable on return)."""
    check_dsn(dsn)
    try:
        return psycopg.connect(
            dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, **kwargs
        )
    except psycopg.OperationalError as exc:
        raise connect_error(dsn, exc) from None


async def aconnect(
    dsn: str, *, autocommit: bool = True, **kwargs: Any
) -> psycopg.AsyncConnection[Any]:
    """An asyncio connection (autocommit by default)."""
    check_dsn(dsn)
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, **kwargs
        )
    except psycopg.OperationalError as exc:
        raise connect_error(dsn, exc) from None

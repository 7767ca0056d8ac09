"""Opening connections for corral.queue: one place that turns a DSN into a
psycopg connection with a clear, password-free error when it fails, and with
the settings that keep a dead or hung server from hanging its caller.

Every connection gets, unless its DSN says otherwise (libpq parameters in
the URL: `?tcp_user_timeout=60000&options=-c%20statement_timeout%3D0`):

- TCP keepalives (`keepalives_idle` 10 s, `keepalives_interval` 5 s,
  `keepalives_count` 3): a peer that vanished (a failover, a cut network) is
  noticed within about 25 s on an idle connection, such as LISTEN's;
- `tcp_user_timeout` 30 s: data sent and not acknowledged for that long
  breaks the connection instead of waiting for the kernel's ~15 minutes;
- `statement_timeout` 30 s and `idle_in_transaction_session_timeout` 60 s:
  a statement stuck on a lock or a stopped server fails, and the caller's
  retry path takes over. Migrations lift the statement limit for themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from corral.queue.dsn import check_dsn, connect_error

CONNECT_TIMEOUT_S = 10

# libpq parameters set on every connection unless the DSN sets them.
SOCKET_DEFAULTS: dict[str, str] = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",  # milliseconds
}
# Server settings (sent as `options=-c name=value`) unless the DSN's options set them.
SESSION_DEFAULTS: dict[str, str] = {
    "statement_timeout": "30s",
    "idle_in_transaction_session_timeout": "60s",
}


def hardened(dsn: str, session: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for psycopg's connect that add the defaults above,
    and the server settings in `session`, to what `dsn` does not already set
    (keywords override the DSN, so nothing the DSN sets is ever passed)."""
    given = conninfo_to_dict(dsn)
    extra: dict[str, Any] = {k: v for k, v in SOCKET_DEFAULTS.items() if k not in given}
    options = str(given.get("options") or "")
    wanted = {**SESSION_DEFAULTS, **(session or {})}
    added = [f"-c {name}={value}" for name, value in wanted.items() if name not in options]
    if added:
        extra["options"] = " ".join([options, *added]).strip()
    return extra


def connect(dsn: str, *, autocommit: bool = True, **kwargs: Any) -> psycopg.Connection[Any]:
    """A sync connection (autocommit by default, so each call is durable on return)."""
    check_dsn(dsn)
    try:
        return psycopg.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            **{**hardened(dsn), **kwargs},
        )
    except psycopg.OperationalError as exc:
        raise connect_error(dsn, exc) from None


async def aconnect(
    dsn: str,
    *,
    autocommit: bool = True,
    session: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> psycopg.AsyncConnection[Any]:
    """An asyncio connection (autocommit by default); `session`: server
    settings beyond `SESSION_DEFAULTS`, unless the DSN's options set them."""
    check_dsn(dsn)
    try:
        return await psycopg.AsyncConnection.connect(
            dsn,
            autocommit=autocommit,
            connect_timeout=CONNECT_TIMEOUT_S,
            **{**hardened(dsn, session), **kwargs},
        )
    except psycopg.OperationalError as exc:
        raise connect_error(dsn, exc) from None

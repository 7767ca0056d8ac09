"""Database login roles for workers: `corral db create-worker-role NAME`,
the test fixtures and `make dev`.

A worker connects as a login role that is a member of the `corral_worker`
group role only (`sql/privileges.sql`, applied by every migrate, makes that
group and grants it EXECUTE on the worker functions and nothing else). This
module creates or updates such a role and builds the worker's DSN from the
admin's: same server and database, the new user and password.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from corral.queue import _sql
from corral.queue._connect import connect
from corral.queue.dsn import DsnError

__all__ = [
    "WORKER_GROUP",
    "WorkerRole",
    "create_worker_role",
    "rights_beyond_worker",
    "worker_dsn",
]

WORKER_GROUP = "corral_worker"
ADMIN_GROUP = "corral_admin"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The admin DSN's parameters a worker's URL keeps: how to reach and trust the
# server, never a credential of the admin (sslkey, sslcert, sslpassword,
# passfile, service, Kerberos/GSS names) nor how the admin authenticates.
_WORKER_DSN_OPTIONS = frozenset(
    {
        "hostaddr", "connect_timeout", "application_name", "fallback_application_name",
        "options", "client_encoding", "target_session_attrs", "load_balance_hosts",
        "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
        "tcp_user_timeout", "sslmode", "sslnegotiation", "sslrootcert", "sslcrl",
        "sslcrldir", "sslsni", "ssl_min_protocol_version", "ssl_max_protocol_version",
        "gssencmode", "channel_binding",
    }
)  # fmt: skip
_ATTRIBUTES = ("superuser", "CREATEROLE", "CREATEDB", "BYPASSRLS", "REPLICATION")
_OWNED = ("schemas", "tables, views or sequences", "functions")


@dataclass(frozen=True)
class WorkerRole:
    name: str
    password: str = field(repr=False)
    dsn: str = field(repr=False)  # what the workers' CORRAL_DATABASE_URL should be
    created: bool  # False: it existed, its password was reset


def worker_dsn(admin_dsn: str, name: str, password: str) -> str:
    """`admin_dsn` (URL or conninfo) with `name`/`password` as the user: a
    postgresql:// URL, what a Secret's `url` key holds. Of the admin's other
    parameters it keeps only `_WORKER_DSN_OPTIONS`."""
    parts = conninfo_to_dict(admin_dsn)
    host = str(parts.get("host") or "localhost")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = parts.get("port")
    dbname = str(parts.get("dbname") or name)
    url = f"postgresql://{quote(name, safe='')}:{quote(password, safe='')}@{host}"
    url += f":{port}" if port else ""
    url += f"/{quote(dbname, safe='')}"
    options = {k: str(v) for k, v in parts.items() if k in _WORKER_DSN_OPTIONS and v}
    if options:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(options.items()))
    return url


def rights_beyond_worker(row: tuple[Any, ...]) -> list[str]:
    """What a `role_rights` row (sql/queries.sql) shows its role holds
    beyond a worker's; empty: nothing."""
    *attributes, groups, connecting, owns_database, schemas, relations, functions, granted = row
    found = [what for what, has in zip(_ATTRIBUTES, attributes, strict=True) if has]
    extra = sorted(set(groups) - {WORKER_GROUP})
    found += [f"member of {', '.join(extra)}"] if extra else []
    found += ["the role this connection logs in as"] if connecting else []
    found += ["owner of this database"] if owns_database else []
    owned = zip(_OWNED, (schemas, relations, functions), strict=True)
    found += [f"owner of {n} {what} in it" for what, n in owned if n]
    found += [f"holds {granted} privileges on corral tables directly"] if granted else []
    return found


def create_worker_role(admin_dsn: str, name: str, password: str | None = None) -> WorkerRole:
    """Create (or update) login role `name` as a member of corral_worker only,
    with `password` (None: a random one; an empty one is refused). Needs CREATEROLE (or a superuser)
    and a migrated database (the group role exists after `corral db migrate`).
    Refuses an existing role that holds more: an attribute (superuser,
    CREATEROLE, CREATEDB, BYPASSRLS, REPLICATION), another group, objects it
    owns in the database, direct privileges on corral's tables, or being the
    role `admin_dsn` logs in as: a worker role holds nothing but the worker
    functions."""
    if not _ROLE_NAME.match(name):
        raise DsnError(
            f"worker role name {name!r}: use lower-case letters, digits and '_' "
            "(at most 63, not starting with a digit)"
        )
    if name in (WORKER_GROUP, ADMIN_GROUP):
        raise DsnError(f"{name!r} is corral's group role: pick another name for the worker role")
    if password is not None and not password:
        raise DsnError("the worker role's password is empty: give one, or None for a random one")
    password = secrets.token_urlsafe(24) if password is None else password
    with connect(admin_dsn, autocommit=False) as conn, conn.transaction():
        group = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (WORKER_GROUP,))
        if group.fetchone() is None:
            raise DsnError(
                f"the group role {WORKER_GROUP} does not exist: run `corral db migrate` first"
            )
        row = conn.execute(_sql.query("role_rights"), (name,)).fetchone()
        if row is not None:
            found = rights_beyond_worker(row)
            if found:
                raise DsnError(
                    f"role {name!r} exists with more rights than a worker may have "
                    f"({'; '.join(found)}): pick another name for the worker role "
                    "(a new one, or one this command made)"
                )
            conn.execute(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        else:
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    sql.Identifier(name), sql.Literal(password)
                )
            )
        # INHERIT: the role uses corral_worker's EXECUTE grants directly.
        conn.execute(sql.SQL("ALTER ROLE {} INHERIT").format(sql.Identifier(name)))
        conn.execute(
            sql.SQL("GRANT {} TO {}").format(sql.Identifier(WORKER_GROUP), sql.Identifier(name))
        )
    return WorkerRole(name, password, worker_dsn(admin_dsn, name, password), created=row is None)

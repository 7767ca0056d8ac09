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
from urllib.parse import quote

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from corral.queue._connect import connect
from corral.queue.dsn import DsnError

__all__ = ["WORKER_GROUP", "WorkerRole", "create_worker_role", "worker_dsn"]

WORKER_GROUP = "corral_worker"
ADMIN_GROUP = "corral_admin"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class WorkerRole:
    name: str
    password: str = field(repr=False)
    dsn: str = field(repr=False)  # what the workers' CORRAL_DATABASE_URL should be
    created: bool  # False: it existed, its password was reset


def worker_dsn(admin_dsn: str, name: str, password: str) -> str:
    """`admin_dsn` (URL or conninfo) with `name`/`password` as the user: a
    postgresql:// URL, what a Secret's `url` key holds."""
    parts = conninfo_to_dict(admin_dsn)
    host = str(parts.get("host") or "localhost")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = parts.get("port")
    dbname = str(parts.get("dbname") or name)
    url = f"postgresql://{quote(name, safe='')}:{quote(password, safe='')}@{host}"
    url += f":{port}" if port else ""
    url += f"/{quote(dbname, safe='')}"
    options = {
        k: str(v)
        for k, v in parts.items()
        if k not in ("host", "port", "dbname", "user", "password") and v
    }
    if options:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(options.items()))
    return url


def create_worker_role(admin_dsn: str, name: str, password: str | None = None) -> WorkerRole:
    """Create (or update) login role `name` as a member of corral_worker only,
    with `password` (None: a random one). Needs CREATEROLE (or a superuser)
    and a migrated database (the group role exists after `corral db migrate`).
    Refuses a role that is a superuser or a member of corral_admin: a worker
    role must hold nothing but the worker functions."""
    if not _ROLE_NAME.match(name):
        raise DsnError(
            f"worker role name {name!r}: use lower-case letters, digits and '_' "
            "(at most 63, not starting with a digit)"
        )
    password = password or secrets.token_urlsafe(24)
    with connect(admin_dsn, autocommit=False) as conn, conn.transaction():
        group = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (WORKER_GROUP,))
        if group.fetchone() is None:
            raise DsnError(
                f"the group role {WORKER_GROUP} does not exist: run `corral db migrate` first"
            )
        row = conn.execute(
            "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls,"
            "       ARRAY(SELECT g.rolname FROM pg_auth_members m"
            "              JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid)"
            "  FROM pg_roles r WHERE r.rolname = %s",
            (name,),
        ).fetchone()
        if row is not None:
            superuser, createrole, createdb, bypassrls, groups = row
            extra = sorted(set(groups) - {WORKER_GROUP})
            if superuser or createrole or createdb or bypassrls or extra:
                raise DsnError(
                    f"role {name!r} exists with more rights than a worker may have "
                    f"(superuser={superuser}, createrole={createrole}, createdb={createdb}, "
                    f"bypassrls={bypassrls}, member of {extra or 'nothing else'}): pick "
                    "another name, or strip those rights first"
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

"""DSN handling for every corral command that connects to PostgreSQL.

`check_dsn` parses a libpq conninfo string or a postgresql:// URL with
psycopg.conninfo and says which part is wrong; `connect_error` turns a failed
connection into a message naming the host, port, user, database or password
that was refused. Passwords never appear in any message: `mask_dsn` replaces
them before a DSN is shown, and `scrub_password` removes a DSN's password
from any text (libpq errors may echo it). The worker (`corral.worker.config`)
uses these too: psycopg stays inside `corral.queue`.
"""

from __future__ import annotations

import re

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ENV_VAR = "CORRAL_DATABASE_URL"
_MASK = "********"
# A password inside a URL (scheme://user:PASSWORD@host) or a conninfo pair.
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


# What the server (or libpq) said, lower-cased, as a pattern -> the part to
# fix; the first that matches explains the failure. `(?=.*a)(?=.*b)`: both
# words, in any order.
_REFUSALS = {
    r"password authentication failed|no password supplied": "password authentication for user {user!r} failed: check the password",
    r"(?=.*role)(?=.*does not exist)": "user {user!r} does not exist on the server: check the user",
    r"(?=.*database)(?=.*does not exist)": "database {dbname!r} does not exist: check the database name",
    r"could not translate host name|name or service not known": "host {host!r} cannot be resolved: check the host",
    r"connection refused|no such file or directory": "nothing is listening on {host}:{port}: check the host and port",
    r"timeout|timed out": "connecting to {host}:{port} timed out: check the host, port and firewall",
    r"pg_hba\.conf": "the server does not accept user {user!r} from this host (pg_hba.conf)",
}


class DsnError(ValueError):
    """The database URL is malformed or the server refused it; the text names the part."""


def mask_dsn(text: str) -> str:
    """`text` with any password it contains replaced by asterisks."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + _MASK + m.group(3), text)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + _MASK, text)


def check_dsn(dsn: str | None) -> str:
    """Validate `dsn` without connecting and return it unchanged.

    Raises DsnError naming the wrong part: a missing URL, a wrong scheme, a
    port that is not a number in range, an empty database name.
    """
    if dsn is None or not dsn.strip():
        raise DsnError(
            f"no database URL: pass --database-url or set {ENV_VAR} "
            "(for example postgresql://corral@db.example:5432/corral)"
        )
    dsn = dsn.strip()
    if "://" in dsn:
        scheme = dsn.split("://", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise DsnError(
                f"database URL scheme {scheme!r} is not supported: "
                "use postgresql://user@host:port/database"
            )
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise DsnError(
            f"database URL {mask_dsn(dsn)!r} cannot be parsed: {mask_dsn(str(exc))}"
        ) from None
    port = params.get("port")
    if port is not None:
        for part in str(port).split(","):
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise DsnError(
                    f"database URL port {part!r} is not a port number (1-65535): "
                    f"fix the port in {mask_dsn(dsn)!r}"
                )
    if params.get("dbname") == "":
        raise DsnError(f"database URL {mask_dsn(dsn)!r} names no database: append /DATABASE")
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise DsnError(f"sslmode {sslmode!r} is not one of {', '.join(sorted(SSLMODES))}")
    return dsn


def scrub_password(text: str, dsn: str) -> str:
    """`text` without the password of `dsn`, wherever it appears, and with any
    password-looking part of a DSN masked (`mask_dsn`)."""
    text = mask_dsn(text)
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return text


def describe_dsn(dsn: str) -> str:
    """user@host:port/database, for messages (no password)."""
    params = conninfo_to_dict(dsn)
    host = params.get("host") or params.get("hostaddr") or "localhost"
    return f"{params.get('user') or '(default user)'}@{host}:{params.get('port') or 5432}/{params.get('dbname') or '(default database)'}"


def connect_error(dsn: str, exc: BaseException) -> DsnError:
    """Explain why connecting with `dsn` failed, naming the part to fix."""
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or 5432)
    user = str(params.get("user") or "(default user)")
    dbname = str(params.get("dbname") or "(default database)")
    raw = mask_dsn(str(exc)).strip().splitlines()
    detail = raw[-1] if raw else type(exc).__name__
    low = str(exc).lower()
    where = describe_dsn(dsn)
    for said, explanation in _REFUSALS.items():
        if re.search(said, low, re.DOTALL):
            part = explanation.format(user=user, dbname=dbname, host=host, port=port)
            break
    else:
        part = detail
    return DsnError(f"cannot connect to {where}: {part}")


def with_database(dsn: str, dbname: str) -> str:
    """`dsn` pointing at another database on the same server."""
    return make_conninfo(dsn, dbname=dbname)

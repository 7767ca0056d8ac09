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
# A password inside a URL: scheme://user:PASSWORD@host, up to the last '@'
# before the path, so an unencoded '@', '%' or space in it is masked whole;
# else one with an unencoded '/' (libpq misreads it: check_dsn refuses it).
_URL_PASSWORD = re.compile(r"(postgres(?:ql)?://[^:/\s]*:)([^/\n]*|[^\s@?]*/[^\s@?]*)(@)")
# user:PASSWORD@ without a scheme, or behind a mistyped one (`postgresql:/`,
# `postgresql//`): a word, a ':' not followed by '/', then up to the word's
# last '@'. A masked URL matches it too and stays as it is.
_BARE_PASSWORD = re.compile(r"(?<![\w%.+-])([\w%.+-]+:)(?!/)(\S*)(@)")
# A mistyped scheme at the start of a DSN: `postgresql:/`, `postgresql//`, `postgres:`.
_SCHEME_TYPO = re.compile(r"^(postgres(?:ql)?)(:/|//|:)(?!/)", re.IGNORECASE)
_URL_FORM = "postgresql://user@host:5432/database"  # (user:password@ would be masked)
# A conninfo (or query) pair: a quoted value (unterminated: to the end of the
# line), or an unquoted one with the words after it that are not `key=`.
_KV_PASSWORD = re.compile(
    r"(password\s*=\s*)"
    r"('(?:[^'\\\n]|\\.)*'?|(?:\\.|[^\s\\])+(?:[ \t]+(?![^\s=]+\s*=)(?:\\.|[^\s\\])+)*)",
    re.IGNORECASE,
)
# What is wrong in a URL's user or password (which libpq's message would quote).
_URL_TROUBLES = {
    r"@": "an '@': percent-encode it as %40",
    r"\s": "a space: percent-encode it as %20",
    r"%(?![0-9A-Fa-f]{2})": "a '%' that is not percent-encoding: percent-encode it as %25",
    r"%00": "%00, which libpq refuses",
}
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


class UrlError(DsnError):
    """The URL itself is the problem (`check_dsn`, `connect_error`), not what
    was asked of the server with it: a command names where the URL came from."""


def mask_dsn(text: str) -> str:
    """`text` with any password it contains replaced by asterisks."""
    text = _URL_PASSWORD.sub(lambda m: m.group(1) + _MASK + m.group(3), text)
    text = _BARE_PASSWORD.sub(lambda m: m.group(1) + _MASK + m.group(3), text)
    return _KV_PASSWORD.sub(lambda m: m.group(1) + _MASK, text)


def check_dsn(dsn: str | None) -> str:
    """Validate `dsn` without connecting and return it unchanged.

    Raises DsnError naming the wrong part: a missing URL, a wrong scheme, a
    user or password holding a character libpq misreads (never its value), a
    port that is not a number in range, an empty database name.
    """
    if dsn is None or not dsn.strip():
        raise UrlError(
            f"no database URL: pass --database-url or set {ENV_VAR} "
            "(for example postgresql://corral@db.example:5432/corral)"
        )
    dsn = dsn.strip()
    if "://" in dsn:
        scheme = dsn.split("://", 1)[0]
        if scheme not in ("postgresql", "postgres"):
            raise UrlError(
                f"database URL scheme {scheme!r} is not supported: "
                "use postgresql://user@host:port/database"
            )
        _check_url_credentials(dsn)
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise _unparsable(dsn, str(exc)) from None
    port = params.get("port")
    if port is not None:
        for part in str(port).split(","):
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise UrlError(
                    f"database URL port {part!r} is not a port number (1-65535): "
                    f"fix the port in {mask_dsn(dsn)!r}"
                )
    if params.get("dbname") == "":
        raise UrlError(f"database URL {mask_dsn(dsn)!r} names no database: append /DATABASE")
    sslmode = params.get("sslmode")
    if sslmode is not None and sslmode not in SSLMODES:
        raise UrlError(f"sslmode {sslmode!r} is not one of {', '.join(sorted(SSLMODES))}")
    return dsn


def _url_credentials(url: str) -> tuple[str, list[str]]:
    """The raw user and passwords (user info's, the query's) of URL `url`,
    the user info read up to the last '@' before the first '/'."""
    authority = url.split("://", 1)[1].partition("/")[0]
    user, colon, password = authority.rpartition("@")[0].partition(":")
    query = url.partition("?")[2].split("&")
    passwords = [v for k, _, v in (pair.partition("=") for pair in query) if k == "password"]
    return user, ([password] if colon else []) + passwords


def _check_url_credentials(url: str) -> None:
    """Raise DsnError if the user or password of `url` holds a character
    libpq misreads or refuses; the message names the part, never its value."""
    authority, _, path = url.split("://", 1)[1].partition("/")
    if "@" not in authority and "@" in path.partition("?")[0]:
        raise UrlError(
            "database URL has an '@' after the first '/': percent-encode a '/' in "
            "the password as %2F (and an '@' in the database name as %40)"
        )
    user, passwords = _url_credentials(url)
    for part, value in [("user name", user), *(("password", pw) for pw in passwords)]:
        for trouble, fix in _URL_TROUBLES.items():
            if re.search(trouble, value):
                raise UrlError(f"database URL: the {part} contains {fix}")


def _unparsable(dsn: str, said: str) -> UrlError:
    """libpq could not parse `dsn` and `said` why: what is wrong in words, or
    libpq's reason, masked, unless it still quotes a word of the password
    (then only which part is wrong). `dsn` itself is never quoted: a URL
    without its scheme is read as conninfo, and its password is not found."""
    typo = _SCHEME_TYPO.match(dsn)
    if typo:
        return UrlError(
            f"database URL cannot be parsed: its scheme {typo.group(0)!r} is mistyped: "
            f"write postgresql:// (a colon and two slashes), as in {_URL_FORM}"
        )
    if "://" not in dsn and "=" not in dsn.split(None, 1)[0]:
        return UrlError(
            "database URL cannot be parsed: it has no postgresql:// scheme and is not "
            f"a conninfo string (key=value ...): write {_URL_FORM}"
        )
    if "://" in dsn:
        words = _url_credentials(dsn)[1]
    else:
        found = _KV_PASSWORD.search(dsn)
        value = found.group(2) if found else ""
        words = re.findall(r"(?:\\.|[^\s\\'])+", value)
        if not value.startswith("'") and len(words) > 1:
            return UrlError(
                "database URL cannot be parsed: words without '=' follow the password: "
                "if the password contains spaces, quote it in single quotes (a ' or \\ "
                "in it escaped with a backslash)"
            )
    reason = mask_dsn(said.strip().splitlines()[0] if said.strip() else "")
    if any(word and word in reason for word in words):
        return UrlError("database URL cannot be parsed: libpq rejects the password")
    return UrlError(f"database URL cannot be parsed: {reason}")


def dsn_user(dsn: str) -> str | None:
    """The user `dsn` (URL or conninfo) logs in as; None when it names none
    (libpq then uses the operating system's user) or does not parse."""
    try:
        user = conninfo_to_dict(dsn).get("user")
    except psycopg.Error:
        return None
    return str(user) if user else None


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


def connect_error(dsn: str, exc: BaseException) -> UrlError:
    """Explain why connecting with `dsn` failed, naming the part to fix."""
    params = conninfo_to_dict(dsn)
    host = str(params.get("host") or params.get("hostaddr") or "localhost")
    port = str(params.get("port") or 5432)
    user = str(params.get("user") or "(default user)")
    dbname = str(params.get("dbname") or "(default database)")
    raw = scrub_password(str(exc), dsn).strip().splitlines()
    detail = raw[-1] if raw else type(exc).__name__
    low = str(exc).lower()
    where = describe_dsn(dsn)
    for said, explanation in _REFUSALS.items():
        if re.search(said, low, re.DOTALL):
            part = explanation.format(user=user, dbname=dbname, host=host, port=port)
            break
    else:
        part = detail
    return UrlError(f"cannot connect to {where}: {part}")


def with_database(dsn: str, dbname: str) -> str:
    """`dsn` pointing at another database on the same server."""
    return make_conninfo(dsn, dbname=dbname)

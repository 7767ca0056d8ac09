"""Schema migrations: `corral db migrate|status` and the test template.

`migrate(dsn)` applies the ordered files in `sql/migrations/` that a database
has not seen yet, all inside one transaction under an advisory lock, and
records each in `corral_schema_migrations`; concurrent callers (several
workers starting at once) wait for the first and then find nothing to do.
Then, in the same transaction and on every run, `sql/privileges.sql`: the
`corral_worker` and `corral_admin` group roles and their grants (idempotent).

A squash (`0010_baseline.sql`, `-- replaces: 0001-0010`) stands for the
versions it replaces: a database that recorded all of them has it, and
migrate re-records them as one row; one that recorded only some is refused
with the fix (see `_squash_state`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from corral.queue._connect import connect
from corral.queue._sql import Migration, migrations, privileges_sql

# `migrations` (every migration shipped, in order) is re-exported for
# `corral db migrate`, which names what it applied.
__all__ = ["Migration", "MigrationError", "MigrationStatus", "migrate", "migrations", "status"]

# Any constant works; it only has to be the same for every corral process.
_MIGRATION_LOCK = 0x636F7272616C  # "corral"

_CREATE_TABLE = sql.SQL(
    """
    CREATE TABLE IF NOT EXISTS corral_schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        checksum text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
    """
)


class MigrationError(RuntimeError):
    """The database's recorded migrations disagree with the ones shipped."""


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: dt.datetime | None
    # False when the file changed after it was applied to this database.
    checksum_matches: bool = True

    @property
    def applied(self) -> bool:
        return self.applied_at is not None


def _applied(conn: psycopg.Connection[Any]) -> dict[int, tuple[str, dt.datetime]]:
    exists = conn.execute("SELECT to_regclass('corral_schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(
        "SELECT version, checksum, applied_at FROM corral_schema_migrations"
    ).fetchall()
    return {int(v): (str(c), a) for v, c, a in rows}


def _check_known(shipped: tuple[Migration, ...], applied: dict[int, Any]) -> None:
    known = {v for m in shipped for v in m.covers}
    unknown = sorted(set(applied) - known)
    if unknown:
        raise MigrationError(
            f"the database has migration(s) {', '.join(f'{v:04d}' for v in unknown)} "
            "that this corral does not know: it is older than the schema; upgrade corral"
        )


def _squash_state(migration: Migration, applied: dict[int, Any]) -> str:
    """How a database stands against one shipped migration (squash or not).

    'applied': recorded as itself; 'replaced': a squash whose every version
    the database recorded one by one before the squash; 'partial': a squash
    some of whose versions are recorded, not all; 'missing': none.
    """
    covered = migration.covers
    if covered == {migration.version}:
        return "applied" if migration.version in applied else "missing"
    recorded = covered & set(applied)
    if recorded == covered:
        return "replaced"
    if recorded == {migration.version}:
        return "applied"  # as itself; `status` compares the checksum
    return "partial" if recorded else "missing"


def _refuse_partial(migration: Migration, applied: dict[int, Any]) -> None:
    recorded = sorted(migration.covers & set(applied))
    low, high = min(migration.covers), max(migration.covers)
    raise MigrationError(
        f"the database stopped part way through migrations {low:04d}-{high:04d}"
        f" (it has {', '.join(f'{v:04d}' for v in recorded)}), which this corral ships"
        f" squashed as {migration.version:04d}_{migration.name}: finish it with a corral"
        " from before the squash (commit c07dd9c: `corral db migrate`), then run this"
        " corral's `corral db migrate`"
    )


def migrate(dsn: str) -> list[int]:
    """Bring the database at `dsn` up to the current schema; return the versions applied."""
    shipped = migrations()
    with connect(dsn, autocommit=False) as conn, conn.transaction():
        # A migration may build an index on a big table: no statement limit here.
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_CREATE_TABLE)
        applied = _applied(conn)
        _check_known(shipped, applied)
        done: list[int] = []
        for migration in shipped:
            state = _squash_state(migration, applied)
            if state == "applied":
                continue
            if state == "partial":
                _refuse_partial(migration, applied)
            if state == "replaced":
                # The schema is there already; keep one row, as a fresh database has.
                conn.execute(
                    "DELETE FROM corral_schema_migrations WHERE version = ANY(%s)",
                    (sorted(migration.covers),),
                )
            else:
                # Each file is trusted package content, not user input.
                conn.execute(sql.SQL(migration.sql))
                done.append(migration.version)
            conn.execute(
                "INSERT INTO corral_schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
        try:
            with conn.transaction():
                conn.execute(sql.SQL(privileges_sql()))
        except psycopg.errors.InsufficientPrivilege as exc:
            # privileges.sql's own refusals carry their fix as the hint.
            fix = exc.diag.message_hint or (
                "Migrate as the owner of corral's tables with CREATEROLE, or have a "
                "superuser run once: CREATE ROLE corral_worker NOLOGIN; "
                "CREATE ROLE corral_admin NOLOGIN"
            )
            raise MigrationError(
                f"granting corral's roles failed: {exc.diag.message_primary or exc}. {fix}"
            ) from None
    return done


def status(dsn: str) -> list[MigrationStatus]:
    """Every shipped migration and whether (and when) `dsn` has it applied."""
    shipped = migrations()
    with connect(dsn) as conn:
        applied = _applied(conn)
    _check_known(shipped, applied)
    result = []
    for m in shipped:
        state = _squash_state(m, applied)
        recorded = applied.get(m.version)
        result.append(
            MigrationStatus(
                version=m.version,
                name=m.name,
                # A squash the database has as its parts reads applied, as
                # the parts were; `corral db migrate` re-records it as one.
                applied_at=recorded[1] if recorded and state in ("applied", "replaced") else None,
                checksum_matches=(
                    recorded is None or state == "replaced" or recorded[0] == m.checksum
                ),
            )
        )
    return result

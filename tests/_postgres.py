"""PostgreSQL fixtures shared by the integration and e2e tiers.

One real server per test session (`pg_server`): started from the machine's
PostgreSQL binaries, or the server named by `CORRAL_TEST_DATABASE_URL` (a DSN
with rights to CREATE DATABASE). The queue schema is applied once to a template
database; each test gets its own database copied from it (`database_url`),
which is far cheaper than migrating per test.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from corral_local.postgres import PostgresServer

TEMPLATE_DB = "corral_template"


@dataclass
class PgHandle:
    """Where the session's server is; `dsn(db)` names one of its databases."""

    admin_dsn: str
    server: PostgresServer | None = None

    def dsn(self, dbname: str = "postgres") -> str:
        return make_conninfo(self.admin_dsn, dbname=dbname)

    @property
    def port(self) -> int:
        return int(conninfo_to_dict(self.admin_dsn).get("port") or 5432)

    @property
    def host(self) -> str:
        return str(conninfo_to_dict(self.admin_dsn).get("host") or "127.0.0.1")


def _admin(server: PgHandle) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(server.dsn("postgres"), autocommit=True)


def _create_database(server: PgHandle, name: str, template: str | None = None) -> None:
    with _admin(server) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )
        if template:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                    sql.Identifier(name), sql.Identifier(template)
                )
            )
        else:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _drop_database(server: PgHandle, name: str) -> None:
    with _admin(server) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgHandle]:
    existing = os.environ.get("CORRAL_TEST_DATABASE_URL")
    if existing:
        try:
            with psycopg.connect(existing, connect_timeout=10) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            pytest.fail(f"CORRAL_TEST_DATABASE_URL is set but unusable: {exc}", pytrace=False)
        yield PgHandle(admin_dsn=existing)
        return
    server = PostgresServer()
    try:
        server.start()
    except Exception as exc:  # the tier cannot run: fail loudly, never skip
        pytest.fail(f"could not start the test PostgreSQL server: {exc}", pytrace=False)
    try:
        yield PgHandle(admin_dsn=server.dsn("postgres"), server=server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def _template_database(pg_server: PgHandle) -> str:
    from corral import queue

    _create_database(pg_server, TEMPLATE_DB)
    queue.migrate(pg_server.dsn(TEMPLATE_DB))
    return TEMPLATE_DB


@pytest.fixture
def database_url(pg_server: PgHandle, _template_database: str) -> Iterator[str]:
    """A fresh database with corral's schema, dropped after the test."""
    name = f"t_{secrets.token_hex(6)}"
    _create_database(pg_server, name, template=_template_database)
    yield pg_server.dsn(name)
    _drop_database(pg_server, name)


WORKER_ROLE = "corral_test_worker"


@pytest.fixture(scope="session")
def _worker_role(pg_server: PgHandle, _template_database: str) -> tuple[str, str]:
    """A login role that is a member of corral_worker only (server-wide)."""
    from corral.queue import roles

    role = roles.create_worker_role(pg_server.dsn(_template_database), WORKER_ROLE)
    return role.name, role.password


@pytest.fixture
def worker_database_url(database_url: str, _worker_role: tuple[str, str]) -> str:
    """The test's database as a worker sees it: a role that may call the
    worker functions and nothing else (what a pool's Secret holds)."""
    from corral.queue import roles

    return roles.worker_dsn(database_url, *_worker_role)


@pytest.fixture
def empty_database_url(pg_server: PgHandle) -> Iterator[str]:
    """A fresh database with no schema at all (for migration tests)."""
    name = f"e_{secrets.token_hex(6)}"
    _create_database(pg_server, name)
    yield pg_server.dsn(name)
    _drop_database(pg_server, name)


@contextmanager
def restartable_server(prefix: str) -> Iterator[PostgresServer]:
    """A server of the test's own that the test may stop and start again (a
    restart keeps its port and data), for fault tests that must not touch
    the session's shared server. Its data directory lives outside pytest's
    tmp: initdb runs as the postgres user."""
    data = Path(tempfile.mkdtemp(prefix=prefix))
    pg = PostgresServer(data_dir=data)
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(data, ignore_errors=True)

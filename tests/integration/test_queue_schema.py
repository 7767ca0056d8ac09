"""Migrations: they add up to schema.sql, apply once, and are recorded."""

from __future__ import annotations

import re
import subprocess
import threading

import psycopg
from psycopg.conninfo import make_conninfo

from corral import queue
from corral.queue import _sql


def _dump(url: str) -> str:
    out = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--no-privileges",
         "--exclude-table=corral_schema_migrations", "--dbname", url],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    # Drop comments and SET lines that differ between otherwise equal dumps.
    lines = [
        line for line in out.splitlines()
        if line.strip()
        and not line.startswith(("--", "SET ", "SELECT pg_catalog.set_config", "\\restrict", "\\unrestrict"))
    ]  # fmt: skip
    return "\n".join(lines)


def test_applying_every_migration_yields_exactly_schema_sql(
    database_url: str, empty_database_url: str
) -> None:
    # database_url was built by migrate(); empty_database_url gets schema.sql.
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute(_sql.schema_sql())
    migrated, from_schema = _dump(database_url), _dump(empty_database_url)
    assert "corral_claim_v1" in migrated
    assert migrated == from_schema


def test_migrate_applies_each_version_once_and_records_it(empty_database_url: str) -> None:
    first = queue.migrate(empty_database_url)
    second = queue.migrate(empty_database_url)
    status = queue.status(empty_database_url)
    assert first == [m.version for m in _sql.migrations()] and second == []
    assert all(s.applied and s.checksum_matches for s in status)


def test_concurrent_migrations_wait_for_each_other_and_apply_once(empty_database_url: str) -> None:
    results: list[list[int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(queue.migrate(empty_database_url)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [[], [], [m.version for m in _sql.migrations()]]


def test_status_reports_a_migration_edited_after_it_was_applied(empty_database_url: str) -> None:
    queue.migrate(empty_database_url)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("UPDATE corral_schema_migrations SET checksum = 'edited' WHERE version = 1")
    [first, *_] = queue.status(empty_database_url)
    assert first.applied and not first.checksum_matches


def test_every_constraint_in_the_schema_is_named(database_url: str) -> None:
    # Unnamed CHECKs get generated names like corral_jobs_priority_check.
    with psycopg.connect(database_url) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT conname FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid"
            " WHERE t.relname LIKE 'corral_%%' AND c.contype = 'c'"
        )]  # fmt: skip
    assert names and not [n for n in names if re.search(r"_check\d*$", n)]


def test_every_connection_has_statement_limits_unless_its_dsn_sets_its_own(
    database_url: str,
) -> None:
    with queue.Queue.connect(database_url) as q:
        conn = q.conn  # what the server says the session runs with
        assert conn.execute("SHOW statement_timeout").fetchone() == ("30s",)
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone() == ("1min",)
        assert conn.info.get_parameters().get("tcp_user_timeout") == "30000"
    own = make_conninfo(database_url, options="-c statement_timeout=250ms")
    with queue.Queue.connect(own) as q:
        conn = q.conn
        assert conn.execute("SHOW statement_timeout").fetchone() == ("250ms",)
        # and the limit holds: a statement past it is cancelled, not waited for
        try:
            conn.execute("SELECT pg_sleep(5)")
        except psycopg.errors.QueryCanceled:
            pass
        else:
            raise AssertionError("pg_sleep(5) should have been cancelled after 250 ms")

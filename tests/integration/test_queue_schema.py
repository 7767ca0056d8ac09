"""Migrations: they apply once, are recorded, and the squash stands for its parts."""

from __future__ import annotations

import re
import threading

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from corral import queue
from corral.queue import _sql


def _baseline() -> _sql.Migration:
    [squash] = [m for m in _sql.migrations() if len(m.covers) > 1]
    return squash


def _record_as_before_the_squash(url: str, versions: range) -> None:
    """A database migrated before the squash: the baseline's schema, with
    the versions recorded one by one as the ten files did."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_baseline().sql)
        conn.execute(
            "CREATE TABLE corral_schema_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        for version in versions:
            conn.execute(
                "INSERT INTO corral_schema_migrations (version, name, checksum)"
                " VALUES (%s, %s, %s)",
                (version, f"before_squash_{version}", f"sha-of-file-{version}"),
            )


def _recorded(url: str) -> list[tuple[int, str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT version, checksum FROM corral_schema_migrations ORDER BY version"
        ).fetchall()
    return [(int(v), str(c)) for v, c in rows]


def test_a_database_migrated_before_the_squash_is_recorded_once_and_not_reapplied(
    empty_database_url: str,
) -> None:
    squash = _baseline()
    _record_as_before_the_squash(empty_database_url, range(1, squash.version + 1))
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        # Re-running the baseline's CREATE TABLEs would fail; data must survive.
        conn.execute("INSERT INTO corral_queues (name) VALUES ('kept')")
    before = queue.status(empty_database_url)
    applied = queue.migrate(empty_database_url)
    assert [s.version for s in before if s.applied and s.checksum_matches] == [
        m.version for m in _sql.migrations() if m.version <= squash.version
    ]
    assert applied == [m.version for m in _sql.migrations() if m.version > squash.version]
    assert (squash.version, squash.checksum) in _recorded(empty_database_url)
    assert [v for v, _ in _recorded(empty_database_url)] == [m.version for m in _sql.migrations()]
    assert all(s.applied and s.checksum_matches for s in queue.status(empty_database_url))
    with psycopg.connect(empty_database_url) as conn:
        assert conn.execute("SELECT 1 FROM corral_queues WHERE name = 'kept'").fetchone()


def test_a_database_stopped_part_way_before_the_squash_is_refused_with_the_fix(
    empty_database_url: str,
) -> None:
    squash = _baseline()
    _record_as_before_the_squash(empty_database_url, range(1, 8))
    with pytest.raises(queue.MigrationError) as refused:
        queue.migrate(empty_database_url)
    message = str(refused.value)
    assert "part way through migrations 0001-0010" in message
    assert "0007" in message and "c07dd9c" in message
    assert [v for v, _ in _recorded(empty_database_url)] == list(range(1, 8))
    assert squash.version not in {v for v, _ in _recorded(empty_database_url)}


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
        conn.execute(
            "UPDATE corral_schema_migrations SET checksum = 'edited' WHERE version = %s",
            (_sql.migrations()[0].version,),
        )
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

"""Long admin commands say on stderr that they are still at work: `db
migrate` behind another migrator, `jobs purge` over its batches."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from click.testing import CliRunner

from corral.admin import cli as admin
from corral.cli import cli
from corral.queue import migrations


def held_for(url: str, statement: str, seconds: float) -> threading.Thread:
    """`statement` run in a transaction of another session, held `seconds`."""
    ready = threading.Event()

    def hold() -> None:
        with psycopg.connect(url) as conn, conn.transaction():
            conn.execute(statement)
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    assert ready.wait(10)
    return thread


def test_db_migrate_says_it_waits_for_another_migrate(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "PROGRESS_EVERY_S", 0.2)
    lock = migrations._MIGRATION_LOCK
    holder = held_for(database_url, f"SELECT pg_advisory_xact_lock({lock})", 1.5)
    result = CliRunner().invoke(cli, ["db", "migrate"], env={"CORRAL_DATABASE_URL": database_url})
    holder.join()
    assert result.exit_code == 0, result.output
    assert "waiting for another `corral db migrate` to finish" in result.stderr, result.stderr
    assert "database schema is at version" in result.stdout


def test_jobs_purge_says_it_is_still_deleting(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(admin, "PROGRESS_EVERY_S", 0.2)
    holder = held_for(database_url, "LOCK TABLE corral_jobs_finished IN EXCLUSIVE MODE", 1.5)
    result = CliRunner().invoke(
        cli, ["jobs", "purge", "--older-than", "7d"], env={"CORRAL_DATABASE_URL": database_url}
    )
    holder.join()
    assert result.exit_code == 0, result.output
    assert "jobs purge: still deleting finished jobs older than 7d" in result.stderr
    assert result.stdout.strip() == "deleted 0 finished job(s)"

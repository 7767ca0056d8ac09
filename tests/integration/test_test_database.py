"""The integration tier's database fixtures are real and isolated."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import psycopg

from tests._postgres import PgHandle
from tests._processes import alive


def test_the_session_server_is_a_real_postgresql_with_fsync_on(pg_server: PgHandle) -> None:
    with psycopg.connect(pg_server.dsn()) as conn:
        version = conn.execute("SHOW server_version_num").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert version is not None and int(str(version[0])) >= 130000
    assert fsync == ("on",)


def test_each_empty_database_starts_without_tables(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url) as conn:
        conn.execute("CREATE TABLE leftover (id int)")
        conn.commit()
        count = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
    assert count == (1,)


def test_a_table_made_by_one_test_is_not_seen_by_the_next(empty_database_url: str) -> None:
    with psycopg.connect(empty_database_url) as conn:
        names = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    assert ("leftover",) not in names


def test_a_server_whose_owner_is_killed_stops_with_it() -> None:
    script = (
        "import time\n"
        "from corral_local.postgres import PostgresServer\n"
        "pg = PostgresServer().start()\n"
        "print(pg._proc.pid, pg.data_dir, flush=True)\n"
        "time.sleep(120)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert owner.stdout is not None
    pid_text, data_dir = owner.stdout.readline().split()
    server_pid = int(pid_text)
    owner.kill()  # SIGKILL: no cleanup code runs in the owner
    owner.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and alive(server_pid):
        time.sleep(0.1)
    shutil.rmtree(data_dir, ignore_errors=True)
    assert not alive(server_pid), "postgres outlived the process that started it"

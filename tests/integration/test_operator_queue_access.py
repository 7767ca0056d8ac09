"""The operator's shared queue connection (corral.controller.queue_access) on a
real Postgres: answers pass through, outages become DatabaseUnavailable with
the password masked, and the next call reconnects."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from corral.controller.queue_access import DatabaseUnavailable, QueueAccess
from corral.queue import Queue, TokenNotFound


def test_calls_run_on_the_real_queue(database_url: str) -> None:
    access = QueueAccess(database_url)
    try:
        minted = access.run(lambda q: q.create_token("eu", pool="jobs/email", ttl_s=600, uses=5))
        tokens = access.run(lambda q: q.list_tokens())
        assert [t.id for t in tokens] == [minted.info.id]
        assert tokens[0].pool == "jobs/email"
    finally:
        access.close()


def test_an_answer_from_the_queue_is_not_mistaken_for_an_outage(database_url: str) -> None:
    access = QueueAccess(database_url)
    try:
        with pytest.raises(TokenNotFound):
            access.run(lambda q: q.revoke_token(424242))
    finally:
        access.close()


def test_an_unreachable_database_is_reported_without_its_password(database_url: str) -> None:
    dsn = make_conninfo(database_url, password="s3cret-pw", port="1", connect_timeout="2")
    assert conninfo_to_dict(dsn)["password"] == "s3cret-pw"
    access = QueueAccess(dsn)
    with pytest.raises(DatabaseUnavailable) as caught:
        access.run(lambda q: q.list_tokens())
    assert "database unreachable" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)


def test_a_connection_broken_during_a_call_fails_it_and_is_replaced(database_url: str) -> None:
    access = QueueAccess(database_url)
    try:
        with pytest.raises(DatabaseUnavailable):
            access.run(lambda q: q.conn.execute("SELECT pg_terminate_backend(pg_backend_pid())"))
        assert access.run(lambda q: q.list_tokens()) == []
    finally:
        access.close()


def test_idle_connections_the_server_dropped_fail_no_call(database_url: str) -> None:
    # Three connections left idle (calls nested three deep), then every one
    # of them cut, as a database restart cuts them: no later call may fail
    # on one (each used to, one call per dead connection).
    access = QueueAccess(database_url)
    try:
        access.run(lambda q: access.run(lambda q2: access.run(lambda q3: q3.list_tokens())))
        with Queue.connect(database_url) as admin:
            cut = admin.conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert len(cut) >= 3
        for _ in range(4):
            assert access.run(lambda q: q.list_tokens()) == []
    finally:
        access.close()


def test_a_hung_call_holds_up_neither_other_calls_nor_health_and_is_reported(
    database_url: str,
) -> None:
    """One pool's query stuck on a lock (as behind a hung server) must not
    block the reconciles of other pools; /healthz sees how long it hangs."""
    access = QueueAccess(database_url)
    locker = psycopg.connect(database_url)
    try:
        access.run(lambda q: q.list_tokens())  # a first connection, now idle
        locker.execute("LOCK TABLE corral_enrollment_tokens IN ACCESS EXCLUSIVE MODE")
        stuck_started = threading.Event()
        outcome: list[BaseException | object] = []

        def stuck_call() -> None:
            def blocked(q: Queue) -> object:
                stuck_started.set()
                return q.list_tokens()  # waits on the lock

            try:
                outcome.append(access.run(blocked))
            except BaseException as exc:
                outcome.append(exc)

        stuck = threading.Thread(target=stuck_call)
        stuck.start()
        assert stuck_started.wait(10)
        time.sleep(0.5)
        # Meanwhile other calls go on, on other connections, at once.
        began = time.monotonic()
        assert access.run(lambda q: q.stats()) is not None
        assert time.monotonic() - began < 5
        assert access.stalled_for() >= 0.5  # the stuck call, as /healthz sees it
        locker.rollback()  # the lock goes: the stuck call finishes
        stuck.join(10)
        assert outcome == [[]]
        assert access.stalled_for() == 0.0
    finally:
        locker.close()
        access.close()

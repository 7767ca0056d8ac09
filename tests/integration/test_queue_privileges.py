"""Least privilege in the database: what a worker's role can and cannot do.

Every test connects as the worker role (`worker_database_url`: a login role
that is a member of corral_worker only, as `corral db create-worker-role`
makes it) and checks one boundary of docs/security.md against the real
server. Set-up and inspection use the admin URL.
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from corral.queue import (
    CredentialError,
    EnrollmentError,
    Failure,
    MigrationError,
    PermissionDenied,
    Queue,
    dsn_user,
    migrate,
)
from tests.integration._clients import Connect
from tests.integration._enrolled import run_sql

# What privileges.sql grants the worker role; everything else is refused.
WORKER_FUNCTIONS = {
    "corral_enroll_v2",
    "corral_authenticate_v2",
    "corral_claim_v2",  # workers of the previous release, during a rolling upgrade
    "corral_claim_v3",  # workers of the previous release
    "corral_claim_v4",  # workers of the previous release
    "corral_claim_v5",
    "corral_complete_v3",  # workers of the previous release
    "corral_complete_v4",  # workers of the previous release
    "corral_complete_v5",
    "corral_fail_v2",
    "corral_release_v2",
    "corral_heartbeat_v2",  # workers of the previous release
    "corral_heartbeat_v3",  # workers of the previous release
    "corral_heartbeat_v4",
    "corral_drain_self_v1",
    "corral_mark_drained_v1",
    "corral_reap_v1",
    "corral_purge_finished_v2",
    "corral_worker_due_schedules_v1",
    "corral_worker_fire_schedule_v1",
    "corral_worker_lock_schedule_v1",
    "corral_worker_declare_schedule_v1",
    "corral_worker_rollup_throughput_v1",
}


def _corral_tables(url: str) -> list[tuple[str, str]]:
    """Every corral table with one of its (non-identity) columns."""
    return [
        (str(t), str(c))
        for t, c in run_sql(
            url,
            "SELECT c.relname, (SELECT a.attname FROM pg_attribute a WHERE a.attrelid = c.oid"
            "                    AND a.attnum > 0 AND NOT a.attisdropped AND a.attidentity = ''"
            "                  ORDER BY a.attnum DESC LIMIT 1)"
            "  FROM pg_class c WHERE c.relname LIKE 'corral\\_%%' AND c.relkind = 'r'"
            " ORDER BY 1",
        )
    ]


def _corral_functions(url: str) -> list[tuple[str, list[str]]]:
    """Every corral function with its argument types."""
    return [
        (str(name), list(types))
        for name, types in run_sql(
            url,
            "SELECT p.proname, p.proargtypes::regtype[]::text[] FROM pg_proc p"
            " WHERE p.proname LIKE 'corral\\_%%' ORDER BY 1, 2",
        )
    ]


def _refused(url: str, statement: sql.SQL | sql.Composed) -> str:
    with (
        psycopg.connect(url, autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege) as refused,
    ):
        conn.execute(statement)
    return str(refused.value)


def test_the_worker_role_cannot_read_write_or_delete_any_corral_table(
    database_url: str, worker_database_url: str
) -> None:
    tables = _corral_tables(database_url)
    assert {"corral_jobs", "corral_jobs_finished", "corral_workers",
            "corral_enrollment_tokens", "corral_queues", "corral_job_interruptions",
            "corral_schema_migrations"} <= {t for t, _ in tables}  # fmt: skip
    for table, column in tables:
        t, c = sql.Identifier(table), sql.Identifier(column)
        for statement in (
            sql.SQL("SELECT * FROM {} LIMIT 1").format(t),
            sql.SQL("UPDATE {} SET {} = {} WHERE false").format(t, c, c),
            sql.SQL("DELETE FROM {} WHERE false").format(t),
            sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t),
        ):
            assert "permission denied" in _refused(worker_database_url, statement), statement
    assert "permission denied" in _refused(
        worker_database_url, sql.SQL("SELECT nextval('corral_lease_token_seq')")
    )


def test_the_worker_role_cannot_create_a_table(worker_database_url: str) -> None:
    message = _refused(worker_database_url, sql.SQL("CREATE TABLE corral_mine (x int)"))
    assert "permission denied for schema public" in message


def test_every_function_but_the_worker_ones_is_refused_to_the_worker_role(
    database_url: str, worker_database_url: str
) -> None:
    functions = _corral_functions(database_url)
    admin_only = [(n, k) for n, k in functions if n not in WORKER_FUNCTIONS]
    assert {"corral_purge_finished_v1", "corral_complete_v1", "corral_complete_v2",
            "corral_fail_v1", "corral_release_v1", "corral_enqueue_v1", "corral_claim_v1",
            "corral_heartbeat_v1", "corral_enroll_v1",
            "corral_fire_schedule_v1", "corral_due_schedules_v1",
            "corral_run_schedule_now_v1"} <= {n for n, _ in admin_only}  # fmt: skip
    for name, types in admin_only:
        # Sub-selects, not constants: the planner folds a STRICT function of
        # a constant NULL to NULL without calling (or checking) it.
        call = sql.SQL("SELECT {}({})").format(
            sql.Identifier(name),
            sql.SQL(", ").join(sql.SQL("(SELECT NULL::{})").format(sql.SQL(t)) for t in types),
        )
        assert f"permission denied for function {name}" in _refused(worker_database_url, call)
    # ... while the worker functions are reachable (a wrong credential is CR401,
    # not a permission error).
    with Queue.connect(worker_database_url) as q, pytest.raises(CredentialError):
        q.claim(1, "crl_wc_nope", ["q"])


def test_the_queue_client_names_the_missing_right(worker_database_url: str) -> None:
    with Queue.connect(worker_database_url) as q, pytest.raises(PermissionDenied) as refused:
        q.purge_finished(0)
    assert "worker role may only call corral's worker functions" in str(refused.value)


def _two_workers(admin: Queue, worker_url: str, connect: Connect) -> tuple[Any, Any, Any]:
    token = admin.create_token("eu", ttl_s=60, uses=2, queues=["q"])
    client = connect(worker_url)
    first = client.enroll(token.secret, name="w1", queues=["q"], concurrency=4)
    second = client.enroll(token.secret, name="w2", queues=["q"], concurrency=4)
    return client, first, second


def test_a_second_worker_cannot_complete_fail_release_or_extend_a_job_it_does_not_hold(
    database_url: str, worker_database_url: str, connect: Connect
) -> None:
    with Queue.connect(database_url) as admin:
        job_id = admin.enqueue("noop", queue="q")
        client, first, second = _two_workers(admin, worker_database_url, connect)
        with client:
            [held] = client.claim(first.worker_id, first.credential, ["q"], batch=1, lease_s=30)
            before = admin.get_job(job_id).lease_expires_at
            assert client.complete_many([held], worker=second) == [job_id]
            assert client.complete_many([held], {job_id: {"x": 1}}, worker=second) == [job_id]
            assert client.fail_many([Failure(held, "boom")], worker=second) == [job_id]
            assert client.release_many([held], worker=second) == [job_id]
            client.heartbeat(second.worker_id, second.credential, in_flight=1, lease_s=3600)
            after = admin.get_job(job_id)
            assert after.state == "running" and after.worker_id == first.worker_id
            assert after.lease_expires_at == before and after.attempt == 1
            # The holder's own credential is needed: its id with another secret is refused.
            impostor = type(first)(first.worker_id, second.credential, "eu", None)
            with pytest.raises(CredentialError):
                client.complete_many([held], worker=impostor)
            # ... and the holder can.
            assert client.complete_many([held], worker=first) == []
            assert admin.get_job(job_id).state == "completed"


def test_a_batch_with_another_workers_job_completes_the_callers_own_and_leaves_that_one_untouched(
    database_url: str, worker_database_url: str, connect: Connect
) -> None:
    """complete_v5 deletes first and checks the holder of what it deleted:
    the other worker's job (its lease token copied) must come back whole,
    with no finished row and no forwarded result left behind."""
    with Queue.connect(database_url) as admin:
        theirs = admin.enqueue("noop", queue="q", result_queue="results")
        client, first, second = _two_workers(admin, worker_database_url, connect)
        with client:
            [held_by_first] = client.claim(first.worker_id, first.credential, ["q"], batch=1)
            mine = admin.enqueue("noop", queue="q", result_queue="results")
            [held_by_second] = client.claim(second.worker_id, second.credential, ["q"], batch=1)
            assert held_by_second.id == mine
            results = {theirs: {"stolen": True}, mine: {"n": 2}}
            rejected = client.complete_many([held_by_first, held_by_second], results, worker=second)
            assert rejected == [theirs]
        still = admin.get_job(theirs)
        assert (still.state, still.worker_id, still.result) == ("running", first.worker_id, None)
        done = admin.get_job(mine)
        assert (done.state, done.result) == ("completed", {"n": 2})
        forwarded = run_sql(
            database_url,
            "SELECT payload->'job_id' FROM corral_jobs WHERE kind = 'result' ORDER BY id",
        )
        assert forwarded == [(mine,)]


def test_a_claim_outside_the_enrollment_returns_nothing_and_says_why(
    database_url: str,
    worker_database_url: str,
    connect: Connect,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with Queue.connect(database_url) as admin:
        admin.enqueue("noop", queue="secret")
        admin.enqueue("noop", queue="q", region="us", allow_empty_region=True)
        token = admin.create_token("eu", ttl_s=60, uses=2, queues=["q"])
        with connect(worker_database_url) as client:
            with pytest.raises(EnrollmentError, match=r"admits queues \{q\}, not \{secret\}"):
                client.enroll(token.secret, name="w", queues=["secret"], concurrency=1)
            worker = client.enroll(token.secret, name="w", queues=["q"], concurrency=1)
            with caplog.at_level(logging.WARNING, logger="corral.queue"):
                claimed = client.claim(worker.worker_id, worker.credential, ["secret", "q"])
            # Nothing from the queue it did not enroll for, nor from region us.
            assert claimed == []
            assert "is not enrolled for queue(s) {secret}: not served (it serves {q})" in (
                caplog.text
            )
            with pytest.raises(EnrollmentError, match="enrolled for queues"):
                client.authenticate(worker.worker_id, worker.credential, queues=["secret"])


def test_the_server_caps_a_claims_batch_and_lease(
    database_url: str, worker_database_url: str, connect: Connect
) -> None:
    with Queue.connect(database_url) as admin:
        admin.enqueue_many([admin_spec("q") for _ in range(1100)])
        token = admin.create_token("eu", ttl_s=60, uses=1)
        with connect(worker_database_url) as client:
            w = client.enroll(token.secret, name="w", queues=["q"], concurrency=5000)
            claimed = client.claim(w.worker_id, w.credential, ["q"], batch=5000, lease_s=1e9)
            assert len(claimed) == 1000
            longest = max(c.lease_expires_at for c in claimed)
            assert longest <= dt.datetime.now(dt.UTC) + dt.timedelta(hours=1, seconds=5)


_LAPSED = (
    "INSERT INTO corral_jobs (kind, queue, state, attempt, max_attempts, lease_token,"
    " lease_expires_at, worker_id, started_at)"
    " SELECT 'noop', 'q', 'running', 1, 5, 1, now() - interval '1 minute', 1, now()"
    " FROM generate_series(1, 1500)"
)


def test_the_reaper_a_worker_may_call_reaps_at_most_1000_jobs_a_call(
    database_url: str, worker_database_url: str
) -> None:
    # corral_reap_v1 takes no credential (docs/security.md: it does only what
    # every worker's reaper does, and one at a time); the server caps what
    # one call does, whatever limit the caller names (NULL was no limit).
    run_sql(database_url, _LAPSED)
    with psycopg.connect(worker_database_url, autocommit=True) as conn:
        for limit, reaped in ((10**9, 1000), (None, 500), (-1, 0)):
            row = conn.execute("SELECT corral_reap_v1(%s::int4)", (limit,)).fetchone()
            assert row is not None
            assert row[0] == reaped, limit
    [(left,)] = run_sql(database_url, "SELECT count(*) FROM corral_jobs WHERE state = 'running'")
    assert left == 0


def admin_spec(queue: str) -> Any:
    from corral.queue import JobSpec

    return JobSpec("noop", queue=queue)


def test_an_expired_credential_is_refused_and_heartbeats_renew_a_live_one(
    database_url: str, worker_database_url: str, connect: Connect
) -> None:
    with Queue.connect(database_url) as admin:
        token = admin.create_token("eu", ttl_s=60, uses=2)
        with connect(worker_database_url) as client:
            live = client.enroll(token.secret, name="a", queues=["q"], concurrency=1)
            stale = client.enroll(token.secret, name="b", queues=["q"], concurrency=1)
            run_sql(
                database_url,
                "UPDATE corral_workers SET credential_expires_at = now() + interval '1 minute'"
                " WHERE id = %s",
                (live.worker_id,),
            )
            run_sql(
                database_url,
                "UPDATE corral_workers SET credential_expires_at = now() - interval '1 second'"
                " WHERE id = %s",
                (stale.worker_id,),
            )
            client.heartbeat(live.worker_id, live.credential, in_flight=0)
            [(left,)] = run_sql(
                database_url,
                "SELECT credential_expires_at - now() FROM corral_workers WHERE id = %s",
                (live.worker_id,),
            )
            assert isinstance(left, dt.timedelta) and left > dt.timedelta(hours=23)
            for call in (
                lambda: client.heartbeat(stale.worker_id, stale.credential, in_flight=0),
                lambda: client.claim(stale.worker_id, stale.credential, ["q"]),
            ):
                with pytest.raises(CredentialError, match="wrong or expired"):
                    call()


def test_a_workers_retention_never_deletes_a_day_of_history(
    database_url: str, worker_database_url: str, connect: Connect
) -> None:
    with Queue.connect(database_url) as admin:
        job_id = admin.enqueue("noop", queue="q")
        token = admin.create_token("eu", ttl_s=60, uses=1)
        with connect(worker_database_url) as client:
            w = client.enroll(token.secret, name="w", queues=["q"], concurrency=1)
            [held] = client.claim(w.worker_id, w.credential, ["q"])
            client.complete_many([held], worker=w)
            run_sql(
                database_url,
                "UPDATE corral_jobs_finished SET finished_at = now() - interval '23 hours'",
            )
            assert client.retention_batch(w.worker_id, w.credential, 0, batch=10) == 0
            assert admin.get_job(job_id).state == "completed"
            run_sql(
                database_url,
                "UPDATE corral_jobs_finished SET finished_at = now() - interval '25 hours'",
            )
            assert client.retention_batch(w.worker_id, w.credential, 0, batch=10) == 1


def test_create_worker_role_prints_a_dsn_that_can_only_call_worker_functions(
    database_url: str,
) -> None:
    from click.testing import CliRunner

    from corral.cli import cli

    created = CliRunner().invoke(
        cli, ["db", "create-worker-role", "corral_cli_worker"],
        env={"CORRAL_DATABASE_URL": database_url},
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    dsn = created.stdout.strip().splitlines()[-1]
    assert dsn.startswith("postgresql://corral_cli_worker:")
    assert "permission denied" in _refused(dsn, sql.SQL("SELECT * FROM corral_jobs"))
    with Queue.connect(dsn) as q, pytest.raises(CredentialError):
        q.heartbeat(1, "crl_wc_nope", in_flight=0)
    # A role with more rights than a worker's is refused, not turned into one.
    [(admin,)] = run_sql(database_url, "SELECT current_user")
    refused = CliRunner().invoke(
        cli, ["db", "create-worker-role", str(admin)], env={"CORRAL_DATABASE_URL": database_url}
    )
    assert refused.exit_code != 0 and "more rights than a worker may have" in refused.output


def test_create_worker_role_takes_the_password_piped_in_and_refuses_an_empty_one(
    database_url: str,
) -> None:
    from click.testing import CliRunner

    from corral.cli import cli

    role = f"corral_piped_{secrets.token_hex(4)}"  # roles outlive the test's database
    env = {"CORRAL_DATABASE_URL": database_url}
    args = ["db", "create-worker-role", role, "--password-stdin"]
    empty = CliRunner().invoke(cli, args, input="\n", env=env)
    assert empty.exit_code == 2 and "--password-stdin" in empty.output
    assert run_sql(database_url, "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)) == []
    created = CliRunner().invoke(cli, args, input="pip3d-pw\r\n", env=env)
    assert created.exit_code == 0, created.output
    dsn = created.stdout.strip().splitlines()[-1]
    assert dsn.startswith(f"postgresql://{role}:pip3d-pw@")
    with Queue.connect(dsn) as q, pytest.raises(CredentialError):
        q.heartbeat(1, "crl_wc_nope", in_flight=0)


_PLANT = sql.SQL(
    "CREATE FUNCTION public.array_fill(text, integer[]) RETURNS text[]"
    " LANGUAGE sql AS 'SELECT ARRAY[current_user::text]'"
)


def test_migrate_takes_create_on_public_away_from_every_role(
    database_url: str, worker_database_url: str
) -> None:
    # PostgreSQL 14's default (and a pg_upgrade'd database's): anyone may
    # create in public, where the SECURITY DEFINER functions look names up.
    # A worker could plant a function that an exact type match prefers to
    # pg_catalog's, and corral_reap_v1 would run it as the schema owner.
    run_sql(database_url, "GRANT CREATE ON SCHEMA public TO PUBLIC")
    with psycopg.connect(worker_database_url, autocommit=True) as conn:
        conn.execute(_PLANT)  # the hole is there
        conn.execute("DROP FUNCTION public.array_fill(text, integer[])")
    migrate(database_url)
    assert "permission denied for schema public" in _refused(worker_database_url, _PLANT)


def test_migrate_refuses_while_anyone_may_create_in_public_and_it_cannot_revoke(
    empty_database_url: str, _worker_role: tuple[str, str]
) -> None:
    # A migrating role that owns its tables but not the schema cannot revoke.
    role = f"corral_mig_{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    run_sql(empty_database_url, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        run_sql(empty_database_url, "GRANT CREATE ON SCHEMA public TO PUBLIC")
        as_migrator = make_conninfo(empty_database_url, user=role, password=password)
        with pytest.raises(MigrationError) as refused:
            migrate(as_migrator)
        message = str(refused.value)
        assert "every role may create objects in schema public" in message, message
        assert "REVOKE CREATE ON SCHEMA public FROM PUBLIC" in message, message
        assert password not in message
    finally:
        run_sql(empty_database_url, f"DROP OWNED BY {role}")
        run_sql(empty_database_url, f"DROP ROLE {role}")


@pytest.mark.parametrize(
    ("grant", "found"),
    [
        ("ALTER DATABASE {db} OWNER TO {role}", "owner of this database"),
        ("CREATE SCHEMA {role} AUTHORIZATION {role}", "owner of 1 schemas in it"),
        (
            "ALTER FUNCTION corral_claim_v5(bigint, text, text[], integer, double precision)"
            " OWNER TO {role}",
            "owner of 1 functions in it",
        ),
        ("GRANT SELECT ON corral_jobs TO {role}", "privileges on corral tables directly"),
        ("ALTER ROLE {role} REPLICATION", "REPLICATION"),
    ],
)
def test_create_worker_role_refuses_an_owner_and_keeps_its_password(
    database_url: str, grant: str, found: str
) -> None:
    from click.testing import CliRunner

    from corral.cli import cli

    role = f"svc_{secrets.token_hex(4)}"
    [(db,)] = run_sql(database_url, "SELECT current_database()")
    run_sql(database_url, f"CREATE ROLE {role} LOGIN PASSWORD 'operator-login'")
    try:
        run_sql(database_url, grant.format(db=db, role=role))
        password = f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'"
        before = run_sql(database_url, password)
        refused = CliRunner().invoke(
            cli, ["db", "create-worker-role", role], env={"CORRAL_DATABASE_URL": database_url}
        )
        assert refused.exit_code != 0, refused.output
        assert "more rights than a worker may have" in refused.output
        assert found in refused.output and "pick another name" in refused.output
        assert run_sql(database_url, password) == before  # the owner's login still works
    finally:
        run_sql(database_url, f"REASSIGN OWNED BY {role} TO current_user")
        run_sql(database_url, f"DROP OWNED BY {role}")
        run_sql(database_url, f"DROP ROLE {role}")


def test_the_operator_can_tell_a_worker_role_from_a_privileged_one(
    database_url: str, worker_database_url: str
) -> None:
    worker = dsn_user(worker_database_url)
    [(admin,)] = run_sql(database_url, "SELECT current_user")
    with Queue.connect(database_url) as q:
        assert worker is not None and q.worker_role_rights(worker) == []
        found = q.worker_role_rights(str(admin))
        assert found and "the role this connection logs in as" in found, found
        assert q.worker_role_rights("no_such_role_here") is None

"""A PostgreSQL server that worker pods can reach (imported by tests/e2e/conftest.py).

The session's `pg_server` listens on 127.0.0.1 only, which a pod in its own
network namespace cannot reach. `pod_postgres` starts a second throwaway server
listening on 127.0.0.1 and on the pod bridge address, with pg_hba allowing the
pod network, migrates a template database once, and `pod_database_url` clones
that template per test (as `database_url` does) and names it by the bridge
address, so one DSN works for the operator on the host and for the pods.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from corral_local.postgres import PostgresServer
from tests.e2e._nodes import NodeAgentHandle

POD_GATEWAY = "10.244.0.1"  # the host's address on the pod bridge (corral0)
POD_NETWORK = "10.244.0.0/16"
TEMPLATE_DB = "corral_pod_template"


def _admin(server: PostgresServer, statement: sql.Composed) -> None:
    with psycopg.connect(server.dsn("postgres", host="127.0.0.1"), autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def pod_postgres(node_agent: NodeAgentHandle) -> Iterator[PostgresServer]:
    from corral import queue

    server = PostgresServer(
        listen=("127.0.0.1", POD_GATEWAY), hba_networks=("127.0.0.1/32", POD_NETWORK)
    )
    try:
        server.start()
    except Exception as exc:  # the tests cannot run: fail loudly, never skip
        pytest.fail(f"could not start PostgreSQL on {POD_GATEWAY}: {exc}", pytrace=False)
    try:
        _admin(server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE_DB)))
        queue.migrate(server.dsn(TEMPLATE_DB, host=POD_GATEWAY))
        yield server
    finally:
        server.stop()


@pytest.fixture
def pod_database_url(pod_postgres: PostgresServer) -> Iterator[str]:
    name = f"p_{secrets.token_hex(6)}"
    _admin(
        pod_postgres,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(TEMPLATE_DB)
        ),
    )
    yield pod_postgres.dsn(name, host=POD_GATEWAY)
    _admin(
        pod_postgres,
        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
    )

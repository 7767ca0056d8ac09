"""The unit tier refuses network access, so a test that needs a server is
forced into the tier that starts one."""

from __future__ import annotations

import socket

import pytest


def test_a_unit_test_that_connects_a_socket_fails_with_a_clear_message() -> None:
    with pytest.raises(RuntimeError, match="move this test to tests/integration"):
        socket.create_connection(("127.0.0.1", 5432), timeout=0.1)


def test_a_unit_test_that_binds_a_tcp_socket_fails() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(RuntimeError, match="unit tests must not use the network"):
            s.bind(("127.0.0.1", 0))
    finally:
        s.close()


def test_psycopg_cannot_reach_a_database_from_the_unit_tier() -> None:
    import psycopg

    with pytest.raises(Exception, match="must not use the network"):
        psycopg.connect("host=127.0.0.1 port=5432 dbname=x connect_timeout=1")

"""The connection settings every corral connection gets unless its DSN sets
them: keepalives, tcp_user_timeout, statement and idle-in-transaction limits."""

from __future__ import annotations

from corral.queue._connect import hardened


def test_a_plain_dsn_gets_keepalives_a_tcp_timeout_and_statement_limits() -> None:
    extra = hardened("postgresql://corral@db:5432/corral")
    assert extra["keepalives"] == "1"
    assert extra["keepalives_idle"] == "10"
    assert extra["tcp_user_timeout"] == "30000"
    assert "-c statement_timeout=30s" in extra["options"]
    assert "-c idle_in_transaction_session_timeout=60s" in extra["options"]


def test_what_the_dsn_sets_wins_and_is_never_overridden() -> None:
    dsn = (
        "postgresql://corral@db/corral?tcp_user_timeout=5000&keepalives_idle=2"
        "&options=-c%20statement_timeout%3D0%20-c%20search_path%3Dq"
    )
    extra = hardened(dsn)
    assert "tcp_user_timeout" not in extra and "keepalives_idle" not in extra
    # the DSN's own options are kept, and only what they lack is added
    assert extra["options"] == (
        "-c statement_timeout=0 -c search_path=q -c idle_in_transaction_session_timeout=60s"
    )


def test_a_dsn_that_sets_everything_gets_nothing_added() -> None:
    dsn = (
        "host=db dbname=corral keepalives=1 keepalives_idle=1 keepalives_interval=1"
        " keepalives_count=1 tcp_user_timeout=1"
        " options='-c statement_timeout=1s -c idle_in_transaction_session_timeout=1s'"
    )
    assert hardened(dsn) == {}


def test_session_settings_are_added_unless_the_dsn_sets_them() -> None:
    extra = hardened("postgresql://corral@db/corral", {"TimeZone": "UTC"})
    assert "-c TimeZone=UTC" in extra["options"]
    assert "-c statement_timeout=30s" in extra["options"]
    mine = hardened(
        "postgresql://corral@db/corral?options=-c%20TimeZone%3DEurope/Paris", {"TimeZone": "UTC"}
    )
    assert mine["options"].startswith("-c TimeZone=Europe/Paris")
    assert "TimeZone=UTC" not in mine["options"]

"""Pure parts of corral.queue: durations, DSN checks and messages, the SQL loader."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corral.durations import DurationError, format_age, parse_duration
from corral.queue import _sql
from corral.queue._params import token_params
from corral.queue.dsn import DsnError, check_dsn, connect_error, mask_dsn
from corral.queue.errors import InvalidJob
from corral.queue.roles import worker_dsn


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h30m", 5400), ("7d", 604800), ("250ms", 0.25), ("90", 90),
     ("1.5h", 5400), (" 2W ", 1209600)],
)  # fmt: skip
def test_durations_parse_units_compounds_and_bare_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5 minutes", "1h-5m", "m5", "-3s", "inf", "10y"])
def test_a_bad_duration_is_quoted_with_examples_of_good_ones(text: str) -> None:
    with pytest.raises(DurationError, match=r"--ttl .*write e\.g\. 30s"):
        parse_duration(text, what="--ttl")


def test_a_zero_duration_is_refused_where_it_makes_no_sense() -> None:
    with pytest.raises(DurationError, match="longer than zero"):
        parse_duration("0s", what="--ttl", allow_zero=False)


def test_ages_print_like_kubectl() -> None:
    assert [format_age(s) for s in (5, 150, 7300, 200000, None)] == [
        "5s",
        "2m",
        "2h",
        "2d",
        "<unknown>",
    ]


@pytest.mark.parametrize(
    "dsn",
    ["postgresql://corral:s3cret@db:5432/corral", "host=db user=corral password=s3cret dbname=corral",
     "postgres://corral:s3cret@db/corral?sslmode=require"],
)  # fmt: skip
def test_passwords_are_masked_in_urls_and_conninfo_strings(dsn: str) -> None:
    masked = mask_dsn(dsn)
    assert "s3cret" not in masked and "********" in masked


@pytest.mark.parametrize(
    ("dsn", "names"),
    [
        (None, "--database-url"),
        ("", "CORRAL_DATABASE_URL"),
        ("mysql://u:s3cret@db/x", "scheme 'mysql'"),
        ("postgresql://u:s3cret@db:99999/x", "port '99999'"),
        ("postgresql://u:s3cret@db:abc/x", "port"),
        ("host=db port=0 password=s3cret", "port '0'"),
        ("host=db user=u password=s3cret dbname=''", "names no database"),
        ("host=db password=s3cret nonsense", "cannot be parsed"),
    ],
)
def test_a_malformed_dsn_names_the_wrong_part_without_the_password(
    dsn: str | None, names: str
) -> None:
    with pytest.raises(DsnError) as caught:
        check_dsn(dsn)
    assert names in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("dsn", "secret", "names"),
    [
        ("postgresql://owner:50%off@db/corral", "50%off", "password contains a '%' that is not percent-encoding: percent-encode it as %25"),
        ("postgresql://app:pa ss@db/corral", "pa ss", "password contains a space: percent-encode it as %20"),
        ("postgresql://owner:p@zq9@host/db", "zq9", "password contains an '@': percent-encode it as %40"),
        ("postgresql://owner:pa/zq9@host/db", "zq9", "percent-encode a '/' in the password as %2F"),
        ("postgresql://owner@db/x?password=50%off", "50%off", "password contains a '%'"),
        ("postgresql://owner:s3%00cret@db/x", "cret", "password contains %00"),
        ("host=db password=correct horse battery staple", "horse", "if the password contains spaces, quote it"),
        ("host=db password='correct horse battery staple", "horse", "unterminated quoted string"),
        ("postgresql://owner:s3cret@[::1/x", "s3cret", "IPv6"),
    ],
)  # fmt: skip
def test_a_dsn_libpq_cannot_parse_names_the_part_and_never_echoes_the_password(
    dsn: str, secret: str, names: str
) -> None:
    with pytest.raises(DsnError) as caught:
        check_dsn(dsn)
    assert names in str(caught.value)
    assert secret not in str(caught.value)


@pytest.mark.parametrize(
    ("dsn", "secrets"),
    [
        ("postgresql://owner:p@ss@host/db", ["p@ss", "ss@"]),
        ("postgresql://app:pa ss@db/corral", ["pa", "ss@"]),
        ("postgresql://user@domain:s3cret@db/corral", ["s3cret"]),
        ("host=db password=correct horse battery staple", ["correct", "horse", "staple"]),
        ("host=db password='correct horse battery staple' user=u", ["correct", "horse", "staple"]),
        ("host=db password=correct\\ horse user=u", ["correct", "horse"]),
    ],
)
def test_masking_covers_the_whole_password(dsn: str, secrets: list[str]) -> None:
    masked = mask_dsn(dsn)
    assert not [s for s in secrets if s in masked], masked
    assert "host" in masked or "db" in masked


@pytest.mark.parametrize(
    ("dsn", "names"),
    [
        ("corral:s3cretPW@127.0.0.1", "it has no postgresql:// scheme"),
        ("corral:s3cretPW@127.0.0.1:5432/corral", "it has no postgresql:// scheme"),
        ("corral:pa/ss s3cretPW@db/corral", "it has no postgresql:// scheme"),
        ("postgresql:/corral:s3cretPW@127.0.0.1", "its scheme 'postgresql:/' is mistyped"),
        ("postgresql//corral:s3cretPW@127.0.0.1", "its scheme 'postgresql//' is mistyped"),
        ("postgres:corral:s3cretPW@127.0.0.1/db", "its scheme 'postgres:' is mistyped"),
        ("postgresql:/corral:s3cretPW@db/x?sslmode=require", "is mistyped"),
        ("host=db corral:s3cretPW@db", "cannot be parsed"),
        ("host=db password=s3cretPW user corral", "quote it"),
    ],
)  # fmt: skip
def test_a_url_without_its_scheme_says_so_and_never_echoes_the_password(
    dsn: str, names: str
) -> None:
    with pytest.raises(DsnError) as caught:
        check_dsn(dsn)
    assert names in str(caught.value)
    assert "s3cretPW" not in str(caught.value) and "pa/ss" not in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "database URL 'corral:s3cretPW@127.0.0.1' cannot be parsed",
        "postgresql:/corral:s3cretPW@127.0.0.1",
        "postgresql//corral:s3cretPW@127.0.0.1/db",
        "connecting with corral:s3cretPW@db:5432/corral failed",
        "user@example.com:s3cretPW@db",
        "corral:s3cret@PW@db",
    ],
)
def test_masking_covers_a_user_and_password_without_a_scheme(text: str) -> None:
    masked = mask_dsn(text)
    assert "s3cret" not in masked and "PW@" not in masked, masked
    assert "********" in masked


def test_masking_leaves_a_masked_url_and_plain_messages_as_they_are() -> None:
    masked = "postgresql://corral:********@db:5432/corral"
    assert mask_dsn(masked) == masked
    for text in ("cannot connect to corral@db:5433/jobs: check the host and port",
                 "nothing is listening on db:5433", "at 12:30:00 UTC"):  # fmt: skip
        assert mask_dsn(text) == text


def test_a_good_dsn_passes_unchanged() -> None:
    assert check_dsn(" postgresql://u@db:5432/x ") == "postgresql://u@db:5432/x"


@pytest.mark.parametrize(
    ("server_says", "names"),
    [
        ('FATAL:  password authentication failed for user "corral"', "check the password"),
        ('FATAL:  role "corral" does not exist', "user 'corral' does not exist"),
        ('FATAL:  database "jobs" does not exist', "database 'jobs' does not exist"),
        ("could not translate host name \"db\" to address: Name or service not known", "host 'db'"),
        ("connection to server at \"10.0.0.1\", port 5433 failed: Connection refused", "nothing is listening on db:5433"),
        ("connection timeout expired", "timed out"),
        ('no pg_hba.conf entry for host "10.1.1.1", user "corral"', "pg_hba.conf"),
    ],
)  # fmt: skip
def test_a_refused_connection_names_the_part_to_fix_without_the_password(
    server_says: str, names: str
) -> None:
    dsn = "postgresql://corral:s3cret@db:5433/jobs"
    message = str(connect_error(dsn, RuntimeError(server_says + " (password=s3cret)")))
    assert names in message
    assert "s3cret" not in message
    assert message.startswith("cannot connect to corral@db:5433/jobs")


def test_a_worker_url_keeps_the_servers_tls_settings_but_none_of_the_admins_credentials() -> None:
    admin = (
        "host=db.example port=5433 dbname=corral user=owner password=owner-pw sslmode=verify-full"
        " sslrootcert=/etc/ca.pem sslcert=/etc/owner.crt sslkey=/etc/owner.key"
        " sslpassword=key-pw passfile=/home/owner/.pgpass connect_timeout=5"
        " application_name=corral target_session_attrs=read-write krbsrvname=owner-krb"
    )
    url = worker_dsn(admin, "w", "w-pw")
    assert url == (
        "postgresql://w:w-pw@db.example:5433/corral?application_name=corral&connect_timeout=5"
        "&sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&target_session_attrs=read-write"
    )
    for secret in ("owner", "key-pw", "pgpass", "krb"):
        assert secret not in url


def test_named_queries_are_split_at_name_lines_and_keep_their_comments() -> None:
    text = "-- file header\n\n-- name: one\n-- why\nSELECT 1;\n\n-- name: two_v1\nSELECT 2\n"
    queries = _sql.parse_named_queries(text)
    assert queries == {"one": "-- why\nSELECT 1", "two_v1": "SELECT 2"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2", "defined twice"),
        ("SELECT 1\n-- name: a\nSELECT 2", "before the first"),
        ("-- name: a\n-- only a comment\n", "has no statement"),
    ],
)
def test_a_malformed_queries_file_is_rejected_with_the_reason(text: str, error: str) -> None:
    with pytest.raises(_sql.SqlFileError, match=error):
        _sql.parse_named_queries(text)


def test_migration_files_are_ordered_by_version_and_malformed_names_rejected() -> None:
    ordered = _sql.parse_migration_names(["0002_b.sql", "0001_a.sql", "README"])
    assert [(v, n) for v, n, _ in ordered] == [(1, "a"), (2, "b")]
    with pytest.raises(_sql.SqlFileError, match="share version 0001"):
        _sql.parse_migration_names(["0001_a.sql", "0001_b.sql"])
    with pytest.raises(_sql.SqlFileError, match="NNNN_lower_snake_name"):
        _sql.parse_migration_names(["1_a.sql"])


def test_every_query_the_client_names_exists_in_queries_sql() -> None:
    # Every statement the clients run is named in their one body: _operations.py
    # and the two modules beside it (the workers registry, the operator's view).
    here = Path(_sql.__file__).parent
    body = "".join(
        (here / f).read_text()
        for f in ("_operations.py", "_registry.py", "_fleet.py", "_insights.py")
    )
    used = set(re.findall(r'(?:Statement|_one)\(\s*"([a-z0-9_]+)"', body))
    assert used and used <= set(_sql._queries()), used - set(_sql._queries())


def test_shipped_migrations_start_at_one_without_gaps() -> None:
    # A squash answers for the versions it replaces (0010_baseline: 1 to 10).
    covered = [v for m in _sql.migrations() for v in sorted(m.covers)]
    assert covered == list(range(1, len(covered) + 1))


def test_a_squash_names_the_versions_it_replaces_ending_at_its_own() -> None:
    squash = _sql.Migration(10, "baseline", "-- replaces: 0001-0010\nSELECT 1;")
    assert squash.covers == frozenset(range(1, 11))
    assert _sql.Migration(11, "more", "-- a comment\nSELECT 1;").covers == {11}
    with pytest.raises(_sql.SqlFileError, match="must end at its own version 0009"):
        _ = _sql.Migration(9, "wrong", "-- replaces: 0001-0010\nSELECT 1;").covers


def test_a_payload_over_the_size_limit_is_refused_at_enqueue_naming_the_limit() -> None:
    from corral.queue import PAYLOAD_MAX_BYTES, InvalidJob, JobSpec
    from corral.queue._params import enqueue_params

    fits = "x" * (PAYLOAD_MAX_BYTES - 20)
    enqueue_params([JobSpec("upload", {"data": fits})])  # just under: accepted
    with pytest.raises(
        InvalidJob, match=r"over the 1,048,576-byte limit \(corral.queue.PAYLOAD_MAX_BYTES\)"
    ):
        enqueue_params([JobSpec("upload", {"data": fits + "y" * 40})])


def test_a_payload_nested_too_deeply_to_encode_is_refused_at_enqueue() -> None:
    from corral.queue import InvalidJob, JobSpec
    from corral.queue._params import enqueue_params

    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InvalidJob, match="nested too deeply"):
        enqueue_params([JobSpec("deep", {"tree": deep})])


def test_the_claim_decoder_turns_a_payload_it_cannot_decode_into_undecodable() -> None:
    from corral.worker.connections import Undecodable, loads

    assert loads('{"a": [1, 2]}') == {"a": [1, 2]}
    bad = loads("[" * 5000 + "]" * 5000)  # jsonb takes it; Python's parser does not
    assert isinstance(bad, Undecodable) and "RecursionError" in bad.error


@pytest.mark.parametrize(
    ("ttl_s", "uses", "named"),
    [(0, 1, r"\(--ttl\) must be positive, such as 15m \(got 0s\)"),
     (900, 0, r"\(--uses\) must be at least 1 \(got 0\)")],
)  # fmt: skip
def test_a_bad_token_ttl_or_uses_names_the_flag(ttl_s: float, uses: int, named: str) -> None:
    with pytest.raises(InvalidJob, match=named):
        token_params("eu", None, ttl_s, uses)


def test_a_claimed_row_with_a_timestamp_python_cannot_load_carries_it_as_its_payload() -> None:
    import datetime as dt
    from typing import Any

    from corral.queue._params import claimed_leniently
    from corral.queue.records import Unloadable

    now = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    bad = Unloadable("run_at cannot be loaded (timestamp too small (before year 1))")
    row: tuple[Any, ...] = (7, "noop", "t", {}, 0, "", 1, 3, 11, now, now, bad, None)
    job = claimed_leniently(row)
    assert (job.id, job.lease_token, job.enqueued_at, job.region) == (7, 11, now, None)
    assert isinstance(job.run_at, dt.datetime)  # a stand-in: the job is dead-lettered anyway
    assert isinstance(job.payload, Unloadable) and job.payload.error.startswith(
        "run_at cannot be loaded (timestamp too small"
    )
    assert claimed_leniently((*row[:11], now, None)).payload == {}  # a sound row is as ever

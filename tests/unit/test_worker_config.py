"""`corral worker` settings: every mistake is named (flag and environment
variable) with its fix, and a database password is never shown."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from corral.queue.dsn import scrub_password
from corral.worker import config
from corral.worker.config import ConfigError, WorkerSettings, parse_queues

DSN = "postgresql://corral:s3cret-pw@db.example:5432/corral"


def settings(**overrides: object) -> WorkerSettings:
    raw: dict[str, object] = {"database_url": DSN, "queues": "emails"}
    raw.update(overrides)
    return WorkerSettings.from_raw(**raw)


def test_a_missing_database_url_names_the_flag_and_the_environment_variable() -> None:
    for missing in ("", None):
        with pytest.raises(
            ConfigError, match="--database-url / CORRAL_DATABASE_URL: no database URL"
        ):
            settings(database_url=missing)


@pytest.mark.parametrize(
    ("url", "named"),
    [
        # a non-numeric port is named as the wrong part of the URL
        ("postgresql://corral:s3cret-pw@db:abc/corral", "port 'abc'"),
        # a foreign scheme: it must be postgresql
        ("mysql://u:s3cret-pw@h/db", "scheme 'mysql' is not supported"),
        # an unknown parameter is named
        ("postgresql://u:s3cret-pw@h/db?sslmod=require", '"sslmod"'),
        # a bad sslmode: the valid ones are listed
        ("postgresql://u:s3cret-pw@h/db?sslmode=sometimes", "sslmode 'sometimes' is not one of"),
    ],
    ids=["port", "scheme", "parameter", "sslmode"],
)
def test_a_bad_database_url_names_what_is_wrong_and_never_its_password(
    url: str, named: str
) -> None:
    with pytest.raises(ConfigError, match=named) as err:
        settings(database_url=url)
    assert "s3cret-pw" not in str(err.value)


def test_settings_never_show_the_password_in_their_repr_or_safe_url() -> None:
    s = settings()
    assert "s3cret-pw" not in repr(s)
    assert "s3cret-pw" not in s.safe_database_url
    assert "***" in s.safe_database_url


def test_an_error_text_that_echoes_the_password_is_scrubbed_of_it() -> None:
    text = 'connection failed: password "s3cret-pw" rejected for postgresql://corral:s3cret-pw@db'
    assert "s3cret-pw" not in scrub_password(text, DSN)


def test_the_worker_leaves_psycopg_and_dsn_parsing_to_the_queue_package() -> None:
    # Only corral.queue talks to PostgreSQL; the worker goes through it.
    found = []
    for module in sorted(Path(config.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module] if isinstance(node, ast.ImportFrom) else []
                names += [alias.name for alias in node.names]
                found += [f"{module.name}: {n}" for n in names if n and n.startswith("psycopg")]
    assert found == []


def test_no_queue_at_all_asks_for_at_least_one() -> None:
    with pytest.raises(ConfigError, match="--queues / CORRAL_QUEUES: name at least one queue"):
        settings(queues="")


def test_queues_accept_commas_spaces_and_repeats_and_drop_duplicates() -> None:
    assert parse_queues(["a,b", "c a", " d "]) == ["a", "b", "c", "d"]
    assert settings(queues="x, y,x").queues == ["x", "y"]


def test_an_invalid_queue_name_is_quoted_in_the_error() -> None:
    with pytest.raises(ConfigError, match="queue name 'bad/name'"):
        settings(queues="ok,bad/name")


def test_a_concurrency_of_zero_is_refused_with_the_flag_named() -> None:
    with pytest.raises(ConfigError, match="--concurrency / CORRAL_CONCURRENCY"):
        settings(concurrency=0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("12", 12.0),
        ("1.5s", 1.5),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
    ],
)
def test_duration_flags_read_the_same_units_as_the_admin_cli(text: str, seconds: float) -> None:
    assert settings(drain_timeout_s=text).drain_timeout_s == seconds


def test_a_duration_without_a_known_unit_names_the_flag_and_explains_the_format() -> None:
    with pytest.raises(
        ConfigError,
        match=r"--drain-timeout / CORRAL_DRAIN_TIMEOUT: value '5 minutes' is not a duration: "
        r"write e\.g\. 30s",
    ):
        settings(drain_timeout_s="5 minutes")


def test_retention_defaults_to_a_week_reads_days_and_a_bad_one_is_named() -> None:
    assert settings().retention_s == 7 * 86400
    assert settings(retention_s="14d").retention_s == 14 * 86400
    assert settings(retention_s="0").retention_s == 0
    with pytest.raises(ConfigError, match="--retention / CORRAL_RETENTION"):
        settings(retention_s="forever")


def test_a_lease_longer_than_the_database_grants_is_refused_naming_the_flag() -> None:
    assert settings(lease_s="1h").lease_s == 3600
    refused = "--lease / CORRAL_LEASE: .*less than or equal to 3600"
    with pytest.raises(ConfigError, match=refused):
        settings(lease_s="2h")


def test_a_bad_drain_timeout_is_named() -> None:
    with pytest.raises(ConfigError, match="--drain-timeout / CORRAL_DRAIN_TIMEOUT"):
        settings(drain_timeout_s="soon")


def test_the_claim_batch_defaults_to_the_concurrency_capped_at_1000() -> None:
    assert settings(concurrency=20).claim_batch == 20
    assert settings(concurrency=2000).claim_batch == 1000
    assert settings(concurrency=2000, batch_size=100).claim_batch == 100


def test_the_enrollment_token_comes_from_the_environment_before_the_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert settings(enrollment_token_file=token_file).read_enrollment_token() == "from-file"
    both = settings(enrollment_token="from-env", enrollment_token_file=token_file)
    assert both.read_enrollment_token() == "from-env"


def test_an_unreadable_token_file_is_named_with_its_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match=f"--enrollment-token-file .*{missing}"):
        settings(enrollment_token_file=missing).read_enrollment_token()


# -- the quick check and the full model agree -------------------------------------

# Values as flags (click's types), CORRAL_* variables and TOML give them.
ACCEPTED: list[dict[str, object]] = [
    {},
    {"queues": ["a,b", "c a"], "region": "eu", "pool": "demo", "name": "w-1"},
    {"region": "", "pool": ""},
    {"concurrency": 10_000, "batch_size": 0, "http_port": -1, "http_host": "127.0.0.1"},
    {"concurrency": 1, "batch_size": 10_000, "http_port": 65535},
    {"state_dir": "/tmp/corral-state", "enrollment_token_file": Path("/run/token")},
    {"state_dir": Path("/var/lib/corral"), "enrollment_token": "tok"},
    {"handlers": "myapp.jobs, other:fn", "egress_deny": ["10.96.0.1:443", "*.internal"]},
    {"egress_allow": "169.254.169.254:80", "egress_deny": ("10.0.0.0/8",)},
    {"job_timeout_s": "30s", "drain_timeout_s": "0", "term_grace_s": 5, "lease_s": 2},
    {"heartbeat_interval_s": "1s", "lease_s": "2s", "poll_interval_s": 0.25},
    {"flush_interval_s": "1s", "retention_s": "14d", "stuck_share": 1},
    {"flush_interval_s": 0, "retention_s": 0, "stuck_share": 0.25, "poll_interval_s": "1d"},
]

# Each left to the model: out of bounds, missing, or of a type flags never give.
DECLINED: list[dict[str, object]] = [
    {"concurrency": 0},
    {"concurrency": True},
    {"concurrency": 2.0},
    {"concurrency": "10"},
    {"batch_size": 10_001},
    {"http_port": 65536},
    {"queues": ""},
    {"queues": [f"q{i}" for i in range(33)]},
    {"queues": "bad/name"},
    {"name": ""},
    {"name": "n" * 254},
    {"job_timeout_s": 0},
    {"job_timeout_s": "soon"},
    {"heartbeat_interval_s": 61},
    {"heartbeat_interval_s": "20s"},  # more than half of the 30 s lease
    {"lease_s": 0.5},
    {"flush_interval_s": 1.5},
    {"stuck_share": 0},
    {"stuck_share": "0.5"},
    {"drain_timeout_s": float("inf")},
    {"egress_deny": ["10.0.0.1/8"]},
    {"region": 5},
    {"unknown": 1},
    {"database_url": "mysql://u@h/db"},
]


@pytest.mark.parametrize("raw", ACCEPTED, ids=lambda raw: ",".join(raw) or "defaults")
def test_the_quick_check_takes_plain_values_as_the_full_model_does(raw: dict[str, object]) -> None:
    from corral.worker.settingsmodel import validate

    given = {"database_url": DSN, "queues": "emails", **raw}
    quick = config.quick_check(given)
    assert quick is not None
    assert quick == validate(given)
    assert {key: type(value) for key, value in quick.items()} == {
        key: type(value) for key, value in validate(given).items()
    }


@pytest.mark.parametrize("raw", DECLINED, ids=lambda raw: ",".join(raw))
def test_the_quick_check_leaves_every_doubtful_value_to_the_full_model(
    raw: dict[str, object],
) -> None:
    given = {"database_url": DSN, "queues": "emails", **raw}
    assert config.quick_check(given) is None


def test_a_missing_url_or_queue_is_left_to_the_model_too() -> None:
    assert config.quick_check({"queues": "q"}) is None
    assert config.quick_check({"database_url": DSN}) is None


def test_the_settings_have_the_full_models_fields_in_its_order() -> None:
    from corral.worker.settingsmodel import SettingsModel

    assert tuple(SettingsModel.model_fields) == WorkerSettings.FIELDS


def test_settings_are_frozen_and_compare_by_value() -> None:
    s = settings()
    with pytest.raises(AttributeError, match="frozen"):
        s.concurrency = 5
    assert s == settings()
    assert s != settings(concurrency=11)


def test_direct_construction_validates_with_the_full_models_error() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="concurrency"):
        WorkerSettings(database_url=DSN, queues=["q"], concurrency=0)

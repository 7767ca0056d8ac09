"""`corral worker --config FILE`: every worker setting from a TOML file.

`corral.worker.cli` reads the file with `load` and lays the flags and
`CORRAL_*` variables click found over it with `merge`: flags > environment >
file > defaults (click already puts a flag before its variable). The file's
keys are the flags' names without the dashes in front (`drain-timeout = "5m"`,
`queues = ["emails", "reports"]`); an unknown key is an error naming it, its
closest known key and the file. `WorkerSettings` validates the result as it
validates flags, so a bad value names its flag and variable.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from corral.worker.config import ConfigError

__all__ = ["KEYS", "LOG_LEVEL", "load", "merge"]

LOG_LEVEL = "log_level"  # read by the CLI, not a WorkerSettings field

# The file's key (a flag's name) -> the WorkerSettings field it fills. The
# enrollment token itself is never a key: put it in `enrollment-token-file`.
KEYS: dict[str, str] = {
    "database-url": "database_url",
    "queues": "queues",
    "region": "region",
    "pool": "pool",
    "concurrency": "concurrency",
    "batch-size": "batch_size",
    "name": "name",
    "state-dir": "state_dir",
    "http-host": "http_host",
    "http-port": "http_port",
    "enrollment-token-file": "enrollment_token_file",
    "handlers": "handlers",
    "job-timeout": "job_timeout_s",
    "drain-timeout": "drain_timeout_s",
    "term-grace": "term_grace_s",
    "heartbeat-interval": "heartbeat_interval_s",
    "poll-interval": "poll_interval_s",
    "flush-interval": "flush_interval_s",
    "lease": "lease_s",
    "retention": "retention_s",
    "stuck-share": "stuck_share",
    "egress-deny": "egress_deny",
    "egress-allow": "egress_allow",
    "log-level": LOG_LEVEL,
}
_SCALARS = (str, int, float, bool)


def load(path: Path) -> dict[str, Any]:
    """The file's settings, by WorkerSettings field. ConfigError names the
    file and the key (or the TOML syntax error's line)."""
    # Only a worker started with --config reads TOML (or suggests a key): the
    # others do not import tomllib and difflib on their way to the first claim.
    import difflib
    import tomllib

    try:
        with path.open("rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"--config {path}: not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    for key, value in document.items():
        field = KEYS.get(key.replace("_", "-"))
        if field is None:
            close = difflib.get_close_matches(key.replace("_", "-"), KEYS, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"--config {path}: unknown key {key!r}; {hint}the keys are the flags of "
                f"`corral worker --help` without their dashes: {', '.join(sorted(KEYS))}"
            )
        if field in values:
            raise ConfigError(f"--config {path}: key {key!r} is given twice (- and _ spellings)")
        if isinstance(value, list):
            if not all(isinstance(item, str) for item in value):
                raise ConfigError(f"--config {path}: {key!r} must be a list of strings")
        elif not isinstance(value, _SCALARS):
            raise ConfigError(
                f"--config {path}: {key!r} must be a string, number or boolean, "
                f"not a {type(value).__name__}"
            )
        values[field] = value
    return values


def merge(file_values: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """Flags and variables (`given`: None or () = not given) over the file's
    values; what neither sets keeps WorkerSettings' default."""
    merged = dict(file_values)
    merged.update({key: value for key, value in given.items() if value not in (None, ())})
    return merged

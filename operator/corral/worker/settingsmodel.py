"""The worker settings' full validation, as a pydantic model, and the wording
of its errors: what `corral.worker.config.WorkerSettings` falls back to for
any value its quick check does not take.

Imported only on that fallback (a bad setting, or a value of an unusual
type, such as a TOML boolean where a number belongs), so that pydantic stays
off a worker's way to its first claim (`make bench-start`). The rules
themselves are written once, in `corral.worker.config` (`BOUNDS`,
`DEFAULTS` and the field checks); this model applies them the way it always
did, so every error names the flag, its variable and the fix exactly as
before. `tests/unit/test_worker_config.py` checks that the quick check and
this model agree on what they both accept.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from corral.worker import config
from corral.worker.config import BOUNDS, DEFAULTS, ENV_VARS, ConfigError

__all__ = ["SettingsModel", "explain", "validate"]


def _ruled(name: str, **field: Any) -> Any:
    """`Field(**field)` with `name`'s bounds (`corral.worker.config.BOUNDS`)."""
    return Field(**{**field, **BOUNDS[name]})


class SettingsModel(BaseModel):
    """Everything `corral worker` needs, validated. Durations are in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = Field(repr=False)
    queues: list[str] = _ruled("queues")
    region: str | None = DEFAULTS["region"]
    # The WorkerPool that runs this worker (None: started by hand).
    pool: str | None = DEFAULTS["pool"]
    concurrency: int = _ruled("concurrency", default=DEFAULTS["concurrency"])
    # 0 -> min(concurrency, 1000)
    batch_size: int = _ruled("batch_size", default=DEFAULTS["batch_size"])
    name: str = _ruled("name", default_factory=socket.gethostname)
    state_dir: Path = Field(default_factory=config.default_state_dir)
    http_host: str = DEFAULTS["http_host"]
    # 0 = any free port, -1 = off
    http_port: int = _ruled("http_port", default=DEFAULTS["http_port"])
    enrollment_token: str | None = Field(default=DEFAULTS["enrollment_token"], repr=False)
    enrollment_token_file: Path | None = DEFAULTS["enrollment_token_file"]
    handlers: list[str] = Field(default_factory=list)
    job_timeout_s: float = _ruled("job_timeout_s", default=DEFAULTS["job_timeout_s"])
    drain_timeout_s: float = _ruled("drain_timeout_s", default=DEFAULTS["drain_timeout_s"])
    term_grace_s: float = _ruled("term_grace_s", default=DEFAULTS["term_grace_s"])
    heartbeat_interval_s: float = _ruled(
        "heartbeat_interval_s", default=DEFAULTS["heartbeat_interval_s"]
    )
    poll_interval_s: float = _ruled("poll_interval_s", default=DEFAULTS["poll_interval_s"])
    flush_interval_s: float = _ruled("flush_interval_s", default=DEFAULTS["flush_interval_s"])
    lease_s: float = _ruled("lease_s", default=DEFAULTS["lease_s"])
    retention_s: float = _ruled("retention_s", default=DEFAULTS["retention_s"])
    stuck_share: float = _ruled("stuck_share", default=DEFAULTS["stuck_share"])
    egress_deny: list[str] = Field(default_factory=list)
    egress_allow: list[str] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, value: str) -> str:
        return config.validate_dsn(value)

    @field_validator(*config.LISTS, mode="before")
    @classmethod
    def _lists(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str | list | tuple):
            # ValueError names the bad queue, module or egress rule.
            return config.LISTS[info.field_name](value)  # type: ignore[index]
        return value

    @field_validator(*config.DURATIONS, mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if isinstance(value, str):
            # DurationError is a ValueError: explain() names the flag.
            return config.seconds(value)
        return value

    @field_validator("region", "pool", mode="before")
    @classmethod
    def _region(cls, value: Any) -> Any:
        return value or None

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> SettingsModel:
        config.check_heartbeat_within_lease(self.heartbeat_interval_s, self.lease_s)
        return self


def validate(values: dict[str, Any]) -> dict[str, Any]:
    """Every field's value, validated (raises pydantic's ValidationError)."""
    return SettingsModel(**values).model_dump()


def explain(exc: ValidationError) -> ConfigError:
    """One message for all of `exc`'s problems, each naming its flag and
    environment variable (a database password never appears in one)."""
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        flag = "--" + field.removesuffix("_s").replace("_", "-")
        env = ENV_VARS.get(field)
        where = f"{flag} / {env}" if env else flag
        message = str(error["msg"]).removeprefix("Value error, ")
        if field == "database_url" and error["type"] == "missing":
            message = "no database URL; give one such as postgresql://corral@db.example:5432/corral"
        if field == "queues" and error["type"] in ("too_short", "missing"):
            message = "name at least one queue to claim from, e.g. --queues emails,reports"
        # validate_dsn already names the flag; don't say it twice.
        problems.append(message if message.startswith("--") or not field else f"{where}: {message}")
    return ConfigError("; ".join(problems))

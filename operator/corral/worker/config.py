"""Worker settings: one validated model built from `corral worker` flags and
their `CORRAL_*` environment fallbacks.

`corral.worker.cli` collects the raw values (click reads the environment) and
calls `WorkerSettings.from_raw`; the runtime only ever sees a validated
`WorkerSettings`. Every error names the flag, its environment variable and the
fix, and a database password never appears in one. Durations are read by
`corral.durations` and DSNs checked by `corral.queue.dsn`: the same code the
admin CLI uses.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from corral import egressrules, workerenv
from corral.durations import parse_duration
from corral.queue.dsn import DsnError, check_dsn, mask_dsn

_QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,63}$")
DEFAULT_RETENTION_S = 7 * 86400.0  # finished jobs are kept a week

# flag name -> environment variable, used to name both in error messages; the
# names are the operator-to-worker contract's (corral.workerenv).
ENV_VARS: dict[str, str] = workerenv.BY_SETTING


class ConfigError(ValueError):
    """A setting is wrong; the message names it and says how to fix it."""


def parse_queues(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """'a,b c' or ['a', 'b,c'] -> ['a', 'b', 'c'] (order kept, duplicates dropped)."""
    items = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for item in items:
        for name in re.split(r"[,\s]+", item.strip()):
            if name and name not in names:
                names.append(name)
    return names


def validate_dsn(dsn: str) -> str:
    """Check a PostgreSQL URL/conninfo offline; the error names the bad part
    (`corral.queue.check_dsn`) and the flag it came from."""
    where = f"--database-url / {ENV_VARS['database_url']}"
    try:
        return check_dsn(dsn)
    except DsnError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "corral"


class WorkerSettings(BaseModel):
    """Everything `corral worker` needs, validated. Durations are in seconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: str = Field(repr=False)
    queues: list[str] = Field(min_length=1, max_length=32)
    region: str | None = None
    # The WorkerPool that runs this worker (None: started by hand).
    pool: str | None = None
    concurrency: int = Field(default=10, ge=1, le=10_000)
    batch_size: int = Field(default=0, ge=0, le=10_000)  # 0 -> min(concurrency, 1000)
    name: str = Field(default_factory=socket.gethostname, min_length=1, max_length=253)
    state_dir: Path = Field(default_factory=default_state_dir)
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=8080, ge=-1, le=65535)  # 0 = any free port, -1 = off
    enrollment_token: str | None = Field(default=None, repr=False)
    enrollment_token_file: Path | None = None
    handlers: list[str] = Field(default_factory=list)
    job_timeout_s: float = Field(default=300.0, gt=0)
    # SIGQUIT: finish held jobs for this long, then hand back the rest.
    drain_timeout_s: float = Field(default=600.0, ge=0)
    # SIGTERM / SIGINT: a short grace, then hand back (the pod's preStop
    # hook has drained already by the time the kubelet sends SIGTERM).
    term_grace_s: float = Field(default=10.0, ge=0)
    heartbeat_interval_s: float = Field(default=1.0, gt=0, le=60)
    poll_interval_s: float = Field(default=1.0, gt=0, le=86_400)
    flush_interval_s: float = Field(default=0.002, ge=0, le=1)
    lease_s: float = Field(default=30.0, ge=1, le=86_400)
    # Finished jobs older than this are deleted by the fleet (one worker at a
    # time); 0 leaves retention to `corral jobs purge`.
    retention_s: float = Field(default=DEFAULT_RETENTION_S, ge=0)
    # A sync handler past its timeout keeps its thread (Python cannot stop
    # it): its slot is lost. Once this share of the slots is lost, the worker
    # hands back its other jobs and exits for Kubernetes to restart it.
    stuck_share: float = Field(default=0.5, gt=0, le=1)
    # The executor guard's extra rules (corral.egressrules): deny extends the
    # built-in refusals, allow opens targets a deny rule refuses.
    egress_deny: list[str] = Field(default_factory=list)
    egress_allow: list[str] = Field(default_factory=list)

    @field_validator("database_url")
    @classmethod
    def _dsn(cls, value: str) -> str:
        return validate_dsn(value)

    @field_validator("queues", mode="before")
    @classmethod
    def _queues(cls, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            value = parse_queues(value)
            for name in value:
                if not _QUEUE_NAME.match(name):
                    raise ValueError(
                        f"queue name {name!r} may only use letters, digits and _ . : - "
                        "(1 to 63 characters)"
                    )
        return value

    @field_validator("handlers", mode="before")
    @classmethod
    def _handlers(cls, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            return parse_queues(value)
        return value

    @field_validator("egress_deny", "egress_allow", mode="before")
    @classmethod
    def _egress(cls, value: Any) -> Any:
        if isinstance(value, str | list | tuple):
            rules = egressrules.parse_rules(value)  # ValueError names the rule
            return [rule.text for rule in rules]
        return value

    def egress_policy(self) -> egressrules.Policy:
        """The built-in refusals plus this worker's deny and allow rules."""
        return egressrules.Policy.build(
            egressrules.parse_rules(self.egress_deny), egressrules.parse_rules(self.egress_allow)
        )

    @field_validator(
        "job_timeout_s",
        "drain_timeout_s",
        "term_grace_s",
        "heartbeat_interval_s",
        "poll_interval_s",
        "flush_interval_s",
        "lease_s",
        "retention_s",
        mode="before",
    )
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if isinstance(value, str):
            # DurationError is a ValueError: from_raw names the flag.
            return parse_duration(value, what="value")
        return value

    @field_validator("region", "pool", mode="before")
    @classmethod
    def _region(cls, value: Any) -> Any:
        return value or None

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> WorkerSettings:
        if self.heartbeat_interval_s * 2 > self.lease_s:
            raise ValueError(
                f"--heartbeat-interval ({self.heartbeat_interval_s:g}s) must be at most half of "
                f"--lease ({self.lease_s:g}s), or held jobs lose their lease between heartbeats"
            )
        return self

    @property
    def claim_batch(self) -> int:
        """How many jobs one claim may take at most (the server caps a claim at
        1,000); `corral.worker.claimsize` sizes each claim up to it."""
        return self.batch_size or min(self.concurrency, 1000)

    @property
    def safe_database_url(self) -> str:
        return mask_dsn(self.database_url)

    @classmethod
    def from_raw(cls, **raw: Any) -> WorkerSettings:
        """Build from flag/env values (None = not given); errors name flag and env var."""
        given = {key: value for key, value in raw.items() if value is not None and value != ()}
        try:
            return cls(**given)
        except ConfigError:
            raise
        except ValidationError as exc:
            problems = []
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else ""
                flag = "--" + field.removesuffix("_s").replace("_", "-")
                env = ENV_VARS.get(field)
                where = f"{flag} / {env}" if env else flag
                message = str(error["msg"]).removeprefix("Value error, ")
                if field == "database_url" and error["type"] == "missing":
                    message = (
                        "no database URL; give one such as "
                        "postgresql://corral@db.example:5432/corral"
                    )
                if field == "queues" and error["type"] in ("too_short", "missing"):
                    message = "name at least one queue to claim from, e.g. --queues emails,reports"
                # validate_dsn already names the flag; don't say it twice.
                problems.append(
                    message if message.startswith("--") or not field else f"{where}: {message}"
                )
            raise ConfigError("; ".join(problems)) from None

    def read_enrollment_token(self) -> str | None:
        """The token from the environment/flag, else from the token file."""
        if self.enrollment_token:
            return self.enrollment_token.strip()
        if self.enrollment_token_file is not None:
            try:
                token = self.enrollment_token_file.read_text().strip()
            except OSError as exc:
                raise ConfigError(
                    f"--enrollment-token-file / {ENV_VARS['enrollment_token_file']}: "
                    f"cannot read {self.enrollment_token_file}: {exc.strerror}"
                ) from None
            return token or None
        return None

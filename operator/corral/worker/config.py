"""Worker settings: one validated, frozen record built from `corral worker`
flags, their `CORRAL_*` environment fallbacks and the `--config` file.

`corral.worker.cli` collects the raw values (click reads the environment) and
calls `WorkerSettings.from_raw`; the runtime only ever sees a validated
`WorkerSettings`. Every error names the flag, its environment variable and the
fix, and a database password never appears in one. Durations are read by
`corral.durations` and DSNs checked by `corral.queue.dsn`: the same code the
admin CLI uses.

The rules are written once, here (`BOUNDS`, `DEFAULTS`, the field checks).
A worker's start is on the path of every scale-up, so the values flags,
variables and TOML give (strings, numbers, lists of strings) within their
bounds are taken by a quick check of these rules; anything else (a bad
value, an unusual type) goes to the full pydantic model
(`corral.worker.settingsmodel`, imported only then), which decides and words
the error exactly as before.
"""

from __future__ import annotations

import math
import os
import re
import socket
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypedDict

from corral import egressrules, queuenames, workerenv
from corral.durations import parse_duration
from corral.queue.dsn import DsnError, check_dsn, mask_dsn

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


# -- the rules, once: the quick check and the full model both apply them ---------


class Bounds(TypedDict, total=False):
    """A field's bounds, as pydantic's `Field` names them."""

    ge: float
    gt: float
    le: float
    min_length: int
    max_length: int


# Field -> its bounds.
BOUNDS: dict[str, Bounds] = {
    "queues": {"min_length": 1, "max_length": 32},
    "concurrency": {"ge": 1, "le": 10_000},
    "batch_size": {"ge": 0, "le": 10_000},
    "name": {"min_length": 1, "max_length": 253},
    "http_port": {"ge": -1, "le": 65535},
    "job_timeout_s": {"gt": 0},
    # SIGQUIT: finish held jobs for this long, then hand back the rest.
    "drain_timeout_s": {"ge": 0},
    # SIGTERM / SIGINT: a short grace, then hand back (the pod's preStop
    # hook has drained already by the time the kubelet sends SIGTERM).
    "term_grace_s": {"ge": 0},
    "heartbeat_interval_s": {"gt": 0, "le": 60},
    "poll_interval_s": {"gt": 0, "le": 86_400},
    "flush_interval_s": {"ge": 0, "le": 1},
    # The database grants a lease of 1 s to 1 h (corral_claim_v5,
    # corral_heartbeat_v4): a longer --lease would be cut to an hour there
    # while the worker waited out the longer one before giving its jobs up.
    "lease_s": {"ge": 1, "le": 3_600},
    # Finished jobs older than this are deleted by the fleet (one worker at a
    # time); 0 leaves retention to `corral jobs purge`.
    "retention_s": {"ge": 0},
    # A sync handler past its timeout keeps its thread (Python cannot stop
    # it): its slot is lost. Once this share of the slots is lost, the worker
    # hands back its other jobs and exits for Kubernetes to restart it.
    "stuck_share": {"gt": 0, "le": 1},
}

# Field -> its default; `name` (the host name), `state_dir`, `handlers` and
# the egress rules get a fresh one each (FACTORIES).
DEFAULTS: dict[str, Any] = {
    "region": None,
    "pool": None,
    "concurrency": 10,
    "batch_size": 0,
    "http_host": "0.0.0.0",
    "http_port": 8080,
    "enrollment_token": None,
    "enrollment_token_file": None,
    "job_timeout_s": 300.0,
    "drain_timeout_s": 600.0,
    "term_grace_s": 10.0,
    "heartbeat_interval_s": 1.0,
    "poll_interval_s": 1.0,
    "flush_interval_s": 0.002,
    "lease_s": 30.0,
    "retention_s": DEFAULT_RETENTION_S,
    "stuck_share": 0.5,
}
FACTORIES: dict[str, Callable[[], Any]] = {
    "name": socket.gethostname,
    "state_dir": default_state_dir,
    "handlers": list,
    "egress_deny": list,
    "egress_allow": list,
}
DURATIONS = (
    "job_timeout_s",
    "drain_timeout_s",
    "term_grace_s",
    "heartbeat_interval_s",
    "poll_interval_s",
    "flush_interval_s",
    "lease_s",
    "retention_s",
)


def queue_names(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """`parse_queues`, each name checked (ValueError quotes a bad one)."""
    names = parse_queues(value)
    for name in names:
        if queuenames.problem(name) is not None:  # the CRD's and the admin commands' rule
            raise ValueError(f"queue name {queuenames.quoted(name)} may only use {queuenames.RULE}")
    return names


def egress_texts(value: str | list[str] | tuple[str, ...]) -> list[str]:
    """The executor guard's rules, each checked (ValueError names a bad one)."""
    return [rule.text for rule in egressrules.parse_rules(value)]


# The list fields: each one's parser of a comma-separated string or a list
# (ValueError names a bad item). The quick check and the model both use it.
LISTS: dict[str, Callable[[str | list[str] | tuple[str, ...]], list[str]]] = {
    "queues": queue_names,
    "handlers": parse_queues,
    "egress_deny": egress_texts,
    "egress_allow": egress_texts,
}


def seconds(text: str) -> float:
    """A duration flag's seconds (DurationError, a ValueError, explains the format)."""
    return parse_duration(text, what="value")


def check_heartbeat_within_lease(heartbeat_interval_s: float, lease_s: float) -> None:
    if heartbeat_interval_s * 2 > lease_s:
        raise ValueError(
            f"--heartbeat-interval ({heartbeat_interval_s:g}s) must be at most half of "
            f"--lease ({lease_s:g}s), or held jobs lose their lease between heartbeats"
        )


# -- the quick check ------------------------------------------------------------


class _Declined(Exception):
    """The quick check leaves this value to the full model."""


def _text(value: Any) -> str:
    if type(value) is not str:
        raise _Declined
    return value


def _strings(value: Any) -> str | list[str] | tuple[str, ...]:
    if type(value) is str:
        return value
    if type(value) in (list, tuple) and all(type(item) is str for item in value):
        return value  # type: ignore[no-any-return]
    raise _Declined


def _optional_text(value: Any) -> str | None:
    return None if value is None else _text(value)


def _integer(value: Any) -> int:
    if type(value) is not int:  # a bool, a float or a string: the model decides
        raise _Declined
    return value


def _number(value: Any) -> float:
    if type(value) not in (int, float) or not math.isfinite(value):
        raise _Declined
    return float(value)


def _duration(value: Any) -> float:
    return seconds(value) if type(value) is str else _number(value)


def _path(value: Any) -> Path:
    if type(value) is str or isinstance(value, Path):
        return Path(value)
    raise _Declined


def _listed(field: str) -> Callable[[Any], list[str]]:
    parse = LISTS[field]
    return lambda value: parse(_strings(value))


_QUICK: dict[str, Callable[[Any], Any]] = {
    "database_url": lambda value: validate_dsn(_text(value)),
    "queues": _listed("queues"),
    "region": lambda value: _optional_text(value) or None,
    "pool": lambda value: _optional_text(value) or None,
    "concurrency": _integer,
    "batch_size": _integer,
    "name": _text,
    "state_dir": _path,
    "http_host": _text,
    "http_port": _integer,
    "enrollment_token": _optional_text,
    "enrollment_token_file": lambda value: None if value is None else _path(value),
    "handlers": _listed("handlers"),
    **dict.fromkeys(DURATIONS, _duration),
    "stuck_share": _number,
    "egress_deny": _listed("egress_deny"),
    "egress_allow": _listed("egress_allow"),
}
FIELDS: tuple[str, ...] = tuple(_QUICK)


def _within(value: Any, bounds: Bounds) -> bool:
    if "ge" in bounds and not value >= bounds["ge"]:
        return False
    if "gt" in bounds and not value > bounds["gt"]:
        return False
    if "le" in bounds and not value <= bounds["le"]:
        return False
    if "min_length" in bounds and not len(value) >= bounds["min_length"]:
        return False
    return not ("max_length" in bounds and not len(value) <= bounds["max_length"])


def quick_check(values: Mapping[str, Any]) -> dict[str, Any] | None:
    """Every field's value when `values` holds only the plain kinds flags,
    variables and TOML give, each within its rules; None when any is
    missing, wrong or unusual (the full model then decides and says why)."""
    if "database_url" not in values or "queues" not in values:
        return None
    checked = dict(DEFAULTS)
    try:
        for key, value in values.items():
            check = _QUICK.get(key)
            if check is None:
                return None
            checked[key] = check(value)
        for key, factory in FACTORIES.items():
            if key not in values:
                checked[key] = factory()
        if not all(_within(checked[key], bounds) for key, bounds in BOUNDS.items()):
            return None
        check_heartbeat_within_lease(checked["heartbeat_interval_s"], checked["lease_s"])
    except Exception:  # _Declined, or a check's ValueError: the model words it
        return None
    return checked


# -- the settings ------------------------------------------------------------------


class WorkerSettings:
    """Everything `corral worker` needs, validated and frozen. Durations are
    in seconds. `WorkerSettings(database_url=..., queues=[...])` validates
    as `from_raw` does but raises the full model's `ValidationError`."""

    __slots__ = FIELDS
    FIELDS = FIELDS

    database_url: str
    queues: list[str]
    region: str | None
    pool: str | None  # the WorkerPool that runs this worker (None: started by hand)
    concurrency: int
    batch_size: int  # 0 -> min(concurrency, 1000)
    name: str
    state_dir: Path
    http_host: str
    http_port: int  # 0 = any free port, -1 = off
    enrollment_token: str | None
    enrollment_token_file: Path | None
    handlers: list[str]
    job_timeout_s: float
    drain_timeout_s: float
    term_grace_s: float
    heartbeat_interval_s: float
    poll_interval_s: float
    flush_interval_s: float
    lease_s: float
    retention_s: float
    stuck_share: float
    # The executor guard's extra rules (corral.egressrules): deny extends the
    # built-in refusals, allow opens targets a deny rule refuses.
    egress_deny: list[str]
    egress_allow: list[str]

    def __init__(self, **values: Any) -> None:
        checked = quick_check(values)
        if checked is None:
            from corral.worker.settingsmodel import validate

            checked = validate(values)
        self._fill(checked)

    def _fill(self, checked: Mapping[str, Any]) -> None:
        for key in FIELDS:
            object.__setattr__(self, key, checked[key])

    @classmethod
    def from_raw(cls, **raw: Any) -> WorkerSettings:
        """Build from flag/env values (None = not given); errors name flag and env var."""
        given = {key: value for key, value in raw.items() if value is not None and value != ()}
        checked = quick_check(given)
        if checked is None:
            from pydantic import ValidationError

            from corral.worker.settingsmodel import explain, validate

            try:
                checked = validate(given)
            except ConfigError:
                raise
            except ValidationError as exc:
                raise explain(exc) from None
        settings = cls.__new__(cls)
        settings._fill(checked)
        return settings

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"WorkerSettings is frozen: {key} cannot change")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"WorkerSettings is frozen: {key} cannot be deleted")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WorkerSettings):
            return NotImplemented
        return all(getattr(self, key) == getattr(other, key) for key in FIELDS)

    __hash__ = None  # type: ignore[assignment]  # lists inside: not hashable

    def __repr__(self) -> str:
        # Never the database URL (its password) nor the enrollment token.
        shown = (key for key in FIELDS if key not in ("database_url", "enrollment_token"))
        return f"WorkerSettings({', '.join(f'{key}={getattr(self, key)!r}' for key in shown)})"

    def as_json(self) -> dict[str, Any]:
        """Every field as JSON data (paths as strings), by field name."""
        return {
            key: str(value) if isinstance(value, Path) else value
            for key in FIELDS
            for value in [getattr(self, key)]
        }

    def egress_policy(self) -> egressrules.Policy:
        """The built-in refusals plus this worker's deny and allow rules."""
        return egressrules.Policy.build(
            egressrules.parse_rules(self.egress_deny), egressrules.parse_rules(self.egress_allow)
        )

    @property
    def claim_batch(self) -> int:
        """How many jobs one claim may take at most (the server caps a claim at
        1,000); `corral.worker.claimsize` sizes each claim up to it."""
        return self.batch_size or min(self.concurrency, 1000)

    @property
    def safe_database_url(self) -> str:
        return mask_dsn(self.database_url)

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

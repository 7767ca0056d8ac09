"""The operator's settings: `corral operator` flags with `CORRAL_*` environment
fallbacks (the Helm chart sets the environment; see charts/corral/templates/deployment.yaml).

Built once by `corral.controller.cli` and handed to the reconciler.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass, field

from corral._version import __version__
from corral.queue.dsn import DsnError, check_dsn, mask_dsn, scrub_password

DEFAULT_WORKER_IMAGE = f"ghcr.io/corral-dev/corral-worker:{__version__}"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


class OperatorConfigError(ValueError):
    """A setting is wrong; the message names the flag, its variable and the fix."""


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the reconciler needs to know about its installation."""

    database_url: str = field(repr=False)
    # The URL workers use (a member of corral_worker only; `corral db
    # create-worker-role`), copied into the enrollment Secret of every pool
    # that names no spec.database. Never the operator's own URL: None leaves
    # such pools Degraded until one is given.
    worker_database_url: str | None = field(default=None, repr=False)
    worker_image: str = DEFAULT_WORKER_IMAGE
    default_region: str = "default"
    create_default_region: bool = True
    default_region_display_name: str = "Default"
    namespace: str = "default"  # where the operator runs (its Lease lives here)
    identity: str = field(default_factory=socket.gethostname)  # leader-election holder
    watch_namespaces: tuple[str, ...] = ()  # empty: every namespace
    lease_name: str | None = "corral-operator-leader"  # None: no leader election
    http_port: int = 8080  # /metrics and /healthz; 0 = any free port, -1 = off
    resync_s: float = 10.0  # how often every pool and region is re-read (seconds)
    # Workers removed or silent, and tokens dead, this long are deleted (0: never).
    registry_retention_s: float = 7 * 86_400.0

    def __post_init__(self) -> None:
        if not self.database_url:
            raise OperatorConfigError(
                "--database-url / CORRAL_DATABASE_URL is not set; give the PostgreSQL URL "
                "of the queue (postgresql://user:password@host:5432/dbname)"
            )
        urls = [("--database-url / CORRAL_DATABASE_URL", self.database_url)]
        if self.worker_database_url is not None:
            urls.append(
                ("--worker-database-url / CORRAL_WORKER_DATABASE_URL", self.worker_database_url)
            )
        for flag, url in urls:
            try:
                check_dsn(url)
            except DsnError as exc:  # its message never holds the password
                raise OperatorConfigError(f"{flag}: {exc}") from None
        if not _DNS_LABEL.match(self.default_region):
            raise OperatorConfigError(
                f"--default-region / CORRAL_DEFAULT_REGION {self.default_region!r} is not a "
                "DNS label; use lower-case letters, digits and '-'"
            )
        for namespace in self.watch_namespaces:
            if not _DNS_LABEL.match(namespace):
                raise OperatorConfigError(
                    f"--namespace / CORRAL_WATCH_NAMESPACES: {namespace!r} is not a namespace name"
                )
        if self.worker_database_url is not None and self.worker_database_url == self.database_url:
            raise OperatorConfigError(
                "--worker-database-url / CORRAL_WORKER_DATABASE_URL is the operator's own URL: "
                "workers must connect as a worker role (create one with "
                "`corral db create-worker-role NAME`)"
            )
        if self.resync_s <= 0:
            raise OperatorConfigError("--resync must be a positive number of seconds")
        if self.registry_retention_s and self.registry_retention_s < 3600:
            raise OperatorConfigError(
                "--registry-retention / CORRAL_REGISTRY_RETENTION must be at least 1h (or 0 "
                "to keep every row): a shorter age would delete workers that are only restarting"
            )

    def mask(self, text: str) -> str:
        """`text` without the password of either database URL, and with any
        password-looking part of a DSN masked: what the operator logs."""
        text = scrub_password(text, self.database_url)
        if self.worker_database_url:
            text = scrub_password(text, self.worker_database_url)
        return mask_dsn(text)

    @property
    def clusterwide(self) -> bool:
        return not self.watch_namespaces

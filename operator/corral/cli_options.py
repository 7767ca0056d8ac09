"""Click options that `corral operator` and `corral worker` declare alike: an
option read from an environment variable when its flag is not given, and the
two flags they share (`corral dashboard` declares its own `--database-url`,
whose help says the URL is never shown on a page).

Imported by `corral.controller.cli` and `corral.worker.cli`. A leaf beside
`corral.workerenv` (it imports click and that contract, nothing else of
corral), so every command module may import it under the import contracts,
and a worker's start imports nothing more for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
from click.decorators import FC

from corral import workerenv
from corral.workerenv import LOG_LEVELS

__all__ = ["LOG_LEVELS", "database_url_option", "env_option", "log_level_option"]


def env_option(*param_decls: str, envvar: str, **attrs: Any) -> Callable[[FC], FC]:
    """`click.option` falling back to the variable `envvar`, which `--help` names."""
    return click.option(*param_decls, envvar=envvar, show_envvar=True, **attrs)


def database_url_option() -> Callable[[FC], FC]:
    """`--database-url` ($CORRAL_DATABASE_URL) of the operator and the worker."""
    return env_option(
        "--database-url", envvar=workerenv.DATABASE_URL, help="PostgreSQL URL of the queue."
    )


def log_level_option(**attrs: Any) -> Callable[[FC], FC]:
    """`--log-level` ($CORRAL_LOG_LEVEL) of the operator and the worker; each
    says its default its own way."""
    return env_option(
        "--log-level",
        envvar=workerenv.LOG_LEVEL,
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        **attrs,
    )

"""A worker's start once its settings are read, shared by `corral worker`
(click, `corral.worker.cli`) and the console script's way for a bare
`corral worker`, every pod's command (its settings all in CORRAL_*
variables, set by the operator): `start_from_environment()` reads those
variables as click's options would and starts the worker without importing
click, 10-15 ms of a scaled-up worker's way to its first claim
(`make bench-start`).

Whatever that way cannot take as it is (a variable whose value does not
convert, a setting the checks refuse, `CORRAL_WORKER_CONFIG`, a handler
module that does not load) it leaves to click, which reads the same
variables again and reports the error as `corral worker` always has.
`tests/unit/test_worker_launch.py` keeps the two readings equal.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from corral import workerenv
from corral.worker import configfile
from corral.worker.config import LISTS, ConfigError, WorkerSettings

if TYPE_CHECKING:  # the runtime itself is imported by `prepared`
    from corral.worker.runtime import Worker

__all__ = [
    "CONVERTED",
    "configure_logging",
    "given_by_environment",
    "prepared",
    "run",
    "settings_from",
    "start_from_environment",
]

# The settings whose click option converts its value (by WorkerSettings
# field); the others are strings, and the fields of config.LISTS are
# repeated options, their variables split at whitespace as click splits them.
CONVERTED: dict[str, Callable[[str], Any]] = {
    "concurrency": int,
    "batch_size": int,
    "http_port": int,
    "stuck_share": float,
    "state_dir": Path,
    "enrollment_token_file": Path,
}


def given_by_environment() -> dict[str, Any] | None:
    """The settings the CORRAL_* variables give, by WorkerSettings field
    (plus configfile.LOG_LEVEL), as `corral worker`'s options would read
    them with no flag given; None when click should read them instead."""
    if os.environ.get(workerenv.WORKER_CONFIG):
        return None  # a --config file: click checks the path, then the file is read
    given: dict[str, Any] = {}
    for field in configfile.KEYS.values():
        if field == configfile.LOG_LEVEL:
            text = os.environ.get(workerenv.LOG_LEVEL)
            if text:
                if text.upper() not in workerenv.LOG_LEVELS:
                    return None
                given[field] = text.upper()
            continue
        text = os.environ.get(workerenv.BY_SETTING[field])
        if not text:  # unset or empty: not given (click's rule)
            continue
        if field in LISTS:
            if items := text.split():
                given[field] = items
        elif field in CONVERTED:
            try:
                given[field] = CONVERTED[field](text)
            except ValueError:
                return None
        else:
            given[field] = text
    return given


def settings_from(given: dict[str, Any], config_file: Path | None) -> tuple[WorkerSettings, str]:
    """The settings (flags and variables in `given`, over the file's) and the
    log level; ConfigError names what is wrong."""
    from_file = configfile.load(config_file) if config_file is not None else {}
    values = configfile.merge(from_file, given)
    log_level = str(values.pop(configfile.LOG_LEVEL, None) or "INFO")
    values["enrollment_token"] = os.environ.get(workerenv.ENROLLMENT_TOKEN) or None
    return WorkerSettings.from_raw(**values), log_level


def configure_logging(log_level: str) -> None:
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def prepared(settings: WorkerSettings) -> Worker:
    """The worker, its handlers loaded (ValueError or TypeError when one is
    not: a module that does not import, a name clash)."""
    from corral.worker.egress import Guard
    from corral.worker.executors import build_registry
    from corral.worker.runtime import Worker

    guard = Guard(settings.egress_policy())
    runner = Worker(settings, build_registry(settings, guard), guard)
    runner.exit_hard_if_stuck = True
    return runner


def run(runner: Worker) -> NoReturn:
    """Run the worker until it stops, then exit with its code."""
    from corral.worker.stopping import exit_now

    code = asyncio.run(runner.run())
    if any(t.name.startswith("corral-job") and t.is_alive() for t in threading.enumerate()):
        # A sync handler still runs in a thread; its job was handed back to the
        # queue, so exit without joining it (it must not hold us past the deadline).
        exit_now(code)
    sys.exit(code)


def start_from_environment() -> None:
    """Run the worker the CORRAL_* variables describe, or return (having
    started nothing) for click to read and report them."""
    given = given_by_environment()
    if given is None:
        return
    try:
        settings, log_level = settings_from(given, None)
    except ConfigError:
        return
    configure_logging(log_level)
    try:
        runner = prepared(settings)
    except (ValueError, TypeError):
        return
    run(runner)

"""The `corral` command line: one entry point for the operator, the worker and
the admin commands.

Sub-command groups live in their own modules and are imported lazily, so that
`corral --help` stays fast and `corral worker` never imports kopf. A module is
added by naming it, and its commands, in `_COMMANDS`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from corral._version import __version__
from corral.entry import resume_collector

# module -> {command: one-line help shown by `corral --help`}; the command is
# the module's attribute of the same name.
_COMMANDS: dict[str, dict[str, str]] = {
    "corral.admin.audit": {
        "audit": "The dashboard's audit trail: who did what to which job, queue or worker (list)",
    },
    "corral.admin.config": {
        "config": "Named database contexts for these commands (set-context, use-context, get-contexts, view, delete-context)",
    },
    "corral.admin.cli": {
        "db": "The queue's schema and the workers' login roles (migrate, status, create-worker-role)",
        "jobs": "Enqueue, list, get, cancel, requeue and purge jobs",
        "stats": "Jobs per queue and state, oldest waiting job",
        "dispatch": "Pause or resume claims per queue, or of all (pause, resume, status)",
        "tokens": "Worker enrollment tokens (create, list, revoke)",
        "workers": "The worker registry: list, drain, resume, restart, remove",
    },
    "corral.admin.schedules": {
        "schedules": "Recurring jobs: every N seconds or cron "
        "(create, list, get, pause, resume, delete, run-now, next)",
    },
    "corral.admin.queues": {
        "queues": "Per-queue settings: attempts, retry back-off, retention caps (list, set)",
    },
    "corral.admin.regions": {
        "regions": "Regions: live workers, pools and jobs waiting in each (list)",
    },
    "corral.dashboard.cli": {
        "dashboard": "Serve the web dashboard (queues, jobs, workers, pools, schedules, dispatch)",
    },
    "corral.worker.cli": {"worker": "Run a queue worker (or drain one: worker prestop)"},
    "corral.controller.cli": {
        "operator": "Run the Kubernetes operator (WorkerPools, Regions)",
    },
}
# command -> its module
_MODULE_OF = {name: module for module, names in _COMMANDS.items() for name in names}
# command -> its help, in the order `corral --help` lists them
_HELP = dict(sorted((n, text) for names in _COMMANDS.values() for n, text in names.items()))


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_MODULE_OF})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _MODULE_OF:
            command = getattr(importlib.import_module(_MODULE_OF[cmd_name]), cmd_name)
            assert isinstance(command, click.Command)
            if cmd_name != "worker":
                # The worker resumes it once its first claim is sent (corral.entry).
                resume_collector()
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl(list(_HELP.items()))


_EXIT_CODES = """\b
Exit codes of the admin commands:
  0  success
  1  the operation failed: the database, or the live state refused it
     (a region with no worker, a worker that cannot resume)
  2  bad usage or input: the same command fails again as typed
  3  the named job, worker, token, schedule or group does not exist
`corral worker --help` lists the worker's own."""


@click.group(
    cls=_LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=_EXIT_CODES,
)
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral runs fleets of PostgreSQL-queue workers on Kubernetes."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="corral")

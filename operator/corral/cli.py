"""The `corral` command line: one entry point for the operator, the worker and
the admin commands.

Sub-command groups live in their own modules and are imported lazily, so that
`corral --help` stays fast and `corral worker` never imports kopf. A module is
added by naming it in `_COMMANDS`.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from corral._version import __version__
from corral.entry import resume_collector

# name -> (module, one-line help shown by `corral --help`); the command is the
# module's attribute of the same name.
_COMMANDS: dict[str, tuple[str, str]] = {
    "audit": (
        "corral.admin.audit",
        "The audit trail: who did what to which job, queue or worker (list)",
    ),
    "config": (
        "corral.admin.config",
        "Named database contexts for these commands (set-context, use-context, view)",
    ),
    "db": ("corral.admin.cli", "Create and inspect the queue's schema (migrate, status)"),
    "jobs": ("corral.admin.cli", "Enqueue, list, get, cancel and requeue jobs"),
    "schedules": (
        "corral.admin.schedules",
        "Recurring jobs: every N seconds or cron (create, list, pause, run-now, next)",
    ),
    "queues": (
        "corral.admin.queues",
        "Per-queue settings: attempts, retry back-off, retention caps (list, set)",
    ),
    "stats": ("corral.admin.cli", "Jobs per queue and state, oldest waiting job"),
    "dispatch": ("corral.admin.cli", "Pause or resume claims per queue (or all)"),
    "tokens": ("corral.admin.cli", "Mint, list and revoke worker enrollment tokens"),
    "workers": ("corral.admin.cli", "The worker registry: list, drain, resume, restart, remove"),
    "regions": ("corral.admin.regions", "Regions: live workers, pools and jobs waiting in each"),
    "dashboard": (
        "corral.dashboard.cli",
        "Serve the web dashboard (queues, jobs, workers, pools, schedules, dispatch)",
    ),
    "worker": ("corral.worker.cli", "Run a queue worker (or drain one: worker prestop)"),
    "operator": ("corral.controller.cli", "Run the Kubernetes operator (WorkerPools, Regions)"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS:
            module, _ = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(module), cmd_name)
            assert isinstance(command, click.Command)
            if cmd_name != "worker":
                # The worker resumes it once its first claim is sent (corral.entry).
                resume_collector()
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, _COMMANDS[name][1]) for name in sorted(_COMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="corral")
def cli() -> None:
    """corral runs fleets of PostgreSQL-queue workers on Kubernetes."""


def main(argv: list[str] | None = None) -> Any:
    return cli.main(args=argv if argv is not None else sys.argv[1:], prog_name="corral")

"""The admin commands: `corral db|jobs|stats|dispatch|tokens|workers`
(`corral schedules` is beside it, in `corral.admin.schedules`, and `corral
regions` in `corral.admin.regions`).

Registered in `corral/cli.py` (`_COMMANDS`). Every command takes
`--database-url` (else CORRAL_DATABASE_URL, else the current context of
`corral config`, `corral.admin.config`) and talks to PostgreSQL only
through `corral.queue.Queue`. Listings print kubectl-like tables, or JSON /
YAML with `-o`. Exit codes (`corral --help` and the README say the same): 0
success, 1 the operation failed (connection, or the live state refused it:
a region with no worker, a worker that cannot resume), 2 bad usage or input
(the same command fails again as typed), 3 the named job / worker / token /
schedule / group does not exist.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import click
from click.decorators import FC

from corral import queuenames
from corral.admin._output import FORMATS, ago, emit, plain
from corral.durations import DurationError, format_age, parse_duration
from corral.queue import groups, migrations, roles
from corral.queue.client import Queue
from corral.queue.dsn import ENV_VAR, DsnError, UrlError, mask_dsn
from corral.queue.errors import (
    EmptyRegion,
    GroupNotFound,
    InvalidJob,
    JobNotFound,
    MigrationError,
    QueueError,
    ScheduleNotFound,
    TokenNotFound,
    WorkerNotFound,
    WorkerStateError,
)
from corral.queue.records import Job, JobGroup, JobState, Worker, WorkerState

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 1, 2, 3
# The largest counts the database stores (integer, bigint columns and LIMIT).
INT4_MAX, INT8_MAX = 2**31 - 1, 2**63 - 1
# The longest DURATION an admin command takes: a time it adds to now stays
# within what Python's datetime and PostgreSQL's timestamptz hold.
MAX_DURATION_S, MAX_DURATION = 36500 * 86400.0, "36500d (100 years)"
_CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


class _Failed(click.ClickException):
    """The operation failed (exit 1); the message is masked of passwords."""

    def __init__(self, message: str) -> None:
        super().__init__(mask_dsn(message))


class _BadInput(_Failed):
    exit_code = EXIT_USAGE


class _NotFound(_Failed):
    exit_code = EXIT_NOT_FOUND


def _handled(command: Callable[P, R]) -> Callable[P, R]:
    """Turn corral's errors into one clear line and an exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (JobNotFound, WorkerNotFound, TokenNotFound, ScheduleNotFound, GroupNotFound) as exc:
            raise _NotFound(str(exc)) from None
        except EmptyRegion as exc:  # the live state (no worker there now), not the input
            raise _Failed(str(exc)) from None
        except (InvalidJob, DurationError) as exc:
            raise _BadInput(str(exc)) from None
        except UrlError as exc:  # malformed, or refused by the server: say whose URL
            raise _Failed(f"{exc}{_url_source()}") from None
        except (DsnError, MigrationError, QueueError) as exc:
            raise _Failed(str(exc)) from None
        except Exception as exc:  # psycopg errors and the like: one line, masked
            if isinstance(exc, click.ClickException | click.exceptions.Exit | click.Abort):
                raise
            raise _Failed(f"{type(exc).__name__}: {exc}") from None

    return wrapper


def _database_option(command: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "--database-url",
        envvar=ENV_VAR,
        metavar="URL",
        callback=_database_url,
        help=f"PostgreSQL URL or conninfo; else env {ENV_VAR}; else the current context of "
        "`corral config` ($XDG_CONFIG_HOME/corral/config.toml).",
    )(command)


# Where the command's URL came from (ctx.meta key): "--database-url",
# "CORRAL_DATABASE_URL" or "context NAME"; a URL error names it.
_URL_SOURCE = "corral.database_url_from"


def _database_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """The flag's URL, else the variable's (click read it), else the current
    context's (`corral config use-context`); None when there is none. Notes
    in `ctx.meta` which one it was, for `_url_source`."""
    if value:
        given = param.name and ctx.get_parameter_source(param.name)
        from_env = given == click.core.ParameterSource.ENVIRONMENT
        ctx.meta[_URL_SOURCE] = ENV_VAR if from_env else "--database-url"
        return value
    from corral.admin.config import current_context

    try:
        current = current_context()
    except DsnError as exc:
        raise _Failed(str(exc)) from None
    if current is None:
        return None
    name, url = current
    ctx.meta[_URL_SOURCE] = f"context {name}"
    return url


def _url_source() -> str:
    """ " (from SOURCE)" for the running command's database URL; "" when unknown."""
    ctx = click.get_current_context(silent=True)
    source = ctx.meta.get(_URL_SOURCE) if ctx is not None else None
    return f" (from {source})" if source else ""


# How often a long call (`_with_progress`) says it is still at work.
PROGRESS_EVERY_S = 5.0


def _with_progress(work: Callable[[], T], say: Callable[[float], str]) -> T:
    """`work()`, saying `say(seconds so far)` on stderr every
    `PROGRESS_EVERY_S` while it runs (nothing when it is quicker); its
    value, or its exception. It runs on a thread of its own, the only one
    using the command's connection meanwhile."""
    outcome: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            outcome.append((True, work()))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    thread = threading.Thread(target=run, name="corral-admin-call", daemon=True)
    started = time.monotonic()
    thread.start()
    while True:
        thread.join(PROGRESS_EVERY_S)
        if not thread.is_alive():
            break
        click.echo(say(time.monotonic() - started), err=True)
    done, value = outcome[0]
    if not done:
        raise value
    result: T = value
    return result


# What a command says when none of the three gives a URL.
_NO_URL = (
    f"no database URL: pass --database-url, set {ENV_VAR}, or create a context with "
    "`corral config set-context NAME --database-url URL` "
    "(for example postgresql://corral@db.example:5432/corral)"
)


def _output_option(command: Callable[P, R]) -> Callable[P, R]:
    return click.option(
        "-o",
        "--output",
        type=click.Choice(FORMATS),
        default="table",
        help="Output format.",
    )(command)


@contextmanager
def _queue(database_url: str | None) -> Iterator[Queue]:
    if not database_url:
        raise DsnError(_NO_URL)
    with Queue.connect(database_url) as queue:
        yield queue


def _change_command(
    group: click.Group,
    name: str,
    target: Callable[[Callable[..., None]], Callable[..., None]],
    description: str,
    change: Callable[[Queue, T], R],
    said: Callable[[T, R], str],
) -> None:
    """`corral GROUP NAME TARGET`: one change through the queue (`change`),
    then one line saying what it did (`said`). `target` is the command's
    `click.argument("target", ...)`."""

    @group.command(name, help=description)
    @target
    @_database_option
    @_handled
    def command(target: T, database_url: str | None) -> None:
        with _queue(database_url) as queue:
            result = change(queue, target)
        click.echo(said(target, result))


def _list_command(
    group: click.Group,
    description: str,
    fetch: Callable[[Queue], list[T]],
    headers: list[str],
    row: Callable[[T], list[Any]],
    shown: Callable[[T], Any] = lambda record: record,
) -> None:
    """`corral GROUP list`: what `fetch` reads, as a table of `row`s under
    `headers`, or (-o json|yaml) each record as `shown`."""

    @group.command("list", help=description)
    @_output_option
    @_database_option
    @_handled
    def command(output: str, database_url: str | None) -> None:
        with _queue(database_url) as queue:
            found = fetch(queue)
        emit(output, [shown(r) for r in found], headers, [row(r) for r in found])


_ID = click.argument("target", type=int, metavar="ID")  # a job's or a worker's


def _at_most(maximum: int) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """Callback of an integer option: above `maximum` (what the database's
    column holds) exits 2 naming the option, not with the server's `integer
    out of range` (exit 1). A callback, not IntRange's max, so that --help
    does not print a ten-digit range."""

    def check(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
        if isinstance(value, int) and value > maximum:
            raise click.BadParameter(f"{value} is more than {maximum:,}, the most it takes")
        return value

    return check


def _duration_option(
    flag: str, help: str, *, unit_required: bool = False, **options: Any
) -> Callable[[FC], FC]:
    """Option `flag`, a DURATION (30s, 5m, 7d) the command gets in seconds;
    a bad one exits 2 naming `flag` and a valid value, and so does one
    longer than `MAX_DURATION`. `unit_required`: a bare number (seconds
    elsewhere) is refused, for a flag where reading 7 as seven seconds would
    delete what the user meant to keep."""

    def convert(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
        if value is None:
            return None
        if unit_required and value.strip().replace(".", "", 1).isdigit():
            raise click.BadParameter(
                f"{flag} {value!r} has no unit: write {value.strip()}d for days, "
                f"{value.strip()}h for hours, or {value.strip()}s if seconds are meant"
            )
        try:
            seconds = parse_duration(value, what=flag)
        except DurationError as exc:
            raise click.BadParameter(str(exc)) from None
        if seconds > MAX_DURATION_S:
            raise click.BadParameter(
                f"{flag} {value!r} is longer than {MAX_DURATION}, the longest it takes"
            )
        return seconds

    return click.option(flag, callback=convert, metavar="DURATION", help=help, **options)


def _queue_names(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """Callback of an option or argument naming queues (a name, or a repeated
    option's names, each maybe comma-separated): a name no worker could claim
    from (`corral.queuenames`) exits 2 naming the option."""
    given = [value] if isinstance(value, str) else list(value or ())
    for text in given:
        for name in text.split(",") if isinstance(value, tuple) else [text]:
            if name.strip() and (why := queuenames.problem(name.strip())) is not None:
                raise click.BadParameter(why)
    return value


def _default_queue(kind: str) -> str:
    """The queue a job of KIND goes to without --queue: KIND itself, which
    must then be a queue name (exit 2 naming KIND and --queue)."""
    why = queuenames.problem(kind)
    if why is not None:
        raise click.BadParameter(
            f"{why}; a job's queue defaults to its KIND: give --queue Q", param_hint="KIND"
        )
    return kind


# -- db ----------------------------------------------------------------------


@click.group(context_settings=_CONTEXT)
def db() -> None:
    """Create and inspect corral's schema."""


@db.command("migrate")
@_database_option
@_handled
def db_migrate(database_url: str | None) -> None:
    """Apply the migrations this database lacks.

    Safe to run from several processes at once: they take turns.
    """
    if not database_url:
        raise DsnError(_NO_URL)
    url = database_url
    applied = _with_progress(
        lambda: migrations.migrate(url),
        # One transaction under an advisory lock: a wait is, most likely, for that lock.
        lambda s: (
            f"db migrate: still at it after {s:.0f}s: waiting for another `corral db "
            "migrate` to finish (it holds the migration lock), or applying a long migration"
        ),
    )
    names = {m.version: m.name for m in migrations.migrations()}
    for version in applied:
        click.echo(f"applied {version:04d}_{names[version]}")
    latest = max(names) if names else 0
    click.echo(f"database schema is at version {latest:04d}")


@db.command("status")
@_database_option
@_output_option
@click.option("--check", is_flag=True, help="Exit 1 when a migration is pending or changed.")
@_handled
def db_status(database_url: str | None, output: str, check: bool) -> None:
    """Show which migrations the database has."""
    if not database_url:
        raise DsnError(_NO_URL)
    rows = migrations.status(database_url)

    def state(s: migrations.MigrationStatus) -> str:
        if not s.applied:
            return "pending"
        return "applied" if s.checksum_matches else "changed-after-apply"

    emit(
        output,
        [{**plain(s), "state": state(s)} for s in rows],
        ["VERSION", "NAME", "STATE", "APPLIED"],
        [[f"{s.version:04d}", s.name, state(s), plain(s.applied_at)] for s in rows],
    )
    if check and any(state(s) != "applied" for s in rows):
        raise _Failed("the database schema is not current: run `corral db migrate`")


@db.command("create-worker-role")
@click.argument("name")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the role's password from the first line of stdin (an empty one is refused; "
    "default: a random one, printed in the DSN).",
)
@click.option(
    "--secret-name",
    default="corral-worker-database",
    help="Name of the Kubernetes Secret the printed kubectl command creates.",
)
@click.option(
    "-n",
    "--namespace",
    default="corral-system",
    help="Namespace the printed kubectl command creates the Secret in: the operator's "
    "(the README's quick start installs it in corral-system), or a pool's.",
)
@_database_option
@_handled
def db_create_worker_role(
    name: str, password_stdin: bool, secret_name: str, namespace: str, database_url: str | None
) -> None:
    """Create (or reset the password of) login role NAME for workers.

    NAME becomes a member of the corral_worker group only: it may call the
    worker functions and nothing else (no table, no admin function). Run it
    with the admin URL after `corral db migrate`; it prints the workers' DSN
    and the kubectl command that stores it in a Secret for the operator's
    `workerDatabase.secretName` (chart) or a pool's spec.database.secretRef.
    """
    if not database_url:
        raise DsnError(_NO_URL)
    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise _BadInput(
                "--password-stdin: stdin gave an empty password: pipe one in "
                "(printf '%s' \"$PASSWORD\" | corral db create-worker-role NAME --password-stdin), "
                "or leave out --password-stdin for a random one"
            )
    role = roles.create_worker_role(database_url, name, password)
    verb = "created" if role.created else "updated (password reset)"
    click.echo(f"role {role.name} {verb}: member of {roles.WORKER_GROUP} only", err=True)
    click.echo(role.dsn)
    click.echo(
        "store it for the workers (in the namespace of the operator, or of each pool):\n"
        f"  kubectl -n {namespace} create secret generic {secret_name} "
        "--from-literal=url='<the DSN above>'",
        err=True,
    )


# -- jobs ----------------------------------------------------------------------


@click.group(context_settings=_CONTEXT)
def jobs() -> None:
    """Enqueue, list, inspect, cancel, requeue and purge jobs."""


def _read_payload(payload: str | None) -> Any:
    if payload is None:
        return {}
    source = "PAYLOAD"
    if payload == "-":
        payload, source = sys.stdin.read(), "PAYLOAD from stdin"
    try:
        return json.loads(payload)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            """quote it for the shell, e.g. '{"url": "https://example.com"}'""",
            param_hint="PAYLOAD",
        ) from None


def _parse_time(
    _ctx: click.Context, _param: click.Parameter, value: str | None
) -> dt.datetime | None:
    if value is None:
        return None
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 time; write e.g. 2030-01-31T09:00:00Z"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@jobs.command("enqueue")
@click.argument("kind")
@click.argument("payload", required=False)
@click.option(
    "--queue",
    "queue_name",
    metavar="Q",
    callback=_queue_names,
    help=f"Queue to put it on (default: KIND); {queuenames.RULE}.",
)
@click.option(
    "--priority", type=click.IntRange(-1000, 1000), default=0, help="-1000..1000, higher first."
)
@_duration_option("--delay", "Run after this long (30s, 5m).")
@click.option("--run-at", callback=_parse_time, metavar="TIME", help="Run at this ISO 8601 time.")
@click.option("--region", metavar="R", help="Only workers of this region may run it.")
@click.option(
    "--regions",
    metavar="R1,R2,...",
    help="Fan out: one job per region under a group; prints the group id (g-<n>).",
)
@click.option(
    "--rule",
    type=click.Choice([r.value for r in groups.Rule]),
    help="With --regions: when the group succeeded: every region's job completed (all, "
    "the default), one did (any), or more than half did (majority).",
)
@click.option(
    "--allow-empty-region",
    is_flag=True,
    help="Enqueue even for a region where no worker heartbeats (or none serves the queue) "
    "and no pool can start one.",
)
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    callback=_at_most(INT4_MAX),
    help="Attempt budget (default: the queue's).",
)
@click.option("--dedupe-key", metavar="K", help="Skip if an unfinished job has this key.")
@click.option(
    "--result-queue",
    metavar="Q",
    callback=_queue_names,
    help="When the job completes, enqueue its result on Q as a job of kind 'result' "
    "(exactly once; see docs/queue.md).",
)
@_duration_option("--expires-in", "Give up if not started within this long.")
@_database_option
@_handled
def jobs_enqueue(
    kind: str,
    payload: str | None,
    queue_name: str | None,
    priority: int,
    delay: float | None,
    run_at: dt.datetime | None,
    region: str | None,
    regions: str | None,
    rule: str | None,
    allow_empty_region: bool,
    max_attempts: int | None,
    dedupe_key: str | None,
    result_queue: str | None,
    expires_in: float | None,
    database_url: str | None,
) -> None:
    """Enqueue a job and print its id.

    KIND names the handler that runs it; PAYLOAD is JSON ('-' reads stdin).
    A job for a --region where no worker heartbeats, or none serves its queue,
    is refused (exit 1, naming the regions that have workers or the queues the
    region serves) unless --allow-empty-region.
    With --regions iad,fra,sin it enqueues one job per region under a group
    and prints the group's id (g-<n>); `corral jobs get g-<n>` shows each
    region's outcome and the group's status by --rule.

    \b
    Examples:
      corral jobs enqueue send-email '{"to": "a@example.com"}' --queue email
      corral jobs enqueue report - --delay 10m < payload.json
      corral jobs enqueue nightly-sync --dedupe-key sync-2030-01-31 --max-attempts 3
      corral jobs enqueue http '{"url": "https://example.com"}' --regions iad,fra
    """
    if delay is not None and run_at is not None:
        raise click.UsageError("--delay and --run-at both say when to run: give one")
    if regions is not None and (region is not None or dedupe_key is not None):
        raise click.UsageError(
            "--regions fans out one job per region: leave out --region and --dedupe-key"
        )
    if rule is not None and regions is None:
        raise click.UsageError("--rule rolls up a fan-out: give --regions R1,R2,... with it")
    if queue_name is None:
        _default_queue(kind)
    data = _read_payload(payload)
    now = dt.datetime.now(dt.UTC)
    if delay:
        run_at = now + dt.timedelta(seconds=delay)
    expires_at = None if expires_in is None else now + dt.timedelta(seconds=expires_in)
    # What a single job and a fan-out's jobs both take.
    options: dict[str, Any] = {
        "queue": queue_name, "priority": priority, "run_at": run_at, "expires_at": expires_at,
        "max_attempts": max_attempts, "allow_empty_region": allow_empty_region,
    }  # fmt: skip
    with _queue(database_url) as queue:
        if regions is not None:
            group = queue.enqueue_group(
                kind, data, regions=regions.split(","), rule=rule or "all", **options
            )
            click.echo(group.name)
            return
        # Ids only grow: a job no newer than the newest before the call
        # already held the key (the queue returns its id, enqueuing nothing).
        newest = queue.list_jobs(limit=1) if dedupe_key is not None else []
        job_id = queue.enqueue(
            kind, data, region=region, dedupe_key=dedupe_key, result_queue=result_queue, **options
        )
    click.echo(job_id)
    if newest and job_id <= newest[0].id:
        click.echo(
            f"job {job_id} already holds --dedupe-key {dedupe_key!r} (it is unfinished): "
            "nothing was enqueued",
            err=True,
        )


_JOB_HEADERS = [
    "ID",
    "KIND",
    "QUEUE",
    "STATE",
    "PRIORITY",
    "ATTEMPTS",
    "REGION",
    "AGE",
    "LAST-ERROR",
]


def _result_text(result: Any) -> str | None:
    """A result on one table line: compact JSON, cut at 60 characters."""
    if result is None:
        return None
    text = json.dumps(result, separators=(",", ":"), sort_keys=True)
    return text if len(text) <= 60 else text[:59] + "…"


def _job_row(job: Job) -> list[Any]:
    error = (job.last_error or "").splitlines()[0][:60] if job.last_error else None
    return [
        job.id,
        job.kind,
        job.queue,
        job.state,
        job.priority,
        f"{job.attempt}/{job.max_attempts}",
        job.region,
        format_age(ago(job.enqueued_at)),
        error,
    ]


@jobs.command("list")
@click.option("--queue", "queue_name", metavar="Q", help="Only this queue.")
@click.option("--state", type=click.Choice([s.value for s in JobState]), help="Only this state.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    callback=_at_most(INT8_MAX),
    default=50,
    help="Show at most this many jobs.",
)
@_output_option
@_database_option
@_handled
def jobs_list(
    queue_name: str | None, state: str | None, limit: int, output: str, database_url: str | None
) -> None:
    """List the newest jobs.

    Finished jobs are included until retention deletes them.

    \b
    Examples:
      corral jobs list --state dead
      corral jobs list --queue email --limit 200 -o json
    """
    with _queue(database_url) as queue:
        # One more than shown, to know whether the listing is cut.
        found = queue.list_jobs(queue=queue_name, state=state, limit=min(limit + 1, INT8_MAX))
    emit(output, found[:limit], _JOB_HEADERS, [_job_row(j) for j in found[:limit]])
    if len(found) > limit:
        click.echo(f"showing {limit}; --limit N for more", err=True)


@jobs.command("get")
@click.argument("ident", metavar="ID")
@_output_option
@_database_option
@_handled
def jobs_get(ident: str, output: str, database_url: str | None) -> None:
    """Show one job and, once it completed, what its handler returned; or,
    for a group id (g-<n>), each region's job and the group's status.

    Use -o yaml or -o json for every field: the payload, the whole result
    and the last error.
    """
    group_id = groups.parse_group_id(ident)
    if group_id is None and not ident.strip().isdigit():
        raise _BadInput(f"ID {ident!r}: give a job id (123) or a group id (g-12)")
    with _queue(database_url) as queue:
        if group_id is not None:
            _show_group(output, queue.get_group(group_id))
            return
        job = queue.get_job(int(ident))
    emit(output, job, [*_JOB_HEADERS, "RESULT"], [[*_job_row(job), _result_text(job.result)]])


def _show_group(output: str, group: JobGroup) -> None:
    rows = [
        [
            group.name,
            group.rule,
            group.status,
            j.region,
            j.job_id,
            j.state or "purged",
            j.attempt,
            (j.last_error or "").splitlines()[0][:60] if j.last_error else None,
        ]
        for j in group.jobs
    ]
    headers = ["GROUP", "RULE", "STATUS", "REGION", "JOB", "STATE", "ATTEMPTS", "LAST-ERROR"]
    emit(output, {**plain(group), "name": group.name}, headers, rows)


_change_command(
    jobs,
    "cancel",
    _ID,
    "Cancel a job that has not started yet.",
    Queue.cancel,
    lambda job_id, _: f"job {job_id} cancelled",
)
_change_command(
    jobs,
    "requeue",
    _ID,
    """Requeue a dead, cancelled or expired job.

    The job goes back to pending with a fresh attempt budget.
    """,
    Queue.requeue,
    lambda job_id, job: f"job {job_id} requeued ({job.max_attempts} attempts)",
)


@jobs.command("purge")
@_duration_option(
    "--older-than",
    "Delete finished jobs that finished longer ago than this: 7d, 12h (a unit is required).",
    unit_required=True,
    required=True,
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    callback=_at_most(INT4_MAX),
    default=10_000,
    help="Rows deleted per statement.",
)
@_database_option
@_handled
def jobs_purge(older_than: float, batch: int, database_url: str | None) -> None:
    """Delete old finished jobs (retention).

    Deletes jobs that finished longer ago than --older-than, in batches.
    Running workers do this on their own (`corral worker --retention`,
    default 7d); this command is for a fleet that runs with --retention 0,
    or to make room now.
    """
    age = next(
        (f"{older_than / unit:g}{name}" for unit, name in ((86400, "d"), (3600, "h"), (60, "m"))
         if older_than % unit == 0),
        f"{older_than:g}s",
    )  # fmt: skip
    with _queue(database_url) as queue:
        deleted = _with_progress(
            lambda: queue.purge_finished(older_than, batch=batch),
            lambda s: (
                f"jobs purge: still deleting finished jobs older than {age} "
                f"(batches of {batch}; {s:.0f}s so far)"
            ),
        )
    click.echo(f"deleted {deleted} finished job(s)")


# -- stats -----------------------------------------------------------------------


_STAT_STATES = [
    JobState.SCHEDULED,
    JobState.PENDING,
    JobState.RUNNING,
    JobState.COMPLETED,
    JobState.DEAD,
    JobState.CANCELLED,
    JobState.EXPIRED,
]


@click.command(context_settings=_CONTEXT)
@_output_option
@_database_option
@_handled
def stats(output: str, database_url: str | None) -> None:
    """Jobs per queue and state, and how long the oldest ready job has waited."""
    with _queue(database_url) as queue:
        found = queue.stats()
    # Every state in JSON/YAML too, 0 included, as the table shows them.
    found = [
        dataclasses.replace(s, counts={st: s.counts.get(st, 0) for st in _STAT_STATES})
        for s in found
    ]
    emit(
        output,
        found,
        ["QUEUE", "PAUSED", *[s.value.upper() for s in _STAT_STATES], "OLDEST-WAIT"],
        [
            [
                s.queue,
                "yes" if s.paused else "no",
                *[s.counts.get(st, 0) for st in _STAT_STATES],
                format_age(s.oldest_pending_age_s) if s.oldest_pending_age_s is not None else "-",
            ]
            for s in found
        ],
    )


# -- dispatch --------------------------------------------------------------------


@click.group(context_settings=_CONTEXT)
def dispatch() -> None:
    """Pause or resume claims per queue (or all); enqueues keep landing."""


_queue_target = click.option(
    "--queue",
    "queue_name",
    metavar="Q",
    callback=_queue_names,
    help="The queue (default: every queue).",
)


@dispatch.command("pause")
@_queue_target
@click.option("-m", "--message", "reason", metavar="REASON", help="Why (shown by status).")
@_database_option
@_handled
def dispatch_pause(queue_name: str | None, reason: str | None, database_url: str | None) -> None:
    """Stop claims from a queue (or all).

    Durable until resume; enqueues keep landing, running jobs finish.
    """
    with _queue(database_url) as queue:
        queue.pause(queue_name, reason)
    click.echo(f"{'queue ' + queue_name if queue_name else 'all queues'} paused")


@dispatch.command("resume")
@_queue_target
@_database_option
@_handled
def dispatch_resume(queue_name: str | None, database_url: str | None) -> None:
    """Let workers claim again.

    Without --queue, every pause is cleared.
    """
    with _queue(database_url) as queue:
        paused = {s.queue for s in queue.dispatch_status(queue_name) if s.paused}
        if queue_name is not None and queue_name not in paused:
            # As pause takes any name, resume is idempotent: exit 0, no row made.
            if "*" in paused:
                click.echo(
                    f"queue {queue_name} was not paused on its own: every queue is paused; "
                    "`corral dispatch resume` (no --queue) resumes them all"
                )
            else:
                click.echo(f"queue {queue_name} was not paused: nothing to resume")
            return
        queue.resume(queue_name)
    click.echo(f"{'queue ' + queue_name if queue_name else 'all queues'} resumed")
    if queue_name is not None and "*" in paused:
        click.echo(
            "every queue is still paused: `corral dispatch resume` resumes them all", err=True
        )


@dispatch.command("status")
@_queue_target
@_output_option
@_database_option
@_handled
def dispatch_status(queue_name: str | None, output: str, database_url: str | None) -> None:
    """Show which queues are paused, since when and why."""
    with _queue(database_url) as queue:
        found = [s for s in queue.dispatch_status(queue_name) if s.paused]
    if output == "table" and not found:
        click.echo("dispatch: running (no queue is paused)")
        return
    emit(
        output,
        found,
        ["QUEUE", "PAUSED", "SINCE", "REASON"],
        [
            ["(all)" if s.queue == "*" else s.queue, "yes", format_age(ago(s.since)), s.reason]
            for s in found
        ],
    )


# -- tokens ----------------------------------------------------------------------


@click.group(context_settings=_CONTEXT)
def tokens() -> None:
    """Mint, list and revoke worker enrollment tokens."""


@tokens.command("create")
@click.option("--region", required=True, metavar="R", help="Region the enrolled worker serves.")
@click.option("--pool", metavar="P", help="WorkerPool the worker belongs to.")
@_duration_option("--ttl", "How long it can be used.", default="15m")
@click.option(
    "--uses",
    type=click.IntRange(min=1),
    callback=_at_most(INT4_MAX),
    default=1,
    help="How many workers it can enroll.",
)
@click.option(
    "--queue",
    "queues",
    multiple=True,
    metavar="Q",
    callback=_queue_names,
    help="Queues the enrolled workers may serve (repeat, or comma-separated as for "
    "`corral worker -q`); unset: any queue.",
)
@click.option(
    "-o",
    "--output",
    type=click.Choice(["token", "json", "yaml"]),
    default="token",
    help="token prints only the secret.",
)
@_database_option
@_handled
def tokens_create(
    region: str,
    pool: str | None,
    ttl: float,
    uses: int,
    queues: tuple[str, ...],
    output: str,
    database_url: str | None,
) -> None:
    """Mint an enrollment token.

    The secret is printed once (stdout) and stored only as a hash. With
    --queue, a worker enrolled with it serves those queues only.

    \b
    Examples:
      corral tokens create --region eu
      corral tokens create --region eu --ttl 1h --uses 5 --queue email,reports
    """
    # a,b is two queues, as `corral worker -q a,b` serves (a queue's name has no comma).
    names = [name.strip() for given in queues for name in given.split(",") if name.strip()]
    with _queue(database_url) as queue:
        new = queue.create_token(region, pool=pool, ttl_s=ttl, uses=uses, queues=names or None)
    if output == "token":
        click.echo(new.secret)
        click.echo(
            f"token {new.info.display_prefix}… for region {region}"
            f"{' pool ' + pool if pool else ''}: {uses} use(s), expires {plain(new.info.expires_at)}."
            " Give it to the worker as CORRAL_ENROLLMENT_TOKEN; it is not shown again.",
            err=True,
        )
    else:
        emit(output, {"secret": new.secret, **plain(new.info)}, [], [])


@tokens.command("list")
@click.option(
    "--all", "include_all", is_flag=True, help="Include expired, used-up and revoked tokens."
)
@_output_option
@_database_option
@_handled
def tokens_list(include_all: bool, output: str, database_url: str | None) -> None:
    """List tokens that can still enroll a worker.

    Secrets are never shown; --all adds expired, spent and revoked ones.
    """
    with _queue(database_url) as queue:
        found = queue.list_tokens(include_unusable=include_all)
    now = dt.datetime.now(dt.UTC)
    emit(
        output,
        found,
        ["ID", "PREFIX", "REGION", "POOL", "USES-LEFT", "EXPIRES-IN", "STATE"],
        [
            [
                t.id,
                t.display_prefix,
                t.region,
                t.pool,
                t.uses_remaining,
                format_age((t.expires_at - now).total_seconds())
                if t.expires_at > now
                else "expired",
                "usable" if t.usable else ("revoked" if t.revoked_at else "spent"),
            ]
            for t in found
        ],
    )


@tokens.command("revoke")
@click.argument("target", metavar="TOKEN")
@click.option(
    "--remove-workers",
    is_flag=True,
    help="Also remove every worker the token enrolled (TOKEN column of `workers list`): "
    "the response to a leaked token.",
)
@_database_option
@_handled
def tokens_revoke(target: str, remove_workers: bool, database_url: str | None) -> None:
    """Revoke a token by ID or PREFIX (see tokens list).

    The workers it enrolled keep running unless --remove-workers removes
    them too (their credentials stop working; their running jobs are retried).
    """
    with _queue(database_url) as queue:
        token_id = queue.revoke_token(target)
        if not remove_workers:
            click.echo(f"token {token_id} revoked")
            return
        removed = queue.remove_token_workers(token_id)
    click.echo(f"token {token_id} revoked; {removed} worker(s) it enrolled removed")


# -- workers ---------------------------------------------------------------------


@click.group(context_settings=_CONTEXT)
def workers() -> None:
    """The worker registry: list, drain, resume, restart, remove.

    WORKER is a worker's ID or its NAME, as `workers list` shows them.
    """


@workers.command("list")
@click.option("--all", "include_all", is_flag=True, help="Include removed workers.")
@_output_option
@_database_option
@_handled
def workers_list(include_all: bool, output: str, database_url: str | None) -> None:
    """List enrolled workers, their state, load and heartbeat.

    STATE is active, draining, drained, restarting (a `workers restart`
    under way) or removed.
    """
    with _queue(database_url) as queue:
        found = queue.list_workers(include_removed=include_all)
    emit(
        output,
        [{**plain(w), "state": w.shown_state} for w in found],
        [
            "ID",
            "NAME",
            "REGION",
            "POOL",
            "QUEUES",
            "STATE",
            "IN-FLIGHT",
            "HEARTBEAT",
            "VERSION",
            "TOKEN",
        ],
        [
            [
                w.id,
                w.name,
                w.region,
                w.pool,
                ",".join(w.queues),
                w.shown_state,
                f"{w.in_flight}/{w.concurrency}",
                f"{format_age(ago(w.last_heartbeat))} ago" if w.last_heartbeat else None,
                w.version,
                w.token_id,
            ]
            for w in found
        ],
    )


# A worker by its ID or its NAME (the pod's name, as `workers list` shows it).
_WORKER = click.argument("target", metavar="WORKER")


def _worker_id(queue: Queue, target: str) -> int:
    """The ID of the worker `target` names: an ID, or the name of one worker
    not removed (a removed worker's name may be a new pod's again)."""
    if target.strip().isdigit():
        return int(target)
    named = [w for w in queue.list_workers() if w.name == target]
    if not named:
        raise WorkerNotFound(f"no worker is named {target!r} (see `corral workers list`)")
    if len(named) > 1:
        ids = ", ".join(str(w.id) for w in named)
        raise _BadInput(f"{len(named)} workers are named {target!r} (IDs {ids}): pass the ID")
    return named[0].id


def _worker_change(name: str, description: str, change: Callable[[Queue, int], Worker]) -> None:
    """`corral workers NAME WORKER`: one registry change, then the worker's new state."""

    def changed(queue: Queue, target: str) -> Worker:
        return change(queue, _worker_id(queue, target))

    _change_command(
        workers,
        name,
        _WORKER,
        description,
        changed,
        lambda _target, worker: f"worker {worker.id} ({worker.name}) is {worker.shown_state}",
    )


@workers.command("drain")
@_WORKER
@click.option(
    "--wait",
    is_flag=True,
    help="Wait until the worker is drained, saying on stderr every few seconds how many "
    "jobs it still holds.",
)
@_duration_option("--timeout", "With --wait: how long to wait (then exit 1).", default="1h")
@_database_option
@_handled
def workers_drain(target: str, wait: bool, timeout: float, database_url: str | None) -> None:
    """Ask a worker to finish what it holds and stop claiming.

    A worker started by hand (not in a WorkerPool) then exits 0; a pool's
    worker stays up, not ready, for the operator. Undo with `workers resume`.

    \b
    Examples:
      corral workers drain 7
      corral workers drain demo-69d5d78ddc-pplj6   # by NAME, as workers list shows it
      corral workers drain 7 --wait --timeout 10m
    """
    with _queue(database_url) as queue:
        worker = queue.request_drain(_worker_id(queue, target))
        click.echo(f"worker {worker.id} ({worker.name}) is {worker.shown_state}")
        if wait:
            _wait_drained(queue, worker, timeout)


def _wait_drained(queue: Queue, worker: Worker, timeout_s: float) -> None:
    """Poll the registry until `worker` is drained (or removed), then say so;
    exit 1 when its drain is undone or `timeout_s` passes first."""
    started = said = time.monotonic()
    while worker.state not in (WorkerState.DRAINED, WorkerState.REMOVED):
        now = time.monotonic()
        if worker.state == WorkerState.ACTIVE:
            raise _Failed(f"worker {worker.id} is active again: its drain was undone")
        if now - started > timeout_s:
            raise _Failed(
                f"worker {worker.id} still {worker.shown_state} with {worker.in_flight} job(s) "
                f"in flight after {timeout_s:g}s"
            )
        if now - said >= PROGRESS_EVERY_S:  # stderr: stdout keeps the result lines
            said = now
            click.echo(
                f"worker {worker.id} ({worker.name}): {worker.shown_state}, "
                f"{worker.in_flight} job(s) in flight ({now - started:.0f}s)",
                err=True,
            )
        time.sleep(0.5)
        worker = queue.get_worker(worker.id)
    click.echo(f"worker {worker.id} ({worker.name}) is {worker.shown_state}")


@workers.command("resume")
@_WORKER
@_database_option
@_handled
def workers_resume(target: str, database_url: str | None) -> None:
    """Undo a drain asked for through the registry: the worker claims again.

    Applies to a drain asked for through the registry (`workers drain`,
    `workers restart`, the operator's scaler), while the worker drains, or
    while a pool's worker stays up drained; not to a worker draining on its
    own (SIGTERM, preStop). A worker started by hand whose `workers drain`
    finished has exited: resume marks it to be active once it is started
    again (with the same --state-dir), shown as restarting until then.
    """
    with _queue(database_url) as queue:
        worker_id = _worker_id(queue, target)
        try:
            worker = queue.resume_worker(worker_id)
        except WorkerStateError:
            found = queue.get_worker(worker_id)
            if found.state == WorkerState.DRAINED and found.drain_requested_by == "restart":
                raise _Failed(
                    f"cannot resume worker {worker_id}: its restart finished its drain, and it "
                    "exits (code 75) for its supervisor to start it again; started again "
                    "(same --state-dir) it is active, with nothing to resume"
                ) from None
            if not _exited_after_an_admin_drain(found):
                raise
            # Its row stays drained by an admin across a restart; a restart's
            # drain is the one `corral_authenticate_v2` forgets when the
            # worker signs in again, so make the finished drain a restart's.
            worker = queue.request_restart(worker_id)
            click.echo(
                f"worker {worker.id} ({worker.name}) is {worker.shown_state}: it finished its "
                "drain and exited (not in a pool); it is active once it is started again "
                "with the same --state-dir"
            )
            return
    click.echo(f"worker {worker.id} ({worker.name}) is {worker.shown_state}")


def _exited_after_an_admin_drain(worker: Worker) -> bool:
    """A worker started by hand (no pool) whose `workers drain` finished: it
    exited 0, and its row would keep it drained when it is started again."""
    return (
        worker.pool is None
        and worker.state == WorkerState.DRAINED
        and worker.drain_requested_by == "admin"
    )


_worker_change(
    "restart",
    """Drain a worker, then have it exit for its supervisor to start it again.

    It exits with code 75 once drained; restarted, it re-authenticates with
    the credential in its state directory (no new enrollment) and is active.
    """,
    lambda queue, worker_id: queue.request_restart(worker_id),
)


_change_command(
    workers,
    "remove",
    _WORKER,
    """Remove a worker (by ID or NAME) from the fleet.

    Its credential stops working and its running jobs are retried.
    """,
    lambda queue, target: queue.remove_worker(_worker_id(queue, str(target))),
    lambda _target, worker: f"worker {worker.id} ({worker.name}) removed",
)

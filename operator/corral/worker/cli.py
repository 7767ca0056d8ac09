"""`corral worker`: run a worker, or (from a pod's preStop hook) drain it.

Registered in `corral.cli._COMMANDS`. `corral worker [OPTIONS]` runs the
runtime (`corral.worker.runtime.Worker`); `corral worker prestop` asks the
local worker to drain through its HTTP endpoint and waits until it reports
`drained` — the hook Kubernetes runs before it sends SIGTERM.

Every option has a `CORRAL_*` environment fallback (shown in `--help`).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from click.decorators import FC

from corral import workerenv
from corral.cli_options import LOG_LEVELS, database_url_option, env_option, log_level_option
from corral.durations import DurationError, parse_duration
from corral.entry import resume_collector
from corral.worker import configfile, launch
from corral.worker.config import DURATIONS, LISTS, ConfigError, WorkerSettings

# launch.CONVERTED's conversions as click types: one declaration of each
# setting's type for the flag, its variable and a pod's bare start.
_CLICK_TYPES: dict[Any, click.ParamType[Any]] = {
    int: click.INT,
    float: click.FLOAT,
    Path: click.Path(path_type=Path),
}


# How often `worker prestop` says, while it waits, where the drain is.
PROGRESS_EVERY_S = 5.0


def _seconds(value: str, flag: str) -> float:
    """A DURATION flag's value in seconds; a bad one exits 2 naming the flag."""
    try:
        return parse_duration(value, what=flag)
    except DurationError as exc:
        raise click.BadParameter(str(exc)) from None


def _setting(*param_decls: str, **attrs: Any) -> Callable[[FC], FC]:
    """The option of a WorkerSettings field, named by its flag: its variable
    is the field's (`configfile.KEYS`, then `workerenv.BY_SETTING`), and the
    flag of a list field (`config.LISTS`) may be repeated, and its type is the
    one a pod's bare start converts the variable with (`launch.CONVERTED`)."""
    field = configfile.KEYS[param_decls[0].removeprefix("--")]
    if field in launch.CONVERTED:
        attrs["type"] = _CLICK_TYPES[launch.CONVERTED[field]]
    if field in DURATIONS:
        attrs.setdefault("metavar", "DURATION")  # as the admin commands' durations read
    return env_option(
        *param_decls, envvar=workerenv.BY_SETTING[field], multiple=field in LISTS, **attrs
    )


@click.group(
    "worker",
    invoke_without_command=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@database_url_option()
@_setting(
    "--queues",
    "-q",
    help="Queues to claim from (comma-separated or repeated).",
)
@_setting("--region", help="Region this worker runs in; must match its enrollment token's region.")
@_setting(
    "--pool",
    help="The WorkerPool running this worker (set by the operator). A worker outside a pool "
    "exits 0 once a `corral workers drain` finishes; one in a pool stays up, not ready.",
)
@_setting("--concurrency", "-c", help="Jobs in flight at once [default: 10].")
@_setting(
    "--batch-size",
    help=(
        "Most jobs per claim; claims start small and grow to this while the queue is deep, "
        "or take up to this at once while jobs finish faster than a claim "
        "[default: min(concurrency, 1000)]."
    ),
)
@_setting("--name", help="Worker name (pod name) [default: hostname].")
@_setting(
    "--state-dir",
    help="Where the worker keeps its credential [default: ~/.local/state/corral].",
)
@_setting("--http-host", help="Endpoint address [default: 0.0.0.0].")
@_setting(
    "--http-port",
    help="Port of /metrics, /healthz, /readyz, POST /drain; 0 = any, -1 = off [default: 8080].",
)
@_setting(
    "--enrollment-token-file",
    help="File holding the enrollment token (else CORRAL_ENROLLMENT_TOKEN).",
)
@_setting(
    "--handlers",
    help="Modules defining @corral.handler functions (module or module:function).",
)
@_setting("--job-timeout", help="Default per-job timeout, e.g. 30s or 5m [default: 5m].")
@_setting(
    "--drain-timeout",
    help="On SIGQUIT, how long held jobs may finish before the rest are handed back "
    "[default: 10m].",
)
@_setting(
    "--term-grace",
    help="On SIGTERM or SIGINT, how long held jobs may finish before the rest are handed "
    "back [default: 10s].",
)
@_setting(
    "--heartbeat-interval",
    help="How often the worker tells the registry it lives and renews the leases running "
    "low; at most half of --lease [default: 1s].",
)
@_setting("--poll-interval", help="Polling fallback when no NOTIFY arrives [default: 1s].")
@_setting("--flush-interval", help="How long completions gather before one write [default: 2ms].")
@_setting(
    "--lease",
    help="How long a claimed job stays ours without a heartbeat; granted with a quarter more "
    "(at most 1m), so a beat rewrites it only once that slack has passed; 1s to 1h "
    "[default: 30s].",
)
@_setting(
    "--retention",
    help="Delete finished jobs older than this (one worker of the fleet at a time, in small "
    "batches); 0 = never, leave it to `corral jobs purge` [default: 7d].",
)
@_setting(
    "--stuck-share",
    help="Restart (exit 4) once this share of the slots is held by sync handlers stuck past "
    "their timeout [default: 0.5].",
)
@_setting(
    "--egress-deny",
    help="Targets the built-in executors refuse, beyond link-local and cloud metadata: "
    "CIDR, host pattern and/or :PORT, e.g. 10.96.0.1:443,*.internal (comma-separated or "
    "repeated).",
)
@_setting(
    "--egress-allow",
    help="Targets opened although a deny rule (built-in or --egress-deny) matches them, "
    "e.g. 169.254.169.254:80. Never opens the worker's own endpoint.",
)
@log_level_option(help="[default: INFO]")
@env_option(
    "--config",
    "config_file",
    envvar=workerenv.WORKER_CONFIG,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML file of settings, keyed by these flags' names (concurrency = 20, "
    'drain-timeout = "5m"); flags, then CORRAL_* variables, win over it.',
)
@click.option(
    "--show-config",
    is_flag=True,
    help="Print the settings this worker would run with (password masked) as JSON and exit.",
)
@click.pass_context
def worker(ctx: click.Context, /, config_file: Path | None, show_config: bool, **raw: Any) -> None:
    """Run a worker: claim jobs from the named queues and run their handlers.

    Delivery is at-least-once: handlers get job.id and job.attempt as their
    idempotency key.

    Every setting comes from its flag, else its CORRAL_* variable, else the
    --config file, else its default.

    \b
    Signals:
      SIGQUIT          drain: stop claiming, let held jobs finish for up to
                       --drain-timeout, hand back the rest, exit 0
      SIGTERM, SIGINT  the same with a short grace (--term-grace), for a
                       pod whose preStop hook (`corral worker prestop`)
                       has drained it already, or a Ctrl-C
      a second signal  stop at once (exit 1); held jobs return to the
                       queue when their lease lapses

    A job handed back returns to the queue at once, its attempt not counted.

    \b
    Exit codes:
      0  after a signal's drain (or, outside a pool, a `corral workers drain`)
      1  a fatal error, or a second signal
      3  the worker was removed from the registry
      4  sync handlers stuck past their timeout hold --stuck-share of its slots
      75 after `corral workers restart`: start it again (it signs back in
         with its stored credential)
    """
    if ctx.invoked_subcommand is not None:
        resume_collector()  # `worker prestop`: not a worker's start (corral.entry)
        return

    given = {
        field: list(value) if isinstance(value, tuple) else value
        for key, field in configfile.KEYS.items()
        if (value := raw[key.replace("-", "_")]) is not None and value != ()
    }
    try:
        settings, log_level = launch.settings_from(given, config_file)
    except ConfigError as exc:
        text = str(exc)
        if config_file is not None and not text.startswith("--config"):
            text += f" (flags, then CORRAL_* variables, then --config {config_file})"
        raise click.UsageError(text) from None
    if log_level.upper() not in LOG_LEVELS:
        raise click.UsageError(
            f"--log-level in {config_file}: {log_level!r} is not one of {', '.join(LOG_LEVELS)}"
        )
    if show_config:
        click.echo(json.dumps(_shown(settings, log_level.upper()), indent=2))
        return
    launch.configure_logging(log_level)
    try:
        runner = launch.prepared(settings)
    except (ValueError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None
    launch.run(runner)


def _shown(settings: WorkerSettings, log_level: str) -> dict[str, Any]:
    """The settings by config-file key, the database password masked and the
    enrollment token left out (`--show-config`); the batch size is the one a
    claim takes (unset: min(concurrency, 1000), as --help says), not 0."""
    fields = settings.as_json()
    shown = {key: fields[field] for key, field in configfile.KEYS.items() if field in fields}
    shown["batch-size"] = settings.claim_batch
    shown["database-url"] = settings.safe_database_url
    shown["log-level"] = log_level
    return shown


@worker.command(
    "prestop",
    context_settings={"show_default": True},
    short_help="Drain the worker on this host and wait until it is drained (the pod's preStop).",
)
@env_option(
    "--port",
    envvar=workerenv.HTTP_PORT,
    type=click.IntRange(1, 65535),
    default=8080,
    help="Port of the local worker's endpoint.",
)
@click.option("--host", default="127.0.0.1", help="Address of the local worker's endpoint.")
@_setting(
    "--state-dir",
    help="The worker's state directory, where it keeps its drain key "
    "[default: ~/.local/state/corral].",
)
@click.option(
    "--timeout",
    "timeout_s",
    default="1h",
    metavar="DURATION",
    callback=lambda _ctx, _param, value: _seconds(value, "--timeout"),
    help="How long to wait for `drained`: 90s, 10m, 1h (a bare number is seconds); the "
    "pod's grace period bounds it anyway.",
)
def prestop(port: int, host: str, state_dir: Path | None, timeout_s: float) -> None:
    """Drain the local worker and wait until it is drained (a preStop hook;
    `corral worker drain` is the same command).

    POSTs /drain to the worker on this host with the drain key the worker
    wrote to its state directory (only the pod itself can read it), then
    polls /status until it says `drained` with 0 jobs in flight; the kubelet
    then sends SIGTERM. The worker's registry row follows: `draining`, then
    `drained`.
    """
    # urllib (with http.client and email under it) is for this hook only: a
    # worker's start does not import it (tests/unit/test_worker_start_imports.py).
    import urllib.error

    from corral.worker.config import default_state_dir
    from corral.worker.endpoint import DRAIN_KEY_FILE, read_drain_key

    state_dir = state_dir or default_state_dir()
    try:
        key = read_drain_key(state_dir)
    except OSError as exc:
        raise click.ClickException(
            f"cannot read the worker's drain key {state_dir / DRAIN_KEY_FILE}: "
            f"{exc.strerror or exc}; run this as the worker's user with its "
            f"--state-dir / {workerenv.STATE_DIR}"
        ) from None
    base = f"http://{host}:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        status = _ask_until(lambda: _http_json("POST", f"{base}/drain", key), base, deadline)
    except urllib.error.HTTPError as exc:
        raise click.ClickException(
            f"the worker at {base} refused to drain ({exc.code}): "
            f"{exc.read().decode(errors='replace').strip()}"
        ) from None
    if status is None:
        raise click.ClickException(f"cannot reach the worker at {base}")
    started = said = time.monotonic()
    while status.get("state") not in ("drained", "stopped"):
        now = time.monotonic()
        if now > deadline:
            raise click.ClickException(
                f"worker still {status.get('state')} with {status.get('in_flight')} in flight "
                f"after {timeout_s:g}s"
            )
        if now - said >= PROGRESS_EVERY_S:  # on stderr: stdout keeps the one result line
            said = now
            click.echo(
                f"worker {status.get('worker_id')}: {status.get('state')}, "
                f"{status.get('in_flight', 0)} in flight ({now - started:.0f}s)",
                err=True,
            )
        time.sleep(0.2)
        polled = _ask_until(lambda: _http_json("GET", f"{base}/status"), base, deadline)
        if polled is None:
            break  # the worker went away: nothing left to drain
        status = polled
    click.echo(
        f"worker {status.get('worker_id')}: {status.get('state')}, "
        f"{status.get('in_flight', 0)} in flight"
    )


def _ask_until(
    ask: Callable[[], dict[str, Any]], base: str, deadline: float
) -> dict[str, Any] | None:
    """`ask()`, again while the worker is slow to answer (a loaded node); None
    once nothing listens on the port any more (the worker exited).

    A preStop that gave up on one slow answer would let SIGTERM hand back
    jobs the worker was about to finish, so only a refused connection (or the
    deadline) ends the wait.
    """
    import urllib.error

    while True:
        try:
            return ask()
        except urllib.error.HTTPError:
            raise  # an answer (a refusal), not a slow worker
        except (OSError, ValueError) as exc:  # refused, a timeout, a reset, a cut-off answer
            cause = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            if isinstance(cause, ConnectionRefusedError):
                return None
            if time.monotonic() > deadline:
                raise click.ClickException(f"the worker at {base} did not answer: {exc}") from None
            click.echo(f"the worker at {base} is slow to answer ({exc}); asking again", err=True)
            time.sleep(0.5)


def _http_json(method: str, url: str, key: str | None = None) -> dict[str, Any]:
    import urllib.request

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    request = urllib.request.Request(
        url, method=method, data=b"" if method == "POST" else None, headers=headers
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        data: dict[str, Any] = json.loads(response.read())
        return data


# `corral worker drain` reads better by hand; `prestop` says what the pod uses it for.
# The same command, listed with its own line in `corral worker --help`.
drain = copy.copy(prestop)
drain.name = "drain"
drain.short_help = "The same as prestop, to drain the worker on this host by hand."
worker.add_command(drain)

"""`corral dashboard`: serve the web dashboard (registered in `corral.cli`).

Reads the database URL like the admin commands (--database-url, else
$CORRAL_DATABASE_URL, else the current `corral config` context: their
callback, `corral.admin.cli._database_url`) and tries it once before
serving: a URL the server refuses stops it (exit 1) with the admin
commands' message, naming where the URL came from. The password from $CORRAL_DASHBOARD_PASSWORD or
--password-file (the Helm chart mounts a Secret there) and the session key
from $CORRAL_DASHBOARD_SECRET_KEY (random per process when unset: sessions
end when it restarts). Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import functools
import os
import secrets
import socket
from pathlib import Path

import click

from corral.admin.cli import _NO_URL, _database_url, _Failed, _url_source


@click.command("dashboard", context_settings={"show_default": True})
@click.option("--host", default="127.0.0.1", help="Address to bind (0.0.0.0 in a pod).")
@click.option(
    "--port",
    default=8080,
    type=click.IntRange(0, 65535),
    help="Port to listen on.",
)
@click.option(
    "--database-url",
    envvar="CORRAL_DATABASE_URL",
    metavar="URL",
    callback=_database_url,
    help="PostgreSQL URL of the queue (default: $CORRAL_DATABASE_URL, else the current context "
    "of `corral config`). Never shown on a page.",
)
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False),
    help="Kubeconfig for the Pools page (default: the pod's ServiceAccount, or $KUBECONFIG / ~/.kube/config).",
)
@click.option(
    "--no-kubernetes", is_flag=True, help="Do not read the Kubernetes API (the Pools page says so)."
)
@click.option("--user", default="admin", help="The user name to sign in with.")
@click.option(
    "--password-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the sign-in password (else $CORRAL_DASHBOARD_PASSWORD; neither: read-only).",
)
@click.option(
    "--secure-cookies/--no-secure-cookies",
    default=False,
    help="Mark the session cookie Secure: set it when the dashboard is served over https.",
)
def dashboard(
    host: str,
    port: int,
    database_url: str | None,
    kubeconfig: str | None,
    no_kubernetes: bool,
    user: str,
    password_file: Path | None,
    secure_cookies: bool,
) -> None:
    """Serve the web dashboard: queues, jobs, workers, pools, schedules, dispatch.

    Read-only unless a password is configured and you sign in; every action is
    recorded in the audit table (`corral audit list`).

    \b
    Environment:
      CORRAL_DATABASE_URL          the queue's database (or --database-url)
      CORRAL_DASHBOARD_PASSWORD    the sign-in password (or --password-file)
      CORRAL_DASHBOARD_SECRET_KEY  the key sessions are signed with; unset: a
                                   random one, so sessions end on a restart
                                   (set it when running several replicas)
    """
    from aiohttp import web

    from corral.dashboard.app import create_app
    from corral.dashboard.routes import Settings
    from corral.dashboard.session import Auth
    from corral.queue import DsnError, Queue, check_dsn

    if not database_url:
        raise click.UsageError(_NO_URL)
    try:
        check_dsn(database_url)
    except DsnError as exc:
        raise click.BadParameter(f"{exc}{_url_source()}", param_hint="--database-url") from None
    password = os.environ.get("CORRAL_DASHBOARD_PASSWORD") or None
    if password_file is not None:
        password = password_file.read_text(encoding="utf-8").strip() or None
        if password is None:
            raise click.BadParameter(
                f"{password_file} is empty: put the password in it", param_hint="--password-file"
            )
    auth = Auth(
        secret_key=os.environ.get("CORRAL_DASHBOARD_SECRET_KEY") or secrets.token_urlsafe(32),
        user=user,
        password=password,
        secure_cookies=secure_cookies,
    )
    try:  # once, before serving: a refused URL stops here, not in every page's log
        Queue.connect(database_url).close()
    except DsnError as exc:
        raise _Failed(f"{exc}{_url_source()}") from None
    except Exception as exc:  # the server answered with an error: one line, masked
        raise _Failed(f"{type(exc).__name__}: {exc}{_url_source()}") from None
    kube = None
    if not no_kubernetes:

        @functools.cache
        def kube_client() -> object:
            # Made on the Pools page's first visit, then kept; a failure is
            # not cached, so a cluster that comes up later is found.
            from corral.kube import Kube

            return Kube.from_environment(kubeconfig)

        kube = kube_client
    app = create_app(Settings(dsn=database_url, auth=auth, kube=kube))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:  # bound here, so a port in use or a foreign address is one line, not a traceback
        sock = socket.create_server((host, port), family=family, backlog=128)
    except OSError as exc:
        raise _Failed(
            f"--host / --port: cannot listen on {host}:{port}: {exc.strerror or exc}: "
            "pick a free --port, and a --host that is an address of this machine"
        ) from None
    mode = (
        "actions on for " + user if auth.actions_enabled else "read-only (no password configured)"
    )
    click.echo(f"corral dashboard on http://{host}:{sock.getsockname()[1]}/ ({mode})", err=True)
    web.run_app(app, sock=sock, print=None, access_log=None)

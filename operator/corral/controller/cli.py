"""`corral operator`: run the Kubernetes operator.

Registered in `corral.cli._COMMANDS`. Order of things: validate settings,
serve /metrics and /healthz, wait for the leader Lease (standby replicas
stay healthy and idle), then run kopf with the handlers of
`corral.controller.handlers` until SIGTERM or lost leadership.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType

import click

from corral.cli_options import database_url_option, env_option, log_level_option
from corral.controller.config import DEFAULT_WORKER_IMAGE, OperatorConfig, OperatorConfigError
from corral.durations import DurationError, format_age, parse_duration

# /healthz fails once a database call has been in flight this long: past the
# statement limit (30 s) and the TCP timeouts (30 s), something is stuck.
DATABASE_STALL_S = 90.0
# On a clean stop, how long to wait for a renewal in flight before releasing
# the leader Lease (seconds).
RELEASE_WAIT_S = 5.0
REGISTRY_RETENTION_FIRST_S = 60.0  # the leader trims the registry this long after taking the lead
REGISTRY_RETENTION_EVERY_S = 3600.0  # and this often after that


def _duration(value: str, flag: str) -> float:
    try:
        return parse_duration(value, what=flag)
    except DurationError as exc:
        raise OperatorConfigError(str(exc)) from None


@click.command(
    "operator",
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "show_default": True,
    },
)
@database_url_option()
@env_option(
    "--worker-database-url",
    envvar="CORRAL_WORKER_DATABASE_URL",
    help="URL the workers of pools without spec.database use: a worker role "
    "(`corral db create-worker-role NAME`), never the operator's own.",
)
@env_option(
    "--worker-image",
    envvar="CORRAL_WORKER_IMAGE",
    default=DEFAULT_WORKER_IMAGE,
    help="Image of pools that name none.",
)
@env_option(
    "--default-region",
    envvar="CORRAL_DEFAULT_REGION",
    default="default",
    help="Region of pools that name none.",
)
@env_option(
    "--create-default-region/--no-create-default-region",
    envvar="CORRAL_DEFAULT_REGION_CREATE",
    default=True,
    help="Create the default Region when it is missing.",
)
@env_option(
    "--default-region-display-name",
    envvar="CORRAL_DEFAULT_REGION_DISPLAY_NAME",
    default="Default",
    help="Display name of the default Region the operator creates.",
)
@env_option(
    "--namespace",
    "namespaces",
    envvar="CORRAL_WATCH_NAMESPACES",
    default="",
    show_default=False,
    help="Comma-separated namespaces to watch for WorkerPools; empty: all.",
)
@env_option(
    "--operator-namespace",
    envvar="CORRAL_OPERATOR_NAMESPACE",
    default="default",
    help="Namespace of the leader Lease.",
)
@env_option(
    "--identity",
    envvar="CORRAL_OPERATOR_POD",
    help="Holder name in the leader Lease [default: hostname].",
)
@env_option(
    "--leader-lease",
    envvar="CORRAL_LEADER_LEASE",
    default="corral-operator-leader",
    help="Lease name; empty disables leader election.",
)
@env_option(
    "--http-port",
    envvar="CORRAL_HTTP_PORT",
    type=int,
    default=8080,
    help="Port of /metrics and /healthz; -1 = off.",
)
@env_option(
    "--resync",
    "resync_s",
    envvar="CORRAL_RESYNC_SECONDS",
    default="10s",
    metavar="DURATION",
    help="Between full re-reads of each object: 30s, 2m (a bare number is seconds).",
)
@env_option(
    "--registry-retention",
    envvar="CORRAL_REGISTRY_RETENTION",
    default="7d",
    help="Delete workers removed or silent, and enrollment tokens revoked, expired or "
    "used up, this long ago (checked hourly); 0 keeps them.",
)
@env_option(
    "--kubeconfig",
    envvar="KUBECONFIG",
    help="Kubeconfig outside a cluster [default: in-cluster, else ~/.kube/config].",
)
@log_level_option(default="INFO", show_default=False)
def operator(
    database_url: str | None,
    worker_database_url: str | None,
    worker_image: str,
    default_region: str,
    create_default_region: bool,
    default_region_display_name: str,
    namespaces: str,
    operator_namespace: str,
    identity: str | None,
    leader_lease: str,
    http_port: int,
    resync_s: str,
    registry_retention: str,
    kubeconfig: str | None,
    log_level: str,
) -> None:
    """Run the operator: reconcile WorkerPools into Deployments and enrollment
    Secrets, and keep WorkerPool and Region status current."""
    try:
        config = OperatorConfig(
            database_url=database_url or "",
            worker_database_url=worker_database_url or None,
            worker_image=worker_image,
            default_region=default_region,
            create_default_region=create_default_region,
            default_region_display_name=default_region_display_name,
            namespace=operator_namespace,
            identity=identity or socket.gethostname(),
            watch_namespaces=tuple(n.strip() for n in namespaces.split(",") if n.strip()),
            lease_name=leader_lease or None,
            http_port=http_port,
            resync_s=_duration(resync_s, "--resync"),
            registry_retention_s=_duration(registry_retention, "--registry-retention"),
        )
    except OperatorConfigError as exc:
        raise click.UsageError(str(exc)) from None
    _log_to_stderr(log_level, config.mask)
    sys.exit(run(config, kubeconfig))


class _MaskingFormatter(logging.Formatter):
    """Every line the operator logs (its own, kopf's, psycopg's; messages and
    tracebacks) goes through `mask`: no database password reaches the log."""

    def __init__(self, fmt: str, mask: Callable[[str], str]) -> None:
        super().__init__(fmt)
        self._mask = mask

    def format(self, record: logging.LogRecord) -> str:
        return self._mask(super().format(record))


def _log_to_stderr(level: str, mask: Callable[[str], str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_MaskingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", mask))
    # force: the operator owns its process's logging; a handler installed
    # before (one that does not mask) is replaced.
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


# Exit codes of a start that cannot go on: a setting that is wrong (as
# click's usage errors), an operation that failed (a port in use: as the
# worker's `--http-port` error).
EXIT_FAILED, EXIT_USAGE = 1, 2


def _cannot_start(message: str, code: int) -> int:
    """One line on stderr, the way `corral worker` words it; returns `code`."""
    print(f"corral operator: error: {message}", file=sys.stderr, flush=True)
    return code


def run(config: OperatorConfig, kubeconfig: str | None = None) -> int:
    """The operator's life; returns the process exit code."""
    import kopf

    from corral.api import WorkerPool
    from corral.controller import metrics
    from corral.controller.autoscaler import Autoscaler
    from corral.controller.handlers import build_registry
    from corral.controller.leader import LeaderElection
    from corral.controller.queue_access import QueueAccess
    from corral.controller.reconcile import Reconciler, scale_down_pending
    from corral.controller.schedules import ScheduleFirer
    from corral.kube import Kube, KubeError

    log = logging.getLogger("corral.operator")
    if kubeconfig:
        os.environ["KUBECONFIG"] = kubeconfig  # kopf's login reads it from there
    stop = threading.Event()
    kopf_done = threading.Event()
    try:
        kube = Kube.from_environment(kubeconfig)
    except KubeError as exc:
        return _cannot_start(
            f"--kubeconfig / KUBECONFIG: {exc}: pass the kubeconfig of the cluster to manage, "
            "or run in a pod",
            EXIT_USAGE,
        )
    election = (
        LeaderElection(kube, config.namespace, config.lease_name, config.identity)
        if config.lease_name
        else None
    )

    access: list[QueueAccess] = []  # set once leading

    def healthy() -> bool:
        if election is not None and election.lost.is_set():
            return False  # stepped down: restart as a standby
        if any(a.stalled_for() > DATABASE_STALL_S for a in access):
            return False  # a database call stuck past every timeout
        return not kopf_done.is_set()

    if config.http_port >= 0:
        try:
            server = metrics.serve("0.0.0.0", config.http_port, healthy)
        except OSError as exc:
            return _cannot_start(
                f"--http-port / CORRAL_HTTP_PORT: cannot listen on 0.0.0.0:{config.http_port}: "
                f"{exc.strerror or exc}",
                EXIT_FAILED,
            )
        log.info("serving /metrics and /healthz on port %d", server.server_address[1])

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    renewing: threading.Thread | None = None
    if election is not None:
        if not election.acquire(stop):
            return 0  # asked to stop while standing by
        renewing = election.keep_renewing(stop)
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # kopf installs its own from here on
    metrics.LEADER.set(1)

    queue = QueueAccess(config.database_url)
    # Only the leader exports the queue's figures (one series per queue, not
    # one per replica), through a connection of its own.
    stats_access = QueueAccess(config.database_url)
    access += [queue, stats_access]
    metrics.register_queue_stats(lambda: stats_access.run(lambda q: q.stats()))
    reconciler = Reconciler(kube, queue, config)
    registry = build_registry(reconciler, config.resync_s)

    def _evaluate(namespace: str, name: str) -> bool:
        outcome = reconciler.autoscale(namespace, name)
        if outcome is None:
            return False
        if outcome.status is not None:
            metrics.record_pool(namespace, name, outcome.status)
        _follow_drains(f"{namespace}/{name}", scale_down_pending(outcome))
        return outcome.acted

    autoscaler = Autoscaler(_evaluate, config.database_url)

    def _follow_drains(key: str, pending: bool) -> None:
        # Workers draining before a scale-down: finish it as soon as they
        # report drained, not a pollSeconds later.
        if pending:
            autoscaler.recheck(key)
        else:
            autoscaler.drained(key)

    def _seen(pool: WorkerPool, draining: bool) -> None:
        """A reconcile evaluated the pool: its next poll can wait, unless a
        scale-down waits for drains."""
        key = f"{pool.metadata.namespace}/{pool.metadata.name}"
        autoscaler.track(pool)
        if not draining:
            autoscaler.evaluated(key)
        _follow_drains(key, draining)

    reconciler.on_pool = _seen
    reconciler.on_pool_gone = autoscaler.forget
    autoscaler.start(stop)
    # Pools at zero have no worker to fire their schedules: the leader fires
    # them, ahead by the pools' activationLeadSeconds, so that they wake in time.
    ScheduleFirer(queue.run, autoscaler.activation_leads, autoscaler.notified).start(stop)

    def _resync_regions() -> None:
        while not stop.wait(config.resync_s):
            try:
                reconciler.resync_regions()
            except Exception as exc:  # the next round retries; the loop must not die
                log.warning("refreshing Region status failed: %s", exc)

    threading.Thread(target=_resync_regions, name="region-resync", daemon=True).start()

    def _registry_retention() -> None:
        # The registry grows by a row per pod start and a token per rotation;
        # the leader trims what is long dead (docs/operator.md).
        wait = REGISTRY_RETENTION_FIRST_S  # soon after taking the lead, then hourly
        while not stop.wait(wait):
            wait = REGISTRY_RETENTION_EVERY_S
            try:
                purged = queue.run(lambda q: q.purge_registry(config.registry_retention_s))
            except Exception as exc:  # the next round retries; the loop must not die
                log.warning("registry retention failed: %s", exc)
                continue
            metrics.REGISTRY_PURGED.labels("workers").inc(purged.workers)
            metrics.REGISTRY_PURGED.labels("tokens").inc(purged.tokens)
            if purged.workers or purged.tokens:
                log.info(
                    "registry retention: deleted %d worker(s) and %d token(s) gone for over %s",
                    purged.workers,
                    purged.tokens,
                    format_age(config.registry_retention_s),
                )

    if config.registry_retention_s > 0:
        threading.Thread(target=_registry_retention, name="registry-retention", daemon=True).start()
    log.info(
        "watching WorkerPools in %s",
        ", ".join(config.watch_namespaces) if config.watch_namespaces else "every namespace",
    )
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                standalone=True,  # one active replica is the Lease's job, not kopf peering
                clusterwide=config.clusterwide,
                namespaces=list(config.watch_namespaces),
                # No stop_flag: kopf would wait on a threading.Event in the
                # default executor and never let asyncio.run return. Lost
                # leadership stops kopf the way Kubernetes does, with SIGTERM.
            )
        )
    finally:
        stop.set()
        kopf_done.set()
        metrics.LEADER.set(0)
        queue.close()
        stats_access.close()
    if election is not None and election.lost.is_set():
        log.error("exiting: leadership lost")
        return 1
    if election is not None and renewing is not None:
        # A clean stop: hand the Lease over now rather than after it runs
        # out, once no renewal can follow (one in flight ends within the
        # client's timeout; if it does not, the Lease just runs out).
        renewing.join(timeout=RELEASE_WAIT_S)
        if not renewing.is_alive():
            election.release()
    return 0

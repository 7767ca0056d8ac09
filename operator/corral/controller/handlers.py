"""The kopf handlers: thin glue from watch events and timers to `Reconciler`.

`build_registry` is called by `corral.controller.cli` (the `corral operator`
command) with the reconciler; each handler turns kopf's arguments into a plain
dict, calls the reconciler, posts the events it returns and records metrics.
Nothing here decides anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import kopf

from corral.api import GROUP, VERSION
from corral.controller import metrics, naming
from corral.controller.deployment import DRAIN_MARGIN_S
from corral.controller.events import Event
from corral.controller.queue_access import DatabaseUnavailable
from corral.controller.reconcile import Reconciler, StillDraining
from corral.kube import KubeError

log = logging.getLogger(__name__)

FINALIZER = "corral.dev/finalizer"
# How long a pool deletion keeps retrying an unreachable database after its
# workers drained, before it lets the pool go (the token expires on its own).
GIVE_UP_AFTER_S = 60.0
RETRY_DELAY_S = 5.0


def _plain(value: Any) -> Any:
    """kopf's Body views -> plain dicts and lists (what the models parse)."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _post(body: Any, events: list[Event]) -> None:
    for event in events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)


def build_registry(reconciler: Reconciler, resync_s: float) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    pools = (GROUP, VERSION, "workerpools")
    regions = (GROUP, VERSION, "regions")

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A registry of our own has none of kopf's default login handlers:
        # authenticate like corral.kube (in-cluster, else $KUBECONFIG).
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        # Progress and diff-base in annotations: the CRDs' status schema is
        # strict and would prune kopf's usual status.kopf field.
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="corral.dev")
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
            prefix="corral.dev", key="last-handled-configuration"
        )
        settings.persistence.finalizer = FINALIZER
        # kopf's own per-handler chatter stays in the log; the events users
        # see are the ones the reconciler chose.
        settings.posting.level = logging.WARNING
        settings.execution.max_workers = 8
        try:
            if reconciler.ensure_default_region():
                log.info("created the default Region %r", reconciler.config.default_region)
        except KubeError as exc:
            raise kopf.TemporaryError(f"cannot create the default Region: {exc}", delay=5) from exc

    def _pool(body: Any) -> None:
        plain = _plain(body)
        try:
            outcome = reconciler.reconcile_pool(plain)
        except KubeError as exc:
            metrics.RECONCILES.labels("WorkerPool", "error").inc()
            if exc.status == 409:
                raise kopf.TemporaryError(f"conflict, retrying: {exc}", delay=1) from exc
            raise kopf.TemporaryError(str(exc), delay=5) from exc
        except Exception:  # a model that refuses the pool, a call lost in transport...
            metrics.RECONCILES.labels("WorkerPool", "error").inc()
            raise
        metrics.RECONCILES.labels("WorkerPool", "ok").inc()
        if outcome.status is not None:
            metrics.record_pool(
                plain["metadata"].get("namespace", ""), plain["metadata"]["name"], outcome.status
            )
        _post(body, outcome.events)

    @kopf.on.resume(*pools, registry=registry)
    @kopf.on.create(*pools, registry=registry)
    @kopf.on.update(*pools, registry=registry)
    def pool_changed(body: kopf.Body, **_: Any) -> None:
        _pool(body)

    @kopf.timer(*pools, registry=registry, interval=resync_s, sharp=False)
    def pool_resync(body: kopf.Body, **_: Any) -> None:
        if body.metadata.get("deletionTimestamp"):
            return
        _pool(body)

    @kopf.on.delete(*pools, registry=registry)
    def pool_deleted(body: kopf.Body, runtime: timedelta, **_: Any) -> None:
        plain = _plain(body)
        waited_s = runtime.total_seconds()
        try:
            events = reconciler.finalize_pool(plain, waited_s=waited_s)
        except StillDraining as exc:
            raise kopf.TemporaryError(str(exc), delay=2) from exc
        except (DatabaseUnavailable, KubeError) as exc:
            # Retry (not with kopf's retry count: draining may take many
            # rounds), then let the pool go; its token expires on its own.
            drain_s = float(plain["spec"].get("drain", {}).get("timeoutSeconds", 300))
            if waited_s >= drain_s + DRAIN_MARGIN_S + GIVE_UP_AFTER_S:
                kopf.event(body, type="Warning", reason="TokenNotRevoked",
                           message=f"{exc}; the token expires on its own")  # fmt: skip
                return
            raise kopf.TemporaryError(str(exc), delay=RETRY_DELAY_S) from exc
        metrics.forget_pool(plain["metadata"].get("namespace", ""), plain["metadata"]["name"])
        _post(body, events)

    @kopf.on.event(
        "apps", "v1", "deployments",
        registry=registry,
        labels={"app.kubernetes.io/managed-by": naming.MANAGED_BY},
    )  # fmt: skip
    def deployment_event(body: kopf.Body, type: str | None, **_: Any) -> None:
        # A Deployment of a pool changed, or was deleted by hand: reconcile
        # its pool at once rather than at the next resync. Its status
        # changing, or the echo of the operator's own write, is no reason.
        if not reconciler.deployment_changed(_plain(body), deleted=type == "DELETED"):
            return
        owner = next(
            (
                ref
                for ref in body.metadata.get("ownerReferences") or []
                if ref.get("kind") == "WorkerPool"
            ),
            None,
        )
        namespace = body.metadata.get("namespace")
        if owner is None or namespace is None:
            return
        try:
            pool = reconciler.kube.get_workerpool(namespace, owner["name"])
            if pool is None or pool["metadata"].get("deletionTimestamp"):
                return
            outcome = reconciler.reconcile_pool(pool)
        except (KubeError, DatabaseUnavailable) as exc:
            log.warning("reconcile after a Deployment event failed: %s", exc)
            return
        if outcome.status is not None:
            metrics.record_pool(namespace, owner["name"], outcome.status)
        _post(pool, outcome.events)

    def _region(body: Any) -> None:
        try:
            reconciler.reconcile_region(_plain(body))
        except KubeError as exc:
            metrics.RECONCILES.labels("Region", "error").inc()
            raise kopf.TemporaryError(str(exc), delay=5) from exc
        except Exception:
            metrics.RECONCILES.labels("Region", "error").inc()
            raise
        metrics.RECONCILES.labels("Region", "ok").inc()

    @kopf.on.resume(*regions, registry=registry)
    @kopf.on.create(*regions, registry=registry)
    @kopf.on.update(*regions, registry=registry)
    def region_changed(body: kopf.Body, **_: Any) -> None:
        _region(body)
        # Pools waiting for this Region heal now, not at their next resync.
        name = body.metadata["name"]
        for pool in reconciler.kube.list_workerpools(list(reconciler.config.watch_namespaces)):
            if (pool.get("spec") or {}).get("region", reconciler.config.default_region) == name:
                _pool(pool)

    # No kopf timer for Regions: kopf guards timers with a finalizer, and a
    # Region must stay deletable while the operator is down. Their figures are
    # refreshed by `resync_regions`, which `corral operator` runs every resync.

    return registry

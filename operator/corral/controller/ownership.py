"""Whose object is it: the checks the reconcile makes before it writes.

Pure; called by `corral.controller.reconcile` with the objects it read. A
WorkerPool writes a Deployment and a Secret named after itself; someone else
may already have an object of that name (another tool, another pool with a
clashing name, a person). Server-side apply would quietly take it over, so
the reconcile refuses instead: the pool is Degraded and an Event names the
object. The workers' database URL is checked here too: a pool needs one, and
it is never the operator's own.
"""

from __future__ import annotations

from typing import Any

from corral.api import WorkerPool

__all__ = ["foreign_object", "owned_by", "worker_database_problem"]


def owned_by(obj: dict[str, Any], owner_uid: str) -> bool:
    """True when `obj` names `owner_uid` as its controller owner."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == owner_uid and r.get("controller") for r in refs)


def foreign_object(kind: str, obj: dict[str, Any] | None, pool: WorkerPool) -> str | None:
    """The problem when `obj` (an existing Deployment or Secret the pool
    would write) belongs to someone else; None when it is absent or the pool's."""
    if obj is None or owned_by(obj, str(pool.metadata.uid)):
        return None
    meta = obj.get("metadata") or {}
    owners = [f"{r.get('kind')}/{r.get('name')}" for r in meta.get("ownerReferences") or []] or [
        "nobody"
    ]
    return (
        f"{kind} {meta.get('namespace')}/{meta.get('name')} exists and is not owned by this "
        f"WorkerPool (owner: {', '.join(owners)}); corral will not take it over: delete or "
        "rename it, or rename the pool"
    )


def worker_database_problem(pool: WorkerPool, worker_database_url: str | None) -> str | None:
    """Why the pool's workers have no database URL, with what to create; None
    when the pool names a Secret (spec.database) or the operator has one."""
    if pool.spec.database is not None or worker_database_url:
        return None
    namespace = pool.metadata.namespace or "default"
    return (
        "no database URL for the workers (the operator never hands them its own): create a "
        "worker role with `corral db create-worker-role NAME`, store the DSN it prints in a "
        f"Secret (`kubectl -n {namespace} create secret generic corral-worker-database "
        "--from-literal=url=DSN`) and set spec.database.secretRef.name: corral-worker-database; "
        "or give the operator one for every pool (chart value workerDatabase.secretName, "
        "CORRAL_WORKER_DATABASE_URL)"
    )

"""Enrollment tokens and the workers registry, written once like
`_operations`: sans-IO operations that `Queue` and `AsyncQueue` turn into
methods.

A token is traded for a worker id and a credential (`enroll`), which the
worker presents on every later call; the registry row says where the worker
is in its life (active, draining, drained, removed) and who asked for a drain.
Only hashes of tokens and credentials are stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from corral.queue import _operations as op
from corral.queue import _params as p
from corral.queue import records as r
from corral.queue.errors import (
    JobStateError,
    TokenNotFound,
    WorkerNotFound,
    WorkerRemoved,
    WorkerStateError,
)

# -- enrollment tokens -----------------------------------------------------------


def create_token(
    region: str,
    *,
    pool: str | None = None,
    ttl_s: float = 900,
    uses: int = 1,
    queues: Sequence[str] | None = None,
) -> op.Operation[r.NewToken]:
    """Mint an enrollment token; only its SHA-256 hash is stored. `queues`
    (None: any) are the only queues a worker enrolled with it may serve."""
    secret, params = p.token_params(region, pool, ttl_s, uses, queues)
    return r.NewToken(secret, p.token_from_row((yield op.Statement("insert_token", params))[0]))


def list_tokens(*, include_unusable: bool = False) -> op.Operation[list[r.TokenInfo]]:
    rows = yield op.Statement("list_tokens", {"all": include_unusable})
    return [p.token_from_row(row) for row in rows]


def get_token(token_id: int) -> op.Operation[r.TokenInfo]:
    """One token by id (how many uses it has left: the operator rotates a
    pool's token before they run out)."""
    rows = yield op.Statement("get_token", (token_id,))
    if not rows:
        raise TokenNotFound(f"no enrollment token with id {token_id} (see: corral tokens list)")
    return p.token_from_row(rows[0])


def worker_role_rights(role: str) -> op.Operation[list[str] | None]:
    """What login role `role` holds beyond a worker's (`roles.rights_beyond_worker`:
    empty when nothing); None when the server has no such role."""
    from corral.queue.roles import rights_beyond_worker

    rows = yield op.Statement("role_rights", (role,))
    return rights_beyond_worker(rows[0]) if rows else None


def revoke_token(token: int | str) -> op.Operation[int]:
    """Revoke a token by id or display prefix; returns its id."""
    ident = int(token) if isinstance(token, int) or str(token).isdigit() else -1
    row = yield op._one("revoke_token", (ident, str(token)))
    if row is None:
        raise TokenNotFound(
            f"no enrollment token with id or prefix {token!r} (see: corral tokens list)"
        )
    return int(row)


def remove_token_workers(token_id: int) -> op.Operation[int]:
    """The response to a leaked token: revoke it and remove every worker it
    enrolled (their credentials stop working, their running jobs are
    retried); returns how many were removed. TokenNotFound for no such
    token. A plain revoke (`revoke_token`, what the operator does to a
    rotated pool token) leaves its workers alone."""
    found, removed, _ = (yield op.Statement("remove_token_workers", {"id": token_id}))[0]
    if not found:
        raise TokenNotFound(f"no enrollment token with id {token_id} (see: corral tokens list)")
    return int(removed)


# -- the workers registry ----------------------------------------------------------


@op.transactional
def enroll(
    token: str,
    *,
    name: str,
    queues: Sequence[str],
    concurrency: int,
    version: str | None = None,
) -> op.Operation[r.Enrollment]:
    """Trade an enrollment token for a worker id and a long-lived credential
    (returned once; the database keeps its hash). A token limited to
    queues refuses a worker asking for any other (EnrollmentError)."""
    credential = p.new_secret(p.CREDENTIAL_PREFIX)
    params = (token.strip(), name, list(queues), concurrency, version, p.hash_secret(credential))
    worker_id, region, pool = (yield op.Statement("enroll_v2", params))[0]
    return r.Enrollment(int(worker_id), credential, region, pool)


def authenticate(
    worker_id: int,
    credential: str,
    *,
    name: str | None = None,
    queues: Sequence[str] | None = None,
    concurrency: int | None = None,
    version: str | None = None,
) -> op.Operation[r.WorkerState]:
    """Re-authenticate a restarted worker with its stored credential, refresh
    what it says about itself, return its state. Raises CredentialError, or
    WorkerRemoved for a removed worker, EnrollmentError for queues outside
    its enrollment. A drain the worker asked for itself ends here (the row
    is active again); an admin's drain stays."""
    params = (
        worker_id, credential, name, None if queues is None else list(queues),
        concurrency, version,
    )  # fmt: skip
    state = r.WorkerState((yield op._one("authenticate_v2", params)))
    if state is r.WorkerState.REMOVED:
        raise WorkerRemoved(f"worker {worker_id} was removed from the fleet")
    return state


def request_drain(worker_id: int) -> op.Operation[r.Worker]:
    """Ask a worker to stop claiming and finish what it holds (idempotent)."""
    yield op.Statement("request_drain", (worker_id,), op.Fetch.ROWCOUNT)
    return (yield from get_worker(worker_id))


def request_restart(worker_id: int) -> op.Operation[r.Worker]:
    """Ask a worker to drain, then exit with its restart code for its
    supervisor to start it again; it comes back with its stored credential
    and is active (idempotent)."""
    yield op.Statement("request_restart", (worker_id,), op.Fetch.ROWCOUNT)
    return (yield from get_worker(worker_id))


def resume_worker(worker_id: int) -> op.Operation[r.Worker]:
    """Undo a drain the registry asked for that has not finished (an admin's,
    the scaler's, a restart's): the worker claims again at its next
    heartbeat. WorkerStateError, saying why, when there is none to undo."""
    if (yield op.Statement("resume_worker", (worker_id,))):
        return (yield from get_worker(worker_id))
    worker = yield from get_worker(worker_id)
    if worker.state in (r.WorkerState.ACTIVE, r.WorkerState.REMOVED):
        why = f"it is {worker.state}: there is no drain to undo"
    elif worker.drain_requested_by == "self":
        why = (
            f"it is {worker.state} by its own drain (SIGTERM, preStop or POST /drain): "
            "its process is going away, and a drain of its own is never undone"
        )
    else:
        why = (
            "it finished its drain and exits (a worker outside a pool, or a restart); "
            "start it again instead"
        )
    raise WorkerStateError(f"cannot resume worker {worker_id}: {why}")


def drain_self(worker_id: int, credential: str) -> op.Operation[r.WorkerState]:
    """The worker drains itself (SIGTERM, POST /drain, preStop): its row goes
    from active to draining; returns the row's state. Raises CredentialError
    or WorkerRemoved."""
    return r.WorkerState((yield op._one("drain_self_v1", (worker_id, credential))))


def mark_drained(worker_id: int, credential: str) -> op.Operation[r.WorkerState]:
    """The worker reports it holds nothing after a drain; JobStateError when
    its row is not draining."""
    state = r.WorkerState((yield op._one("mark_drained_v1", (worker_id, credential))))
    if state is not r.WorkerState.DRAINED:
        raise JobStateError(f"worker {worker_id} is {state}, not draining")
    return state


def remove_worker(worker_id: int) -> op.Operation[r.Worker]:
    """Remove a worker: its credential stops working at its next call and its
    running jobs go back through the retry path."""
    yield from get_worker(worker_id)
    yield op.Statement("remove_worker", {"id": worker_id})
    return (yield from get_worker(worker_id))


def get_worker(worker_id: int) -> op.Operation[r.Worker]:
    rows = yield op.Statement("get_worker", (worker_id,))
    if not rows:
        raise WorkerNotFound(f"worker {worker_id} does not exist (see: corral workers list)")
    return p.worker_from_row(rows[0])


def list_workers(*, include_removed: bool = False) -> op.Operation[list[r.Worker]]:
    return [
        p.worker_from_row(row) for row in (yield op.Statement("list_workers", (include_removed,)))
    ]

"""The enrollment Secret a WorkerPool owns, and when to mint a new token.

Pure; called by the kopf handlers, which mint and revoke tokens through
`corral.queue` (only the hash is stored there) and write the Secret through
`corral.kube`. The plaintext token lives only in this Secret.

Rotation never disturbs running workers: they traded the token for their own
credential when they enrolled, and the pod template mounts the Secret by
name, so a new token changes no pod and rolls nothing. The previous token is
revoked once `PREVIOUS_TOKEN_GRACE_S` has passed (pods starting during the
swap may still hold it); the handlers revoke the current one when the pool
is deleted, and take the pool's workers (and so their credentials) out of
the registry.

A pool token admits only the pool's queues (the database refuses a worker
asking for others) and carries as many uses as the pool may need between
rotations (`pool_token_uses`), not an unlimited number: a token copied out
of the Secret enrolls a handful of workers at most, for those queues only.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from corral import workerenv
from corral.api import WorkerPool
from corral.controller import naming

TOKEN_ID_ANNOTATION = "corral.dev/token-id"
TOKEN_CREATED_ANNOTATION = "corral.dev/token-created-at"
TOKEN_EXPIRES_ANNOTATION = "corral.dev/token-expires-at"
TOKEN_QUEUES_ANNOTATION = "corral.dev/token-queues"
PREVIOUS_TOKEN_ANNOTATION = "corral.dev/previous-token-id"
PREVIOUS_REVOKE_ANNOTATION = "corral.dev/previous-token-revoke-at"
# Seconds the previous token stays valid after a rotation: a pod created just
# before the swap may still start with it.
PREVIOUS_TOKEN_GRACE_S = 600
# Uses of a pool token: every pod start takes one (a container restart keeps
# its credential), so room for the pool at its largest several times over;
# the token is rotated once fewer than replicas.max uses are left.
POOL_TOKEN_USES_PER_REPLICA = 4
POOL_TOKEN_MIN_USES = 10
# Mint a new token when this share of the TTL is left: pods created in the
# meantime still get a token with hours to spare at the default TTL.
ROTATE_WHEN_LEFT = 1 / 3


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pool_token_uses(pool: WorkerPool) -> int:
    """How many enrollments a new pool token allows."""
    return max(POOL_TOKEN_MIN_USES, POOL_TOKEN_USES_PER_REPLICA * pool.spec.replicas.max)


@dataclass(frozen=True)
class PreviousToken:
    """A rotated-out token, revoked at `revoke_at`."""

    token_id: str
    revoke_at: datetime


def previous_token(secret: dict[str, Any] | None) -> PreviousToken | None:
    annotations = ((secret or {}).get("metadata") or {}).get("annotations") or {}
    token_id = annotations.get(PREVIOUS_TOKEN_ANNOTATION)
    revoke_at = _parse_time(annotations.get(PREVIOUS_REVOKE_ANNOTATION))
    if not token_id or revoke_at is None:
        return None
    return PreviousToken(str(token_id), revoke_at)


def desired_secret(
    pool: WorkerPool,
    *,
    region: str,
    token: str,
    token_id: str,
    created_at: datetime,
    expires_at: datetime,
    database_url: str | None,
    previous: PreviousToken | None = None,
) -> dict[str, Any]:
    """The v1 Secret holding the pool's enrollment token.

    `database_url` is the workers' database URL the operator was given
    (a worker role's, never the operator's own), copied in only when the pool
    names no `database.secretRef` (pods cannot read Secrets of other
    namespaces); None leaves the key out. The caller sets the owner reference.
    """
    data = {workerenv.SECRET_TOKEN_KEY: _b64(token)}
    if database_url is not None:
        data[workerenv.SECRET_DATABASE_URL_KEY] = _b64(database_url)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": naming.secret_name(pool),
            "namespace": pool.metadata.namespace,
            "labels": naming.owned_labels(pool, region),
            "annotations": {
                TOKEN_ID_ANNOTATION: token_id,
                TOKEN_CREATED_ANNOTATION: _timestamp(created_at),
                TOKEN_EXPIRES_ANNOTATION: _timestamp(expires_at),
                TOKEN_QUEUES_ANNOTATION: ",".join(pool.spec.queues),
                **(
                    {
                        PREVIOUS_TOKEN_ANNOTATION: previous.token_id,
                        PREVIOUS_REVOKE_ANNOTATION: _timestamp(previous.revoke_at),
                    }
                    if previous is not None
                    else {}
                ),
            },
        },
        "data": data,
    }


def secret_is_current(existing: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """True when `existing` already holds everything `desired` sets.

    The reconcile then leaves the Secret alone instead of re-applying it: an
    apply that races a `kubectl delete secret` would bring the deleted token
    back, where the next reconcile should mint a fresh one.
    """
    if existing is None:
        return False
    have, want = existing.get("metadata") or {}, desired.get("metadata") or {}
    for key in ("labels", "annotations"):
        present = have.get(key) or {}
        if any(present.get(k) != v for k, v in (want.get(key) or {}).items()):
            return False
    owners = {o.get("uid") for o in have.get("ownerReferences") or []}
    if any(o.get("uid") not in owners for o in want.get("ownerReferences") or []):
        return False
    return bool(
        existing.get("type", "Opaque") == desired.get("type", "Opaque")
        and (existing.get("data") or {}) == (desired.get("data") or {})
    )


def token_expiry(now: datetime, ttl_s: int) -> datetime:
    return now + timedelta(seconds=ttl_s)


@dataclass(frozen=True)
class StoredToken:
    """The database's record of the token a Secret names (`Queue.get_token`)."""

    uses_left: int
    expires_at: datetime
    revoked_at: datetime | None = None
    # The token's first characters as the database keeps them (None: not read).
    display_prefix: str | None = None


@dataclass(frozen=True)
class Rotation:
    """Whether to mint a new token now, why, and when to look again."""

    rotate: bool
    reason: str
    check_at: datetime | None = None  # next time the answer may change


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def rotation(
    secret: dict[str, Any] | None,
    *,
    ttl_s: int,
    now: datetime,
    region: str | None = None,
    queues: list[str] | None = None,
    stored: StoredToken | None = None,
    token_gone: bool = False,
    min_uses: int = 0,
) -> Rotation:
    """Decide from the Secret as it is whether the pool needs a new token.

    A missing or hand-edited Secret gets a new token (the convergence path
    when someone deletes it; a token that does not begin with the stored
    token's display prefix was edited); so does one minted for another region or other
    queues (a token is bound to both), one that can no longer enroll (the
    database has no such token, `token_gone`: purged, or restored from before
    it; or `stored`, its record, says revoked or expired), one with fewer
    than `min_uses` uses left, or one whose token outlives a shortened TTL;
    otherwise rotate once less than a third of the TTL is left. A token that
    cannot enroll is replaced at once, not at its next rotation: every pod
    starting meanwhile would fail to enroll. `stored` None: not read.
    """
    if secret is None:
        return Rotation(True, "the enrollment Secret does not exist")
    if not (secret.get("data") or {}).get(workerenv.SECRET_TOKEN_KEY):
        return Rotation(True, f"the enrollment Secret has no {workerenv.SECRET_TOKEN_KEY!r} key")
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    expires_at = _parse_time(annotations.get(TOKEN_EXPIRES_ANNOTATION))
    if expires_at is None or not annotations.get(TOKEN_ID_ANNOTATION):
        return Rotation(True, "the enrollment Secret does not say which token it holds")
    labels = (secret.get("metadata") or {}).get("labels") or {}
    if region is not None and labels.get(naming.REGION_LABEL) != region:
        return Rotation(True, f"the pool moved to region {region!r}")
    if queues is not None and annotations.get(TOKEN_QUEUES_ANNOTATION) != ",".join(queues):
        return Rotation(True, "the pool's queues changed (a pool token admits only its queues)")
    token_id = annotations[TOKEN_ID_ANNOTATION]
    if token_gone:
        return Rotation(True, f"the database has no enrollment token {token_id}")
    if stored is not None and stored.display_prefix:
        held = held_token(secret)
        if held is None or not held.token.startswith(stored.display_prefix):
            return Rotation(
                True, f"the enrollment Secret's token is not token {token_id} (edited by hand?)"
            )
    if stored is not None and stored.revoked_at is not None:
        revoked = _timestamp(stored.revoked_at)
        return Rotation(True, f"the enrollment token {token_id} was revoked at {revoked}")
    expired_at = min(expires_at, stored.expires_at) if stored is not None else expires_at
    if expired_at <= now:
        return Rotation(
            True, f"the enrollment token {token_id} expired at {_timestamp(expired_at)}"
        )
    if stored is not None and stored.uses_left < min_uses:
        return Rotation(True, f"the enrollment token has {stored.uses_left} use(s) left")
    if expires_at - now > timedelta(seconds=ttl_s):
        return Rotation(True, "enrollment.tokenTTLSeconds was shortened below the token's lifetime")
    rotate_at = expires_at - timedelta(seconds=ttl_s * ROTATE_WHEN_LEFT)
    if now >= rotate_at:
        return Rotation(True, "the enrollment token is in the last third of its lifetime")
    return Rotation(False, "the enrollment token is fresh", check_at=rotate_at)


def current_token_id(secret: dict[str, Any] | None) -> str | None:
    """The id of the token in the Secret (to revoke it when the pool goes)."""
    if secret is None:
        return None
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    token_id = annotations.get(TOKEN_ID_ANNOTATION)
    return str(token_id) if token_id else None


@dataclass(frozen=True)
class HeldToken:
    """The token an existing Secret holds, to rebuild the Secret without rotating."""

    token: str
    token_id: str
    created_at: datetime
    expires_at: datetime


def held_token(secret: dict[str, Any] | None) -> HeldToken | None:
    """The Secret's token and its annotations, or None when any part is missing."""
    if secret is None:
        return None
    encoded = (secret.get("data") or {}).get(workerenv.SECRET_TOKEN_KEY)
    annotations = (secret.get("metadata") or {}).get("annotations") or {}
    created_at = _parse_time(annotations.get(TOKEN_CREATED_ANNOTATION))
    expires_at = _parse_time(annotations.get(TOKEN_EXPIRES_ANNOTATION))
    token_id = annotations.get(TOKEN_ID_ANNOTATION)
    if not encoded or not token_id or created_at is None or expires_at is None:
        return None
    try:
        token = base64.b64decode(encoded, validate=True).decode()
    except ValueError:
        return None
    return HeldToken(token, str(token_id), created_at, expires_at)

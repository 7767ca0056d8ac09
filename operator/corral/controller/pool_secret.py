"""A pool's enrollment Secret: mint, rotate and write its token.

`corral.controller.enrollment` decides (pure: when to rotate, what the
Secret holds); this carries it out against the queue's token registry and
the API server, for `Reconciler` under the pool's lock.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from corral.api import WorkerPool
from corral.controller import naming
from corral.controller.config import OperatorConfig
from corral.controller.enrollment import (
    PREVIOUS_TOKEN_GRACE_S,
    PreviousToken,
    StoredToken,
    current_token_id,
    desired_secret,
    held_token,
    pool_token_uses,
    previous_token,
    rotation,
    secret_is_current,
    token_expiry,
)
from corral.controller.events import Event
from corral.controller.observed import pool_key
from corral.controller.ownership import foreign_object
from corral.controller.queue_access import DatabaseUnavailable, QueueAccess
from corral.kube import Kube, KubeError, owner_reference
from corral.queue import TokenNotFound

__all__ = ["PoolSecrets"]

log = logging.getLogger(__name__)


class PoolSecrets:
    def __init__(self, kube: Kube, queue: QueueAccess, config: OperatorConfig) -> None:
        self.kube = kube
        self.queue = queue
        self.config = config

    def reconcile(
        self,
        pool: WorkerPool,
        body: dict[str, Any],
        region: str,
        now: datetime,
        events: list[Event],
        *,
        withhold_url: bool = False,
    ) -> str | None:
        """Mint, rotate and write the enrollment Secret; the problem instead
        when a Secret of that name is someone else's (it is left alone).
        `withhold_url`: the operator's URL for workers may not reach them
        (its role holds too much), so the Secret carries none."""
        namespace = pool.metadata.namespace or "default"
        secret = self.kube.get_secret(namespace, naming.secret_name(pool))
        foreign = foreign_object("Secret", secret, pool)
        if foreign is not None:
            return foreign
        ttl_s = pool.spec.enrollment.token_ttl_seconds
        queues = list(pool.spec.queues)
        current_id = current_token_id(secret)
        stored, gone = None, False
        if current_id is not None and current_id.isdigit():
            try:
                info = self.queue.run(lambda q: q.get_token(int(current_id)))
                stored = StoredToken(
                    info.uses_remaining, info.expires_at, info.revoked_at, info.display_prefix
                )
            except TokenNotFound:
                gone = True
        decision = rotation(
            secret, ttl_s=ttl_s, now=now, region=region, queues=queues,
            stored=stored, token_gone=gone, min_uses=pool.spec.replicas.max,
        )  # fmt: skip
        held = None if decision.rotate else held_token(secret)
        previous = previous_token(secret)
        revoked = False  # the Secret must drop the previous token's annotations
        if held is None:
            if previous is not None:
                self.revoke(previous.token_id)  # a second rotation within the grace
            minted = self.queue.run(
                lambda q: q.create_token(
                    region, pool=pool_key(pool), ttl_s=ttl_s, uses=pool_token_uses(pool),
                    queues=queues,
                )
            )  # fmt: skip
            token, token_id = minted.secret, str(minted.info.id)
            created_at, expires_at = now, token_expiry(now, ttl_s)
            previous = None
            if current_id is not None:
                grace = now + timedelta(seconds=PREVIOUS_TOKEN_GRACE_S)
                previous = PreviousToken(current_id, grace)
            if secret is not None:
                events.append(Event("Normal", "TokenRotated", decision.reason))
        else:
            token, token_id = held.token, held.token_id
            created_at, expires_at = held.created_at, held.expires_at
            if previous is not None and previous.revoke_at <= now:
                self.revoke(previous.token_id)
                previous, revoked = None, True
        desired = desired_secret(
            pool,
            region=region,
            token=token,
            token_id=token_id,
            created_at=created_at,
            expires_at=expires_at,
            database_url=(
                None if pool.spec.database or withhold_url else self.config.worker_database_url
            ),
            previous=previous,
        )
        desired["metadata"]["ownerReferences"] = [owner_reference(body)]
        if held is not None and not revoked and secret_is_current(secret, desired):
            return None
        try:
            self.kube.apply(desired)
        except KubeError:
            if held is None:
                self.revoke_unwritten(token_id)
            raise
        return None

    def revoke_unwritten(self, token_id: str) -> None:
        """Revoke a token just minted for a Secret that could not be written:
        each failed write (a quota or a webhook refusing it, retried every
        resync) would otherwise leave a valid token behind for its whole TTL.
        Best effort: the write's error is the one to report."""
        try:
            self.revoke(token_id)
        except DatabaseUnavailable as exc:
            log.warning("could not revoke enrollment token %s, never written: %s", token_id, exc)

    def revoke(self, token_id: str) -> None:
        """Revoke a rotated-out token (gone already, or never stored: fine)."""
        if token_id.isdigit():
            with contextlib.suppress(TokenNotFound):
                self.queue.run(lambda q: q.revoke_token(int(token_id)))

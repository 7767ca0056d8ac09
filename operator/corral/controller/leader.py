"""Leader election among operator replicas, on a coordination.k8s.io Lease.

`corral operator` waits in `LeaderElection.acquire` before it starts kopf,
then keeps renewing from a background thread; if it cannot renew for a whole
lease duration it sets `lost` and the process exits, so a replica that was
cut off never acts next to the new leader. `claim` is the pure decision (a
unit test reads it like a table); the rest goes through `corral.kube`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.kube import Kube, KubeError

log = logging.getLogger(__name__)

LEASE_DURATION_S = 15
RENEW_EVERY_S = 5.0


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def claim(
    lease: dict[str, Any] | None,
    *,
    name: str,
    identity: str,
    now: datetime,
    duration_s: int = LEASE_DURATION_S,
) -> dict[str, Any] | None:
    """The Lease as `identity` should write it to hold leadership, or None
    when another holder's lease is still current."""
    if lease is None:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": {
                "holderIdentity": identity,
                "leaseDurationSeconds": duration_s,
                "acquireTime": _micro_time(now),
                "renewTime": _micro_time(now),
                "leaseTransitions": 0,
            },
        }
    spec = dict(lease.get("spec") or {})
    holder = spec.get("holderIdentity")
    renewed = _parse(spec.get("renewTime"))
    held_for = timedelta(seconds=int(spec.get("leaseDurationSeconds") or duration_s))
    expired = renewed is None or renewed + held_for < now
    if holder not in (None, "", identity) and not expired:
        return None
    if holder != identity:
        spec["acquireTime"] = _micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
    spec.update(
        holderIdentity=identity, renewTime=_micro_time(now), leaseDurationSeconds=duration_s
    )
    return {**lease, "spec": spec}


class LeaderElection:
    def __init__(self, kube: Kube, namespace: str, name: str, identity: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lost = threading.Event()
        self._last_renewal = 0.0

    def _try(self) -> bool:
        lease = self.kube.get_lease(self.namespace, self.name)
        wanted = claim(lease, name=self.name, identity=self.identity, now=datetime.now(UTC))
        if wanted is None:
            return False
        if lease is None:
            return self.kube.create_lease(self.namespace, wanted)
        return self.kube.replace_lease(self.namespace, wanted)

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or `stop` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if self._try():
                    self._last_renewal = time.monotonic()
                    log.info(
                        "leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name
                    )
                    return True
            except KubeError as exc:
                log.warning("leader election: %s", exc)
            if not announced:
                log.info(
                    "standing by: another replica holds Lease %s/%s", self.namespace, self.name
                )
                announced = True
            stop.wait(RENEW_EVERY_S)
        return False

    def keep_renewing(self, stop: threading.Event) -> threading.Thread:
        """Renew in the background; when leadership is gone, set `lost` and
        `stop` and send this process SIGTERM."""

        def _loop() -> None:
            while not stop.wait(RENEW_EVERY_S):
                try:
                    if self._try():
                        self._last_renewal = time.monotonic()
                        continue
                    log.error("leadership lost: another replica took Lease %s", self.name)
                except KubeError as exc:
                    if time.monotonic() - self._last_renewal < LEASE_DURATION_S:
                        log.warning("cannot renew the leader Lease yet: %s", exc)
                        continue
                    log.error("leadership lost: no renewal for %ss: %s", LEASE_DURATION_S, exc)
                self.lost.set()
                stop.set()
                # Stop kopf as Kubernetes would: its SIGTERM handler exits cleanly.
                os.kill(os.getpid(), signal.SIGTERM)
                return

        thread = threading.Thread(target=_loop, name="leader-lease", daemon=True)
        thread.start()
        return thread

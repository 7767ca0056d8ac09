"""Leader election among operator replicas, on a coordination.k8s.io Lease.

`corral operator` waits in `LeaderElection.acquire` before it starts kopf,
then keeps renewing from a background thread. Two rules keep two leaders from
ever acting at once, as client-go's leader election does:

- A standby judges a Lease expired by its own monotonic clock: the time since
  it last saw the Lease's record change, never by comparing the holder's
  `renewTime` with its local wall clock (clocks of two machines disagree).
- The leader steps down (sets `lost` and `stop`, sends itself SIGTERM, fails
  /healthz) when it has not renewed for `RENEW_DEADLINE_S`, which is shorter
  than the Lease's duration: it stops acting before anyone may take over.

Any error while renewing (an API server outage, a refused connection, a bug)
counts as a failed renewal; the renewing thread never dies of one. `claim` is
the pure decision (a unit test reads it like a table); the rest goes through
`corral.kube`.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from corral.kube import Kube

log = logging.getLogger(__name__)

LEASE_DURATION_S = 15  # a standby takes over this long after the record last changed
RENEW_DEADLINE_S = 10.0  # the leader steps down this long after its last renewal
RETRY_EVERY_S = 2.0  # renewals (and a standby's attempts) this often
# A stepped-down leader gives kopf this long to stop, then exits hard: a
# handler stuck in a call to an unreachable API server must not finish its
# write after a standby took over (10 s + 3 s stays inside the 15 s Lease).
STEP_DOWN_EXIT_S = 3.0
EXIT_LOST = 1


def _micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def claim(
    lease: dict[str, Any] | None,
    *,
    name: str,
    identity: str,
    now: datetime,
    observed_for_s: float,
    duration_s: int = LEASE_DURATION_S,
) -> dict[str, Any] | None:
    """The Lease as `identity` should write it to hold leadership, or None
    when another holder's lease is still current.

    `observed_for_s` is how long this replica has seen the Lease's current
    record unchanged (by its own monotonic clock); the holder's lease has
    expired once that exceeds the Lease's duration. `now` only stamps what
    this replica writes.
    """
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
    held_for_s = int(spec.get("leaseDurationSeconds") or duration_s)
    expired = observed_for_s > held_for_s
    if holder not in (None, "", identity) and not expired:
        return None
    if holder != identity:
        spec["acquireTime"] = _micro_time(now)
        spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
    spec.update(
        holderIdentity=identity, renewTime=_micro_time(now), leaseDurationSeconds=duration_s
    )
    return {**lease, "spec": spec}


def _record(lease: dict[str, Any] | None) -> tuple[Any, ...] | None:
    """What identifies one renewal of a Lease: it changes on every write."""
    if lease is None:
        return None
    spec = lease.get("spec") or {}
    return (
        spec.get("holderIdentity"),
        spec.get("renewTime"),
        spec.get("leaseTransitions"),
        (lease.get("metadata") or {}).get("resourceVersion"),
    )


class LeaderElection:
    def __init__(
        self,
        kube: Kube,
        namespace: str,
        name: str,
        identity: str,
        *,
        clock: Callable[[], float] = time.monotonic,
        exit: Callable[[int], Any] = os._exit,
    ) -> None:
        self.kube = kube
        self._exit = exit
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lost = threading.Event()
        self._stepping_down = threading.Lock()
        self._clock = clock
        self._last_renewal = 0.0
        self._seen: tuple[Any, ...] | None = None
        self._seen_at = clock()

    def _try(self) -> bool:
        """One attempt to take or renew the Lease; True when this replica now
        holds it. Raises whatever reading or writing the Lease raised."""
        attempt_at = self._clock()  # a renewal counts from before it was sent
        lease = self.kube.get_lease(self.namespace, self.name)
        record = _record(lease)
        if record != self._seen:
            self._seen, self._seen_at = record, attempt_at
        wanted = claim(
            lease,
            name=self.name,
            identity=self.identity,
            now=datetime.now(UTC),
            observed_for_s=attempt_at - self._seen_at,
        )
        if wanted is None:
            return False
        if lease is None:
            held = self.kube.create_lease(self.namespace, wanted)
        else:
            held = self.kube.replace_lease(self.namespace, wanted)
        if held:
            self._last_renewal = attempt_at
        return held

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or `stop` is set (False)."""
        announced = False
        while not stop.is_set():
            try:
                if self._try():
                    log.info(
                        "leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name
                    )
                    return True
            except Exception as exc:  # an outage or a bug: stand by and try again
                log.warning("leader election: %s", exc)
            if not announced:
                log.info(
                    "standing by: another replica holds Lease %s/%s", self.namespace, self.name
                )
                announced = True
            stop.wait(RETRY_EVERY_S)
        return False

    def renew_once(self) -> bool:
        """One round of the renewing loop: True while this replica still
        leads, False once it must step down (another holder, or no renewal
        for `RENEW_DEADLINE_S`)."""
        try:
            if self._try():
                return True
            log.error("leadership lost: another replica holds Lease %s", self.name)
            return False
        except Exception as exc:
            since = self._clock() - self._last_renewal
            if since < RENEW_DEADLINE_S:
                log.warning("cannot renew the leader Lease (%.1fs since the last): %s", since, exc)
                return True
            log.error(
                "leadership lost: no renewal for %.1fs (deadline %ss): %s",
                since,
                RENEW_DEADLINE_S,
                exc,
            )
            return False

    def step_down(self, stop: threading.Event) -> None:
        """Stop acting: `lost` fails /healthz, `stop` ends the operator's own
        threads, SIGTERM stops kopf the way Kubernetes would. Once only."""
        with self._stepping_down:
            if self.lost.is_set():
                return
            self.lost.set()
        stop.set()
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Thread(target=self._exit_later, name="leader-exit", daemon=True).start()

    def _exit_later(self) -> None:
        time.sleep(STEP_DOWN_EXIT_S)
        log.error(
            "leadership lost and the operator did not stop within %ss; exiting now",
            STEP_DOWN_EXIT_S,
        )
        logging.shutdown()
        self._exit(EXIT_LOST)

    def release(self) -> bool:
        """Give the Lease up on a clean shutdown (a rollout, a node drain), so
        that a standby leads at its next attempt rather than once the Lease
        has run out: an empty holder, as client-go's ReleaseOnCancel writes
        it, which `claim` treats as free. Only while this replica still holds
        it, and only once it has stopped acting (the caller stops the renewing
        thread first: a renewal after this would take the Lease back). True
        when released; a failure is logged (the Lease then runs out)."""
        if self.lost.is_set():
            return False
        try:
            lease = self.kube.get_lease(self.namespace, self.name)
            spec = dict((lease or {}).get("spec") or {})
            if lease is None or spec.get("holderIdentity") != self.identity:
                return False
            spec.update(holderIdentity="", leaseDurationSeconds=1,
                        renewTime=_micro_time(datetime.now(UTC)))  # fmt: skip
            released = self.kube.replace_lease(self.namespace, {**lease, "spec": spec})
        except Exception as exc:
            log.warning("could not release the leader Lease (it runs out instead): %s", exc)
            return False
        if released:
            log.info("released the leader Lease %s/%s", self.namespace, self.name)
        return released

    def overdue(self) -> bool:
        """No renewal for `RENEW_DEADLINE_S`: leadership must be given up,
        whether or not the attempt in flight ever returns."""
        return self._clock() - self._last_renewal >= RENEW_DEADLINE_S

    def keep_renewing(self, stop: threading.Event) -> threading.Thread:
        """Renew in the background; when leadership is gone, step down.

        A second thread watches the deadline: a request to an API server that
        hangs (up to the client's 30 s timeout) must not keep this replica
        acting past it.
        """

        def _renew() -> None:
            while not stop.wait(self._wait_s()):
                if not self.renew_once():
                    self.step_down(stop)
                    return

        def _watch() -> None:
            while not stop.wait(0.25):
                if self.overdue():
                    log.error(
                        "leadership lost: no renewal for %ss; stepping down", RENEW_DEADLINE_S
                    )
                    self.step_down(stop)
                    return

        threading.Thread(target=_watch, name="leader-deadline", daemon=True).start()
        thread = threading.Thread(target=_renew, name="leader-lease", daemon=True)
        thread.start()
        return thread

    def _wait_s(self) -> float:
        """Until the next attempt: the retry period, but never past the deadline."""
        left = RENEW_DEADLINE_S - (self._clock() - self._last_renewal)
        return max(0.05, min(RETRY_EVERY_S, left))

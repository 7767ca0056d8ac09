"""The autoscaler's clock: when to re-evaluate which pool.

Started by `corral.controller.cli` on the leader, beside kopf. It decides
nothing about replicas (that is `corral.controller.scaling`, carried out by
`Reconciler.autoscale`); it only decides *when*:

- a listener thread LISTENs on the queue's wake-up channel (`corral.queue`
  sends one NOTIFY per enqueue statement, naming the queue) and marks every
  pool serving that queue due at once;
- an evaluator thread evaluates due pools, and every pool again after its
  `autoscaling.pollSeconds` (the fallback when a notification is lost, and
  how falling demand is noticed: completions send no notification).

Bursts are coalesced: a pool is evaluated at most once per
`min_interval_s`, and notifications arriving during an evaluation fold into
the next one, so 10,000 single enqueues cost a handful of evaluations while
the first job of a burst is seen within milliseconds.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from corral.api import WorkerPool
from corral.controller import metrics
from corral.queue import ALL_QUEUES, Queue, mask_dsn

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.2  # at most this often per pool (seconds), however many notifications
LISTEN_RETRY_S = (0.5, 10.0)  # back-off between LISTEN reconnects: first, most (seconds)


@dataclass
class _Tracked:
    namespace: str
    name: str
    queues: frozenset[str]
    poll_s: float
    due_at: float  # monotonic
    last_at: float = -1e9  # when the last evaluation began (monotonic)


@dataclass
class Autoscaler:
    """Keeps the pools the reconciler reported, and evaluates them on time."""

    evaluate: Callable[[str, str], object]  # (namespace, name): Reconciler.autoscale
    database_url: str = field(repr=False)
    min_interval_s: float = MIN_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _pools: dict[str, _Tracked] = field(default_factory=dict)
    _wake: threading.Condition = field(default_factory=threading.Condition)

    # -- the pool index (called from kopf's handler threads) ----------------------

    def track(self, pool: WorkerPool) -> None:
        """Add or update a pool; a new one (or a changed spec) is due at once."""
        namespace = pool.metadata.namespace or "default"
        key = f"{namespace}/{pool.metadata.name}"
        queues = frozenset(pool.spec.queues)
        poll_s = float(pool.spec.autoscaling.poll_seconds)
        with self._wake:
            known = self._pools.get(key)
            if known is not None and known.queues == queues and known.poll_s == poll_s:
                return
            now = self.clock()
            self._pools[key] = _Tracked(
                namespace, pool.metadata.name, queues, poll_s, due_at=now,
                last_at=known.last_at if known else -1e9,
            )  # fmt: skip
            self._wake.notify()

    def forget(self, key: str) -> None:
        with self._wake:
            self._pools.pop(key, None)

    def notified(self, queues: set[str]) -> int:
        """Queues got jobs: pools serving them are due now (or as soon as their
        minimum interval allows). Returns how many pools became due."""
        now = self.clock()
        woken = 0
        with self._wake:
            for pool in self._pools.values():
                if ALL_QUEUES in queues or not pool.queues.isdisjoint(queues):
                    at = max(now, pool.last_at + self.min_interval_s)
                    if at < pool.due_at:
                        pool.due_at = at
                        woken += 1
            if woken:
                self._wake.notify()
        return woken

    def due(self) -> tuple[list[tuple[str, str]], float]:
        """The pools due now (marked as started) and the seconds until the next one."""
        with self._wake:
            return self._take_due()

    def _take_due(self) -> tuple[list[tuple[str, str]], float]:
        now = self.clock()
        ready = [p for p in self._pools.values() if p.due_at <= now]
        for pool in ready:
            pool.last_at = now
            pool.due_at = now + pool.poll_s
        upcoming = min((p.due_at for p in self._pools.values()), default=now + 1.0)
        return [(p.namespace, p.name) for p in ready], max(0.0, upcoming - now)

    def evaluated(self, key: str) -> None:
        """A reconcile just evaluated this pool: its next poll can wait."""
        now = self.clock()
        with self._wake:
            pool = self._pools.get(key)
            if pool is not None and pool.due_at > now:
                pool.due_at = max(pool.due_at, now + pool.poll_s)

    # -- the threads --------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        threading.Thread(
            target=self._evaluate_loop, args=(stop,), name="autoscaler", daemon=True
        ).start()
        threading.Thread(
            target=self._listen_loop, args=(stop,), name="autoscaler-listen", daemon=True
        ).start()

    def _evaluate_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._wake:
                ready, wait_s = self._take_due()
                if not ready:
                    # Checked and waited under one lock: a notification cannot
                    # slip in between and be missed until the next timeout.
                    self._wake.wait(timeout=min(wait_s, 1.0))
                    continue
            for namespace, name in ready:
                metrics.SCALE_EVALUATIONS.inc()
                try:
                    self.evaluate(namespace, name)
                except Exception as exc:  # the next round retries; the loop must not die
                    log.warning("autoscaling %s/%s failed: %s", namespace, name, exc)

    def _listen_loop(self, stop: threading.Event) -> None:
        delay = LISTEN_RETRY_S[0]
        while not stop.is_set():
            queue: Queue | None = None
            try:
                queue = Queue.connect(self.database_url)
                queue.listen()
                delay = LISTEN_RETRY_S[0]
                # Whatever arrived while not listening: look at every pool once.
                self.notified({ALL_QUEUES})
                while not stop.is_set():
                    named = queue.wait_for_jobs(1.0)
                    if named:
                        metrics.SCALE_NOTIFICATIONS.inc()
                        self.notified(named)
            except Exception as exc:
                log.warning(
                    "autoscaler: LISTEN connection lost (%s); polling every pool's "
                    "pollSeconds meanwhile, reconnecting in %.1fs",
                    mask_dsn(str(exc)).strip(),
                    delay,
                )
                stop.wait(delay)
                delay = min(delay * 2, LISTEN_RETRY_S[1])
            finally:
                if queue is not None:
                    with contextlib.suppress(Exception):
                        queue.close()

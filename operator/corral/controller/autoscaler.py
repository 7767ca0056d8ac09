"""The autoscaler's clock: when to re-evaluate which pool.

Started by `corral.controller.cli` on the leader, beside kopf. It decides
nothing about replicas (that is `corral.controller.scaling`, carried out by
`Reconciler.autoscale`); it only decides *when*:

- a listener thread LISTENs on the queue's wake-up channel (`corral.queue`
  sends one NOTIFY per enqueue statement, naming the queue) and marks every
  pool serving that queue due at once;
- an evaluator thread hands due pools to a few evaluation threads
  (`EVALUATORS`), one evaluation of a pool at a time, and every pool is due
  again after its `autoscaling.pollSeconds` (the fallback when a
  notification is lost, and how falling demand is noticed: completions send
  no notification). A pool whose evaluation is slow (waiting for its
  reconcile's lock, or for an API server or database that answers late)
  holds up one thread, not every other pool's reaction.

Bursts are coalesced: a pool is evaluated at most once per interval, and
notifications arriving meanwhile fold into the next evaluation. The interval
starts at `min_interval_s`, so the first job of a burst is seen within
milliseconds; each evaluation that changes nothing doubles it, up to
`max_interval_s` (or the pool's pollSeconds, if shorter), so a long stream
of single enqueues onto a pool that already has its workers costs one
evaluation every couple of seconds; an evaluation that changes something, or
a pause in the notifications longer than `max_interval_s`, brings it back.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from corral.api import WorkerPool
from corral.controller import metrics
from corral.queue import ALL_QUEUES, Queue, mask_dsn

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 0.2  # at most this often per pool (seconds), however many notifications
MAX_INTERVAL_S = 2.0  # the longest a stream that changes nothing stretches it to (seconds)
LISTEN_RETRY_S = (0.5, 10.0)  # back-off between LISTEN reconnects: first, most (seconds)
# A drain-first scale-down waits for its workers to report `drained` (idle
# ones do within a second); the pool is looked at again this soon, not a
# pollSeconds later, so drained pods do not linger; then twice as late each
# time while the drain lasts (busy workers finishing), up to pollSeconds.
DRAIN_RECHECK_S = 1.0
# Evaluations run at once (threads): each takes a database connection of the
# operator's few (`queue_access.DEFAULT_SIZE`) for a moment only.
EVALUATORS = 4


@dataclass
class _Tracked:
    namespace: str
    name: str
    queues: frozenset[str]
    poll_s: float
    due_at: float  # monotonic
    lead_s: float = 0.0  # autoscaling.activationLeadSeconds
    last_at: float = -1e9  # when the last evaluation began (monotonic)
    interval_s: float = MIN_INTERVAL_S  # the least time between two evaluations now
    notified_at: float = -1e9  # the last notification for one of its queues (monotonic)
    rechecks: int = 0  # rechecks in a row while a scale-down waits for drains


@dataclass
class Autoscaler:
    """Keeps the pools the reconciler reported, and evaluates them on time."""

    # (namespace, name) -> truthy when the evaluation changed something
    # (replicas, drains); a falsy answer stretches the pool's interval.
    evaluate: Callable[[str, str], object]
    database_url: str = field(repr=False)
    min_interval_s: float = MIN_INTERVAL_S
    max_interval_s: float = MAX_INTERVAL_S
    clock: Callable[[], float] = time.monotonic
    _pools: dict[str, _Tracked] = field(default_factory=dict)
    _wake: threading.Condition = field(default_factory=threading.Condition)
    _evaluating: set[str] = field(default_factory=set)  # keys of evaluations under way

    # -- the pool index (called from kopf's handler threads) ----------------------

    def track(self, pool: WorkerPool) -> None:
        """Add or update a pool; a new one (or a changed spec) is due at once."""
        namespace = pool.metadata.namespace or "default"
        key = f"{namespace}/{pool.metadata.name}"
        queues = frozenset(pool.spec.queues)
        poll_s = float(pool.spec.autoscaling.poll_seconds)
        lead_s = float(pool.spec.autoscaling.activation_lead_seconds)
        with self._wake:
            known = self._pools.get(key)
            if known is not None and (known.queues, known.poll_s, known.lead_s) == (
                queues,
                poll_s,
                lead_s,
            ):
                return
            now = self.clock()
            self._pools[key] = _Tracked(
                namespace, pool.metadata.name, queues, poll_s, due_at=now, lead_s=lead_s,
                last_at=known.last_at if known else -1e9, interval_s=self.min_interval_s,
            )  # fmt: skip
            self._wake.notify()

    def forget(self, key: str) -> None:
        with self._wake:
            self._pools.pop(key, None)

    def activation_leads(self) -> list[float]:
        """The activationLeadSeconds of every pool tracked (the operator's
        schedule firing goes that far ahead: `corral.controller.schedules`)."""
        with self._wake:
            return [p.lead_s for p in self._pools.values()]

    def notified(self, queues: set[str]) -> int:
        """Queues got jobs: pools serving them are due now (or as soon as their
        interval allows). Returns how many pools became due."""
        now = self.clock()
        woken = 0
        with self._wake:
            for pool in self._pools.values():
                if ALL_QUEUES in queues or not pool.queues.isdisjoint(queues):
                    if now - pool.notified_at > self.max_interval_s:
                        pool.interval_s = self.min_interval_s  # a new burst: at once
                    pool.notified_at = now
                    at = max(now, pool.last_at + pool.interval_s)
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
        """Under the lock: the due pools not being evaluated (marked as
        started), and the seconds until the next one; a pool being evaluated
        waits for that evaluation to end (`_finished` wakes the loop)."""
        now = self.clock()
        idle = [p for key, p in self._pools.items() if key not in self._evaluating]
        ready = [p for p in idle if p.due_at <= now]
        for pool in ready:
            pool.last_at = now
            pool.due_at = now + pool.poll_s
        upcoming = min((p.due_at for p in idle), default=now + 1.0)
        return [(p.namespace, p.name) for p in ready], max(0.0, upcoming - now)

    def settled(self, key: str, changed: bool) -> None:
        """An evaluation of this pool ended: one that changed nothing doubles
        its interval (up to the maximum or its pollSeconds); one that changed
        something brings it back to the minimum."""
        with self._wake:
            pool = self._pools.get(key)
            if pool is None:
                return
            if changed:
                pool.interval_s = self.min_interval_s
            else:
                most = max(self.min_interval_s, min(self.max_interval_s, pool.poll_s))
                pool.interval_s = min(pool.interval_s * 2, most)

    def recheck(self, key: str, after_s: float = DRAIN_RECHECK_S) -> None:
        """A scale-down waits for its workers to drain: evaluate this pool
        again within `after_s`, doubled for each recheck in a row (up to its
        pollSeconds), however long its poll interval."""
        now = self.clock()
        with self._wake:
            pool = self._pools.get(key)
            if pool is None:
                return
            wait_s = min(pool.poll_s, after_s * 2**pool.rechecks)
            pool.rechecks += 1
            if now + wait_s < pool.due_at:
                pool.due_at = now + wait_s
                self._wake.notify()

    def drained(self, key: str) -> None:
        """No scale-down waits for drains any more: the next one starts its
        rechecks at `DRAIN_RECHECK_S` again."""
        with self._wake:
            pool = self._pools.get(key)
            if pool is not None:
                pool.rechecks = 0

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
        with ThreadPoolExecutor(EVALUATORS, thread_name_prefix="autoscaler-eval") as pool:
            while not stop.is_set():
                with self._wake:
                    ready, wait_s = self._take_due()
                    if not ready:
                        # Checked and waited under one lock: a notification cannot
                        # slip in between and be missed until the next timeout.
                        self._wake.wait(timeout=min(wait_s, 1.0))
                        continue
                    self._evaluating.update(f"{ns}/{name}" for ns, name in ready)
                for namespace, name in ready:
                    pool.submit(self._evaluate_one, namespace, name)

    def _evaluate_one(self, namespace: str, name: str) -> None:
        key = f"{namespace}/{name}"
        metrics.SCALE_EVALUATIONS.inc()
        changed = True  # a failed evaluation does not stretch the interval
        try:
            with metrics.SCALE_EVALUATION_SECONDS.time():
                changed = bool(self.evaluate(namespace, name))
        except Exception as exc:  # the next round retries; the thread must not die
            log.warning("autoscaling %s failed: %s", key, exc)
        finally:
            with self._wake:  # a re-entrant lock: settled takes it too
                self.settled(key, changed)
                self._evaluating.discard(key)
                self._wake.notify()  # it may be due again already

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

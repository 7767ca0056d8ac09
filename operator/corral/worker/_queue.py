"""The worker's session with the queue: its connections and its identity.

The runtime's parts call these methods (`claims`, `jobs`, `completions`,
`heartbeat`, `upkeep`; `enrollment` at start); they call `corral.queue`'s
`AsyncQueue` (the only code that talks to PostgreSQL). A worker holds four
connections so that no kind of traffic waits behind another: claims,
completions, control (enrollment, heartbeat, failures, release, reaper) and
LISTEN.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from json import loads as _json_loads
from typing import Any

from corral._version import __version__
from corral.queue import (
    AsyncQueue,
    ClaimedJob,
    CredentialError,
    Failure,
    FailureReason,
    JobStateError,
    WorkerRemoved,
    WorkerState,
)
from corral.queue import EnrollmentError as TokenRefused
from corral.worker.config import WorkerSettings
from corral.worker.drain import Directive, Lifecycle
from corral.worker.enrollment import EnrollmentError, Identity

__all__ = ["ClaimedJob", "QueueSession", "RemovedError", "open_session"]


class RemovedError(RuntimeError):
    """The registry no longer accepts this worker (removed, or unknown credential)."""


class _Refused:
    """The registry refused this worker (removed, or its credential unknown):
    turn the queue's error into RemovedError, which makes the worker exit."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, WorkerRemoved | CredentialError):
            raise RemovedError(str(exc)) from None


_refused = _Refused()


class QueueSession:
    def __init__(self, settings: WorkerSettings, queues: Sequence[AsyncQueue]) -> None:
        self.settings = settings
        self._claimer, self._completer, self._control, self._listener = queues
        self._control_lock = asyncio.Lock()
        self.identity: Identity | None = None
        self._worker_id = 0
        self._credential = ""
        self._queues = list(settings.queues)

    async def close(self) -> None:
        for q in (self._claimer, self._completer, self._control, self._listener):
            with contextlib.suppress(Exception):
                await q.close()

    def _use(self, identity: Identity) -> None:
        self.identity = identity
        self._worker_id = int(identity.worker_id)
        self._credential = identity.credential

    # -------------------------------------------------------------- identity
    async def enroll(self, token: str) -> Identity:
        try:
            async with self._control_lock:
                enrolled = await self._control.enroll(
                    token,
                    name=self.settings.name,
                    queues=self._queues,
                    concurrency=self.settings.concurrency,
                    version=__version__,
                )
        except TokenRefused as exc:
            raise EnrollmentError(f"enrollment refused: {exc}") from None
        if self.settings.region and self.settings.region != enrolled.region:
            raise EnrollmentError(
                f"--region / CORRAL_REGION is {self.settings.region!r} but the enrollment token "
                f"is for region {enrolled.region!r}: use a token minted for {self.settings.region!r}"
            )
        identity = Identity(str(enrolled.worker_id), enrolled.credential)
        self._use(identity)
        return identity

    async def authenticate(self, identity: Identity) -> str:
        self._use(identity)
        with _refused:
            async with self._control_lock:
                state = await self._control.authenticate(
                    self._worker_id,
                    identity.credential,
                    name=self.settings.name,
                    queues=self._queues,
                    concurrency=self.settings.concurrency,
                    version=__version__,
                )
        return str(state)

    # ------------------------------------------------------------------ jobs
    async def claim(self, limit: int) -> list[ClaimedJob]:
        with _refused:
            return await self._claimer.claim(
                self._worker_id,
                self._credential,
                self._queues,
                batch=limit,
                lease_s=self.settings.lease_s,
            )

    async def complete_many(
        self, jobs: list[ClaimedJob], results: dict[int, Any] | None = None
    ) -> list[int]:
        """Complete `jobs` in one statement, keeping `results` (job id -> JSON
        data) with them. Returns the ids whose lease was lost (their
        completion was refused)."""
        return await self._completer.complete_many(jobs, results or None)

    async def fail(self, job: ClaimedJob, reason: FailureReason, error: str) -> None:
        async with self._control_lock:
            # A payload the handler refused (malformed, or a target the
            # executor guard refuses) fails the same way every time: dead now.
            retry = reason is not FailureReason.PAYLOAD
            await self._control.fail_many([Failure(job, error, reason, retry=retry)])

    async def release(self, jobs: list[ClaimedJob]) -> None:
        async with self._control_lock:
            await self._control.release_many(jobs)

    async def heartbeat(self, in_flight: int, lifecycle: Lifecycle) -> Directive:
        """Beat for a worker in `lifecycle`'s state; return what the registry
        asks of it. What to write first and what the answer means is the drain
        state machine's (corral.worker.drain): a drain the worker began itself
        (SIGTERM, POST /drain) is written to the registry first, so the row
        says `draining` and then `drained` whoever asked."""
        reported = lifecycle.reported()
        calls = lifecycle.registry_calls(reported)
        with _refused:
            async with self._control_lock:
                if calls.drain_self:
                    await self._control.drain_self(self._worker_id, self._credential)
                    lifecycle.drain_written()
                if calls.mark_drained:
                    with contextlib.suppress(JobStateError):
                        await self._control.mark_drained(self._worker_id, self._credential)
                registry_state = await self._control.heartbeat(
                    self._worker_id,
                    self._credential,
                    in_flight=in_flight,
                    lease_s=self.settings.lease_s,
                )
        if registry_state is WorkerState.REMOVED:
            raise RemovedError("the registry marks it removed")
        return lifecycle.heard(registry_state, reported)

    async def reap(self) -> int:
        async with self._control_lock:
            return await self._control.reap() or 0

    async def purge_finished_batch(self, older_than_s: float, batch: int) -> int | None:
        """One retention batch; None when another worker is purging."""
        async with self._control_lock:
            return await self._control.purge_finished_batch(older_than_s, batch=batch)

    async def wait_for_jobs(self, timeout_s: float) -> bool:
        """True when a NOTIFY named one of our queues (or all) within `timeout_s`."""
        named = await self._listener.wait_for_jobs(timeout_s)
        return bool(named) and ("*" in named or not named.isdisjoint(self._queues))

    async def listen(self) -> None:
        await self._listener.listen()

    async def reconnect_listener(self) -> None:
        """A fresh LISTEN connection after the old one broke."""
        with contextlib.suppress(Exception):
            await self._listener.close()
        self._listener = await AsyncQueue.connect(self.settings.database_url)
        await self._listener.listen()


def _loads(data: str | bytes) -> Any:
    """JSON payload decoder for claimed rows: `{}` (most jobs) without the
    decoder's encoding detection and regex passes, always a new object so
    that no two jobs share a payload; anything else through `json.loads`."""
    text = data if isinstance(data, str) else bytes(data).decode()
    if text == "{}":
        return {}
    if text == "null":
        return None
    return _json_loads(text)


async def open_session(settings: WorkerSettings) -> QueueSession:
    queues = [await AsyncQueue.connect(settings.database_url) for _ in range(4)]
    # The claim connection decodes every payload: give it the cheap decoder
    # (a per-connection adapter setting, no SQL involved).
    queues[0].decode_json_with(_loads)
    return QueueSession(settings, queues)

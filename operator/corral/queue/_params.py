"""Parameters in, records out: the pure half of every queue call.

`corral.queue._operations` builds each statement's parameters and turns its
rows into records (`corral.queue.records`) with these functions; the sync and
async clients (`corral.queue.client`) only execute. Nothing here opens a
connection, so the unit tier can call all of it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from corral.frozen import builder
from corral.queue import records
from corral.queue.errors import InvalidJob
from corral.queue.records import (
    Caller,
    ClaimedJob,
    Failure,
    JobSpec,
    JobState,
    Leased,
    WorkerState,
)

if TYPE_CHECKING:
    from corral.queue.view_records import (
        DispatchState,
        Job,
        QueueStats,
        Schedule,
        TokenInfo,
        Worker,
    )

NOTIFY_CHANNEL = "corral_jobs"
ALL_QUEUES = "*"
TOKEN_PREFIX = "crl_et_"
CREDENTIAL_PREFIX = "crl_wc_"
PRIORITY_MIN, PRIORITY_MAX = -1000, 1000
DEFAULT_LEASE_S = 60.0  # seconds a claim holds a job without a heartbeat
# A worker heartbeating (or enrolled) this recently is live: its region takes
# jobs (`enqueue`'s region check, `list_regions`).
LIVE_WORKER_S = 30.0
DEFAULT_DEPTH_CAP = 100_000
# A job's payload as JSON, at most: a queue row is read by every claim that
# passes it, and large data belongs in storage the payload points to.
PAYLOAD_MAX_BYTES = 1024 * 1024


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a token or credential: the only form the database keeps
    (same as the SQL function corral_hash_secret_v1)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_secret(prefix: str) -> str:
    """A random secret of 256 bits, prefixed so a leaked one is recognisable."""
    return prefix + secrets.token_urlsafe(32)


def validate(spec: JobSpec) -> None:
    if not spec.kind:
        raise InvalidJob("job kind is empty: name the handler that runs it")
    if spec.queue is not None and (spec.queue == "" or spec.queue == ALL_QUEUES):
        raise InvalidJob(f"queue name {spec.queue!r} is reserved or empty: pick another")
    if spec.result_queue is not None and spec.result_queue in ("", ALL_QUEUES):
        raise InvalidJob(
            f"result_queue {spec.result_queue!r} is reserved or empty: name the queue "
            "that receives the result, or pass None"
        )
    if not PRIORITY_MIN <= spec.priority <= PRIORITY_MAX:
        raise InvalidJob(
            f"priority {spec.priority} is out of range: use {PRIORITY_MIN}..{PRIORITY_MAX}"
        )
    if spec.max_attempts is not None and spec.max_attempts < 1:
        raise InvalidJob(f"max_attempts {spec.max_attempts} must be at least 1")
    for name in ("run_at", "expires_at"):
        value = getattr(spec, name)
        if value is not None and value.tzinfo is None:
            raise InvalidJob(f"{name} must be timezone-aware (got {value.isoformat()})")


def payload_json(spec: JobSpec) -> str:
    try:
        text = json.dumps(spec.payload if spec.payload is not None else {})
    except (TypeError, ValueError) as exc:
        raise InvalidJob(
            f"payload of a {spec.kind!r} job is not JSON ({exc}): pass dicts, lists, "
            "strings, numbers, booleans and None only"
        ) from None
    except RecursionError:
        raise InvalidJob(
            f"payload of a {spec.kind!r} job is nested too deeply to encode: flatten it"
        ) from None
    if len(text) > PAYLOAD_MAX_BYTES:  # json.dumps escapes to ASCII: characters are bytes
        raise InvalidJob(
            f"payload of a {spec.kind!r} job is {len(text):,} bytes as JSON, over the "
            f"{PAYLOAD_MAX_BYTES:,}-byte limit (corral.queue.PAYLOAD_MAX_BYTES): keep large "
            "data elsewhere (object storage, a table) and pass its key"
        )
    return text


def enqueue_params(specs: Sequence[JobSpec]) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters of one enqueue: `enqueue_v2` (which keeps
    each job's result queue) only when a job names one, so a database not yet
    migrated to 0010 still takes every other enqueue."""
    for spec in specs:
        validate(spec)
    columns = (
        [s.kind for s in specs],
        [s.queue for s in specs],
        [payload_json(s) for s in specs],
        [s.priority for s in specs],
        [s.region or None for s in specs],
        [s.run_at for s in specs],
        [s.expires_at for s in specs],
        [s.max_attempts for s in specs],
        [s.dedupe_key for s in specs],
    )
    if any(s.result_queue is not None for s in specs):
        return "enqueue_v2", (*columns, [s.result_queue for s in specs])
    return "enqueue_v1", columns


# One per claimed job: built without the frozen __init__'s per-field cost.
_claimed_job = builder(ClaimedJob)


def claimed_from_row(row: tuple[Any, ...]) -> ClaimedJob:
    return _claimed_job(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5] or None,
        row[6],
        row[7],
        row[8],
        row[9],
        row[10],
        row[11],
        row[12] if len(row) > 12 else None,
    )


class Reloaded(list[tuple[Any, ...]]):
    """Rows loaded value by value after the fast load failed
    (`corral.queue._rows.reload`): some value may be `records.Unloadable`."""


_CLAIM_TIMES = {9: "lease_expires_at", 10: "enqueued_at", 11: "run_at", 12: "scheduled_for"}


def claimed_leniently(row: tuple[Any, ...]) -> ClaimedJob:
    """`claimed_from_row` for a row of `Reloaded`: a timestamp Python cannot
    load ('-infinity') is replaced (now; scheduled_for: None) and the job's
    payload by `Unloadable` saying which, so the worker dead-letters that
    job alone."""
    bad = [v.error for v in row if isinstance(v, records.Unloadable)]
    if not bad:
        return claimed_from_row(row)
    values = list(row)
    now = dt.datetime.now(dt.UTC)
    for i, name in _CLAIM_TIMES.items():
        if i < len(values) and isinstance(values[i], records.Unloadable):
            values[i] = None if name == "scheduled_for" else now
    values[3] = records.Unloadable(
        "; ".join(bad) + ": a value written past corral's client (plain SQL?) that Python "
        "cannot hold (datetime takes years 1 to 9999; no infinity)"
    )
    return claimed_from_row(tuple(values))


def job_from_row(row: tuple[Any, ...]) -> Job:
    values = list(row)
    values[5] = values[5] or None
    values[6] = JobState(values[6])
    return records.Job(*values)


def schedule_from_row(row: tuple[Any, ...]) -> Schedule:
    values = list(row)
    values[8] = values[8] or None  # region '' means any
    values[19] = None if values[19] is None else JobState(values[19])
    return records.Schedule(*values)


def worker_from_row(row: tuple[Any, ...]) -> Worker:
    values = list(row)
    values[6] = WorkerState(values[6])
    return records.Worker(*values)


def token_from_row(row: tuple[Any, ...]) -> TokenInfo:
    return records.TokenInfo(*row)


def lease_params(jobs: Iterable[Leased]) -> tuple[list[int], list[Any]]:
    ids: list[int] = []
    tokens: list[int] = []
    for job in jobs:
        ids.append(job.id)
        tokens.append(job.lease_token)
    return ids, tokens


def int8_array(values: list[int]) -> str:
    """`values` as a PostgreSQL array literal (`{1,2,3}`), sent as untyped
    text that the statement's `::int8[]` cast parses. psycopg's list dumper
    runs a regex over every element (about 1 µs a job for a completion's ids
    and tokens); joining the digits costs a tenth of that."""
    return "{" + ",".join(map(str, map(int, values))) + "}"


def complete_params(
    jobs: Iterable[Leased], results: Mapping[int, Any] | None, worker: Caller | None = None
) -> tuple[str, tuple[Any, ...]]:
    """The statement and parameters of one completion batch. A worker
    (`worker` given) calls `complete_v5`, which checks its credential and
    that it holds each job, with one JSON text (or NULL) per job or no
    results at all. Without a caller (an admin's connection, a worker of the
    previous release): `complete_v1` when no job has a result, else
    `complete_v2`."""
    ids, tokens = lease_params(jobs)
    texts = result_texts(ids, results) if results else None
    id_array, token_array = int8_array(ids), int8_array(tokens)
    if worker is not None:
        return "complete_v5", (
            int(worker.worker_id),
            worker.credential,
            id_array,
            token_array,
            texts,
        )
    if texts is None:
        return "complete_v1", (id_array, token_array)
    return "complete_v2", (id_array, token_array, texts)


def result_texts(ids: list[int], results: Mapping[int, Any]) -> list[str | None]:
    """One JSON text (None: no result) per job id, in order."""
    texts: list[str | None] = []
    for job_id in ids:
        value = results.get(job_id)
        if value is None:
            texts.append(None)
            continue
        try:
            texts.append(json.dumps(value, allow_nan=False))
        except (TypeError, ValueError) as exc:
            raise InvalidJob(
                f"result of job {job_id} is not JSON ({exc}): return dicts, lists, strings, "
                "finite numbers, booleans or None"
            ) from None
    return texts


def fail_params(failures: Sequence[Failure]) -> tuple[Any, ...]:
    return (
        [f.job.id for f in failures],
        [f.job.lease_token for f in failures],
        [f.error for f in failures],
        [str(f.reason) for f in failures],
        [f.retry for f in failures],
    )


def stats_from_rows(
    hot: list[tuple[Any, ...]], finished: list[tuple[Any, ...]], dispatch: list[DispatchState]
) -> list[QueueStats]:
    paused = {d.queue for d in dispatch if d.paused}
    counts: dict[str, dict[JobState, int]] = {}
    oldest: dict[str, float | None] = {}
    for queue, state, count, age in hot:
        counts.setdefault(queue, {})[JobState(state)] = int(count)
        if age is not None:  # one row per state: keep the longest wait
            oldest[queue] = max(float(age), 0.0, oldest.get(queue) or 0.0)
    for queue, state, count in finished:
        counts.setdefault(queue, {})[JobState(state)] = int(count)
    return [
        records.QueueStats(
            queue=queue,
            counts=counts[queue],
            oldest_pending_age_s=oldest.get(queue),
            paused=queue in paused or ALL_QUEUES in paused,
        )
        for queue in sorted(counts)
    ]


def token_params(
    region: str, pool: str | None, ttl_s: float, uses: int, queues: Sequence[str] | None = None
) -> tuple[str, tuple[Any, ...]]:
    if not region:
        raise InvalidJob("an enrollment token needs a region (--region)")
    if ttl_s <= 0:
        raise InvalidJob(f"a token's ttl (--ttl) must be positive, such as 15m (got {ttl_s:g}s)")
    if uses < 1:
        raise InvalidJob(f"a token's uses (--uses) must be at least 1 (got {uses})")
    secret = new_secret(TOKEN_PREFIX)
    prefix = secret[: len(TOKEN_PREFIX) + 6]
    if queues is not None and not list(queues):
        raise InvalidJob("a token limited to queues needs at least one queue (--queue)")
    return secret, (
        hash_secret(secret), prefix, region, pool, ttl_s, uses,
        None if queues is None else list(queues),
    )  # fmt: skip

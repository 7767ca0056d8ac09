"""Guarantees that a deliberate bug once slipped past every other test:
claims skip locked rows instead of queueing behind them; a worker never holds
more jobs than its concurrency; one row per dedupe key however enqueues race.
Each test here went red with its guarantee broken on purpose (the claim
without SKIP LOCKED, a claim of a full batch regardless of free slots, the
dedupe index dropped)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from corral.queue import JobSpec, Queue
from tests.integration._enrolled import enroll, run_sql
from tests.integration._workers import WorkerProcess, mint_token

CLAIM = "SELECT id FROM {}(%s::int8, %s::text, %s::text[], %s::int4, %s::float8)"


# _v1: the admins' claim; _v5: the one workers call (queries.sql `claim_v5`).
@pytest.mark.parametrize("claim", ["corral_claim_v1", "corral_claim_v5"])
def test_a_claim_skips_rows_another_open_claim_holds_instead_of_waiting_for_them(
    database_url: str, claim: str
) -> None:
    statement = CLAIM.format(claim)
    with Queue.connect(database_url) as q:
        q.enqueue_many([JobSpec("noop", queue="q") for _ in range(10)])
        first, second = enroll(q, name="first"), enroll(q, name="second")
    with psycopg.connect(database_url) as holder, psycopg.connect(database_url) as other:
        # The first claim's transaction stays open: its rows stay locked.
        held = [
            r[0]
            for r in holder.execute(statement, (first.worker_id, first.credential, ["q"], 5, 30))
        ]
        other.execute("SET lock_timeout = '500ms'")  # waiting on a lock would fail, not hang
        got = [
            r[0]
            for r in other.execute(statement, (second.worker_id, second.credential, ["q"], 5, 30))
        ]
        other.commit()
        holder.commit()
    assert len(held) == 5
    assert len(got) == 5, "the second claim should have taken the five rows nobody held"
    assert not set(held) & set(got)


@pytest.mark.slow
def test_a_worker_never_holds_more_jobs_than_its_concurrency(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess]
) -> None:
    concurrency = 3
    with Queue.connect(database_url) as q:
        # Short jobs first free slots quickly; long jobs behind them must only
        # be claimed into free slots, never a full batch on top of busy ones.
        q.enqueue_many(
            [JobSpec("noop", queue="q") for _ in range(20)]
            + [JobSpec("sleep", {"seconds": 1.5}, queue="q") for _ in range(9)]
            + [JobSpec("noop", queue="q") for _ in range(20)]
        )
    w = WorkerProcess(
        database_url, tmp_path / "w", name="w", token=mint_token(database_url), queues="q",
        args=("--concurrency", str(concurrency)),
    )  # fmt: skip
    workers.append(w)
    w.wait_ready()
    peak = samples = 0
    deadline = time.monotonic() + 60
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FILTER (WHERE state = 'running'), count(*) FROM corral_jobs"
            ).fetchone()
            assert row is not None
            held, left = int(row[0]), int(row[1])
            peak = max(peak, held)
            samples += 1
            if left == 0:
                break
            time.sleep(0.02)
    assert left == 0, "every job should have finished"
    assert samples > 20  # the long jobs were watched for seconds, not one glance
    assert 1 <= peak <= concurrency, f"{peak} jobs held at once with --concurrency {concurrency}"


def _race(database_url: str, key: str, racers: int) -> list[int]:
    """`racers` threads enqueue one job with `key` at the same instant."""
    start = threading.Barrier(racers)
    ids: list[int] = []
    errors: list[BaseException] = []

    def enqueue() -> None:
        try:
            with Queue.connect(database_url) as q:
                start.wait()
                ids.append(q.enqueue("report", {"k": key}, dedupe_key=key))
        except BaseException as exc:  # reported below, not lost in a thread
            errors.append(exc)

    threads = [threading.Thread(target=enqueue) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return ids


def test_racing_enqueues_of_one_dedupe_key_store_one_row(database_url: str) -> None:
    for round_ in range(5):
        key = f"nightly-{round_}"
        ids = _race(database_url, key, racers=8)
        rows = run_sql(database_url, "SELECT id FROM corral_jobs WHERE dedupe_key = %s", (key,))
        assert len(rows) == 1, f"{len(rows)} rows stored for dedupe key {key!r}"
        assert set(ids) == {rows[0][0]}, "every racer should get the one job's id back"

"""Wake-ups: LISTEN/NOTIFY on enqueue, at most one notification per queue per statement."""

from __future__ import annotations

import asyncio

import psycopg

from corral.queue import NOTIFY_CHANNEL, AsyncQueue, JobSpec, Queue


def test_an_enqueue_wakes_a_listening_worker_with_the_queue_name(database_url: str) -> None:
    async def scenario() -> set[str]:
        async with await AsyncQueue.connect(database_url) as listener:
            await listener.listen()
            waiting = asyncio.create_task(listener.wait_for_jobs(timeout_s=10))
            await asyncio.sleep(0.05)
            async with await AsyncQueue.connect(database_url) as producer:
                await producer.enqueue("noop", queue="emails")
            return await waiting

    assert asyncio.run(scenario()) == {"emails"}


def test_one_bulk_enqueue_sends_one_notification_per_queue(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with Queue.connect(database_url) as queue:
            queue.enqueue_many([JobSpec("noop", queue=f"q{i % 2}") for i in range(500)])
        notes = [n.payload for n in listener.notifies(timeout=1.0)]
    assert sorted(notes) == ["q0", "q1"]


def test_a_delayed_job_sends_no_wake_up(database_url: str) -> None:
    import datetime as dt

    with psycopg.connect(database_url, autocommit=True) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        with Queue.connect(database_url) as queue:
            queue.enqueue("noop", run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        notes = [n.payload for n in listener.notifies(timeout=0.5)]
    assert notes == []

"""Runs the dashboard (corral.dashboard.app) on a real port in a background
thread, for the integration tier (tests/integration/test_dashboard_*.py, over
HTTP with `requests`) and the browser tier (tests/browser, Chromium).

The fixtures `seeded` (the queue seeded by `seed`) and `url` (the dashboard
serving it) are shared by both tiers: their conftests import them.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from corral.dashboard.app import create_app
from corral.dashboard.routes import Settings
from corral.dashboard.session import Auth

PASSWORD = "s3cret-dashboard-pw"
SECRET_KEY = "test-secret-key-not-for-production"


def settings(
    dsn: str, *, password: str | None = PASSWORD, kube: Callable[[], Any] | None = None
) -> Settings:
    return Settings(dsn=dsn, auth=Auth(secret_key=SECRET_KEY, password=password), kube=kube)


@contextmanager
def serve(config: Settings) -> Iterator[str]:
    """The dashboard on 127.0.0.1 (a free port) until the block ends; yields its URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(create_app(config), access_log=None)
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def start() -> None:
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            holder["port"] = runner.addresses[0][1]

        try:
            loop.run_until_complete(start())
        except BaseException as exc:  # surfaced to the caller below
            holder["error"] = exc
            ready.set()
            return
        ready.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="dashboard", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("the dashboard did not start within 30 s")
    if "error" in holder:
        raise RuntimeError(f"the dashboard did not start: {holder['error']!r}")
    try:
        yield f"http://127.0.0.1:{holder['port']}"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)


_CSRF = re.compile(r'name="csrf" (?:value|content)="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token of a page (its forms and its `<meta name="csrf">`)."""
    found = _CSRF.search(html)
    if not found:
        raise AssertionError("the page has no CSRF token in a form")
    return found.group(1)


@dataclass(frozen=True)
class Seeded:
    """What `seed` put in the database: ids to click on and secrets that no
    page may ever show."""

    pending: list[int]
    dead: dict[str, list[int]]
    worker_id: int
    worker_name: str
    spare_token: str
    credential: str
    schedule: str


def seed(dsn: str) -> Seeded:
    """A small fleet: pending mail jobs, dead jobs in two queues (errors
    'smtp timeout' and 'bad template'), one enrolled worker in region eu,
    pool fast, an unused enrollment token and a schedule."""
    from corral.queue import Failure, Queue, ScheduleSpec

    with Queue.connect(dsn) as q:
        pending = [
            q.enqueue("email", {"to": f"user{i}@example.com"}, queue="mail") for i in range(3)
        ]
        token = q.create_token("eu", pool="fast", ttl_s=3600, uses=1)
        who = q.enroll(token.secret, name="worker-eu-1", queues=["mail", "reports"], concurrency=4)
        dead: dict[str, list[int]] = {"mail": [], "reports": []}
        for queue, error in (("mail", "smtp timeout"), ("reports", "bad template")):
            for _ in range(2):
                dead[queue].append(
                    q.enqueue("render", {"report": queue}, queue=queue, max_attempts=1)
                )
            claimed = q.claim(who.worker_id, who.credential, [queue], batch=10)
            # the pending mail jobs are claimed too: hand them back untouched
            back = [c for c in claimed if c.id not in dead[queue]]
            failing = [c for c in claimed if c.id in dead[queue]]
            q.fail_many([Failure(c, error, retry=False) for c in failing], worker=who)
            if back:
                q.release_many(back, worker=who)
        spare = q.create_token("eu", pool="fast", ttl_s=3600, uses=5)
        q.create_schedule(
            ScheduleSpec(name="nightly", kind="report", every_s=3600, queue="reports")
        )
    return Seeded(
        pending=pending,
        dead=dead,
        worker_id=who.worker_id,
        worker_name="worker-eu-1",
        spare_token=spare.secret,
        credential=who.credential,
        schedule="nightly",
    )


@pytest.fixture
def seeded(database_url: str) -> Seeded:
    """The queue at `database_url` with the jobs, worker, token and schedule of `seed`."""
    return seed(database_url)


@pytest.fixture
def url(database_url: str, seeded: Seeded) -> Iterator[str]:
    """The dashboard serving the seeded queue (signed in with PASSWORD)."""
    with serve(settings(database_url)) as base:
        yield base

"""Runs the dashboard (corral.dashboard.app) on a real port in a background
thread, for the integration tier (tests/integration/test_dashboard_*.py, over
HTTP with `requests`) and the browser tier (tests/browser, Chromium).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

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


_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    if not found:
        raise AssertionError("the page has no CSRF token in a form")
    return found.group(1)

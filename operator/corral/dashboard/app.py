"""Wiring of the dashboard's aiohttp application: templates (Jinja2 with
autoescape, from this package), static files (vendored htmx), the session
middleware, the signed-out sessions' check, the security headers and the error pages. `corral.dashboard.cli` serves it; the
integration and browser tests build it with `create_app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web

from corral.dashboard import routes, views
from corral.dashboard.session import (
    COOKIE,
    CSRF_FIELD,
    LOGOUT_ACTION,
    LOGOUTS_READ,
    Revocations,
    Session,
    session_id,
)
from corral.queue import ConnectionLost, DsnError, QueueError, mask_dsn
from corral.queue.pool import AsyncQueuePool

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

HTMX_VERSION = "2.0.11"


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the signed session cookie (a fresh anonymous one when missing,
    tampered with or expired) and write it back when it changed."""
    auth = request.app[routes.SETTINGS].auth
    loaded = auth.load(request.cookies.get(COOKIE))
    request[routes.SESSION_KEY] = loaded or Session.fresh()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        _set_cookie(request, exc, loaded)
        raise
    _set_cookie(request, response, loaded)
    return response


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response as it is sent (error pages, redirects and static
    files too, which skip the middleware's return): no framing, no MIME
    sniffing, no referrer to other sites."""
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")


def _set_cookie(request: web.Request, response: web.StreamResponse, loaded: Session | None) -> None:
    current: Session = request[routes.SESSION_KEY]
    if current == loaded:
        return
    auth = request.app[routes.SETTINGS].auth
    response.set_cookie(
        COOKIE,
        auth.dump(current),
        max_age=auth.max_age_s,
        httponly=True,
        samesite="Strict",
        secure=auth.secure_cookies,
        path="/",
    )


@web.middleware
async def signed_out_sessions(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A signed-in cookie whose session signed out (here, in another process
    or before a restart) is a signed-out visitor: pages read-only, actions
    403, and its cookie replaced. Sign-outs are read from the audit table
    before every POST, and for pages at most every `Revocations.refresh_s`.
    Inside `database_errors`: a database it cannot read is a 503."""
    current: Session = request[routes.SESSION_KEY]
    if current.user is not None and await _signed_out(request, current):
        request[routes.SESSION_KEY] = Session.fresh()
    return await handler(request)


async def _signed_out(request: web.Request, current: Session) -> bool:
    revocations = request.app[routes.REVOCATIONS]
    sid = session_id(current)
    if revocations.revoked(sid, routes.now()):
        return True
    if request.method in ("GET", "HEAD") and not revocations.due():
        return False
    revocations.reading()
    async with routes.database(request) as q:
        found = await q.audit(LOGOUTS_READ, action=LOGOUT_ACTION)
    at = routes.now()
    revocations.learn(((e.target, e.at) for e in found), at)
    return revocations.revoked(sid, at)


@web.middleware
async def database_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A database that cannot be reached or refuses a read: a 503 page saying
    why (its URL's password masked), not a traceback."""
    try:
        return await handler(request)
    except (ConnectionLost, DsnError, QueueError, OSError) as exc:
        message = mask_dsn(str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc))
        raise routes._error(request, 503, f"the database cannot be read: {message}") from None


async def _context(request: web.Request) -> dict[str, Any]:
    auth = request.app[routes.SETTINGS].auth
    current: Session = request[routes.SESSION_KEY]
    return {
        "auth": auth,
        "user": current.user,
        "can_act": auth.actions_enabled and current.user is not None,
        "csrf": auth.csrf_token(current),
        "csrf_field": CSRF_FIELD,
        "request": request,
        "htmx_version": HTMX_VERSION,
    }


async def _pool(app: web.Application) -> AsyncIterator[None]:
    """One connection pool for the app's life (opened on start-up, closed on exit)."""
    pool = AsyncQueuePool(app[routes.SETTINGS].dsn)
    await pool.open()
    app[routes.POOL] = pool
    yield
    await pool.close()


FILTERS: dict[str, Callable[..., str]] = {
    "duration": views.duration,
    "stamp": views.stamp,
    "pretty_json": views.pretty_json,
    "segment": views.segment,
}


def create_app(settings: routes.Settings) -> web.Application:
    app = web.Application(middlewares=[session_middleware, database_errors, signed_out_sessions])
    app[routes.SETTINGS] = settings
    app[routes.REVOCATIONS] = Revocations(max_age_s=settings.auth.max_age_s)
    app.cleanup_ctx.append(_pool)
    app.on_response_prepare.append(security_headers)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("corral.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        context_processors=[_context],
        filters=FILTERS,
    )
    env = aiohttp_jinja2.get_env(app)
    env.globals["ago"] = views.ago
    app.router.add_routes(routes.routes)
    static = Path(str(resources.files("corral.dashboard").joinpath("static")))
    app.router.add_static("/static/", static, name="static")
    return app

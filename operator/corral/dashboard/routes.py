"""The dashboard's pages and actions (aiohttp handlers), registered by
`corral.dashboard.app.create_app`.

Every page is one route: a normal request gets the whole page, an htmx
request (`HX-Request`, the page's 2-second poll) only its live fragment.
Every action is a POST that `_action` checks (CSRF token, a password
configured, signed in), runs through `corral.queue`, records in the audit
table and answers with a message (htmx swaps it into `#flash` and the
`corral-changed` event refreshes the live fragment) or, without JavaScript,
a redirect back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from yarl import URL

from corral.dashboard import views
from corral.dashboard.session import (
    CSRF_FIELD,
    CSRF_HEADER,
    LOGOUT_ACTION,
    Auth,
    Revocations,
    Session,
    SignInThrottle,
    retry_after,
    session_id,
)
from corral.queue import (
    LIVE_WORKER_S,
    AsyncQueue,
    JobNotFound,
    QueueError,
    ScheduleNotFound,
    WorkerNotFound,
)
from corral.queue.pool import AsyncQueuePool

__all__ = ["Settings", "routes"]

routes = web.RouteTableDef()
log = logging.getLogger("corral.dashboard")


@dataclass(frozen=True, slots=True)
class Settings:
    """What the app needs: the database URL (never shown), sign-in settings and
    how to reach Kubernetes (`kube`: a callable returning a `corral.kube.Kube`,
    None: no cluster configured), and the sign-in throttle (its state, in
    memory: one per app)."""

    dsn: str
    auth: Auth
    kube: Callable[[], Any] | None = None
    throttle: SignInThrottle = field(default_factory=SignInThrottle)


SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("session", Session)
REVOCATIONS: web.AppKey[Revocations] = web.AppKey("revocations", Revocations)


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def session(request: web.Request) -> Session:
    return request[SESSION_KEY]


POOL: web.AppKey[AsyncQueuePool] = web.AppKey("pool", AsyncQueuePool)


@asynccontextmanager
async def database(request: web.Request) -> AsyncIterator[AsyncQueue]:
    """An AsyncQueue on a pooled connection, for one request."""
    async with request.app[POOL].queue() as q:
        yield q


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_htmx(request: web.Request) -> bool:
    return request.headers.get("HX-Request") == "true"


# Pages that are a heading over their live fragment: one template (page.html)
# with the title and the heading, instead of one file each.
_PLAIN_PAGES = {
    "overview": ("Overview", "Overview"),
    "pools": ("Pools", "WorkerPools"),
    "schedules": ("Schedules", "Schedules"),
    "workers": ("Workers", "Workers and regions"),
}


def render(
    request: web.Request, page: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    """The page `page`.html (page.html for a plain one), or only its live
    fragment `_page`.html for htmx."""
    context = {**context, "page": page}
    if is_htmx(request):
        name = f"_{page}.html"
    elif page in _PLAIN_PAGES:
        name = "page.html"
        context["title"], context["heading"] = _PLAIN_PAGES[page]
    else:
        name = f"{page}.html"
    return aiohttp_jinja2.render_template(name, request, context, status=status)


# -- pages --------------------------------------------------------------------


@routes.get("/", name="overview")
async def overview(request: web.Request) -> web.Response:
    at = now()
    async with database(request) as q:
        # Fold what finished since the last call into the per-minute
        # counters (cheap when nothing is new), then read them: the table's
        # finished columns and the charts never count the finished table.
        await q.rollup_throughput()
        stats = await q.recent_stats(minutes=views.FINISHED_WINDOW_MIN)
        dispatch = await q.dispatch_status()
        throughput = await q.throughput(minutes=60)
        depth = await q.depth_history(minutes=60)
    return render(
        request,
        "overview",
        {
            "states": views.OVERVIEW_STATES,
            "rows": views.stats_rows(stats, views.OVERVIEW_STATES),
            "oldest": views.oldest_waiting(stats),
            "paused": [d for d in dispatch if d.paused],
            "charts": [
                views.throughput_chart(throughput, end=at),
                views.depth_chart(depth, end=at),
            ],
            "now": at,
        },
    )


@routes.get("/jobs", name="jobs")
async def jobs(request: web.Request) -> web.Response:
    try:
        f = views.JobFilter.parse(request.query)
    except views.FilterError as exc:
        context = {"f": views.JobFilter(), "error": str(exc), "jobs": [], "states": views.STATES}
        return render(request, "jobs", context, 400)
    async with database(request) as q:
        found = await q.browse_jobs(
            queue=f.queue,
            kind=f.kind,
            state=f.state,
            region=f.region,
            error=f.error,
            before=f.before,
            limit=views.PAGE_SIZE,
        )
    return render(
        request,
        "jobs",
        {
            "f": f,
            "jobs": found,
            "states": views.STATES,
            "next_page": f.next_page(found),
            "now": now(),
        },
    )


@routes.get("/jobs/{id:\\d+}", name="job")
async def job(request: web.Request) -> web.Response:
    job_id = int(request.match_info["id"])
    async with database(request) as q:
        try:
            found = await q.get_job(job_id)
        except JobNotFound as exc:
            raise _error(request, 404, str(exc)) from None
        worker = None
        if found.worker_id is not None:
            try:
                worker = await q.get_worker(found.worker_id)
            except WorkerNotFound:
                worker = None
    return render(request, "job", {"job": found, "worker": worker, "now": now()})


@routes.get("/workers", name="workers")
async def workers(request: web.Request) -> web.Response:
    at = now()
    async with database(request) as q:
        registry = await q.list_workers()
        regions = await q.list_regions()
    return render(
        request,
        "workers",
        {
            "groups": views.group_workers(registry, at, live_s=LIVE_WORKER_S),
            "regions": regions,
            "now": at,
        },
    )


@routes.get("/pools", name="pools")
async def pools(request: web.Request) -> web.Response:
    at = now()
    make = settings(request).kube
    problem = None
    rows: list[views.PoolRow] = []
    if make is None:
        problem = "no Kubernetes cluster configured (start with --kubeconfig, or run in a cluster)"
    else:
        try:
            rows = await asyncio.to_thread(_read_pools, make, at)
        except Exception as exc:  # any failure to reach or read the API
            problem = f"the Kubernetes API cannot be read: {_first_line(exc)}"
    return render(request, "pools", {"pools": rows, "problem": problem, "now": at})


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _read_pools(make: Callable[[], Any], at: dt.datetime) -> list[views.PoolRow]:
    """Every WorkerPool and its Events: one Events call per namespace, not per pool."""
    kube = make()
    pools = kube.list_workerpools()
    by_pool: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for namespace in sorted({p.get("metadata", {}).get("namespace", "") for p in pools}):
        for event in kube.list_events(namespace, "WorkerPool"):
            key = (namespace, event.get("involvedObject", {}).get("name", ""))
            by_pool.setdefault(key, []).append(event)
    rows = []
    for pool in pools:
        meta = pool.get("metadata", {})
        events = by_pool.get((meta.get("namespace", ""), meta.get("name", "")), [])
        rows.append(views.pool_row(pool, events, at))
    return sorted(rows, key=lambda r: (r.namespace, r.name))


@routes.get("/schedules", name="schedules")
async def schedules(request: web.Request) -> web.Response:
    async with database(request) as q:
        found = await q.list_schedules()
    return render(request, "schedules", {"schedules": found, "now": now()})


@routes.get("/dispatch", name="dispatch")
async def dispatch(request: web.Request) -> web.Response:
    async with database(request) as q:
        states = await q.dispatch_status()
        stats = await q.recent_stats(minutes=views.FINISHED_WINDOW_MIN)
    by_queue = {d.queue: d for d in states}
    queues = sorted({s.queue for s in stats} | {d.queue for d in states if d.queue != "*"})
    everything = by_queue.get("*")
    return render(
        request,
        "dispatch",
        {
            "queues": [(name, by_queue.get(name)) for name in queues if name != "*"],
            "everything": everything,
            "now": now(),
        },
    )


@routes.get("/audit", name="audit")
async def audit(request: web.Request) -> web.Response:
    async with database(request) as q:
        entries = await q.audit(limit=100)
    return render(request, "audit", {"entries": entries, "now": now()})


@routes.get("/healthz", name="healthz")
async def healthz(request: web.Request) -> web.Response:
    """The pod's probes: the server answers (the database is the pages' business)."""
    return web.Response(text="ok\n")


# -- signing in ---------------------------------------------------------------


@routes.get("/login", name="login")
async def login_form(request: web.Request) -> web.Response:
    return aiohttp_jinja2.render_template(
        "login.html", request, {"page": "login", "next": _next(request.query.get("next"))}
    )


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    auth = settings(request).auth
    _check_csrf(request, form)
    if not auth.actions_enabled:
        raise _error(request, 403, _READ_ONLY)
    throttle = settings(request).throttle
    address = request.remote or "unknown"
    wait = throttle.wait(address)
    if wait > 0:  # not checked at all while it waits, the right password neither
        log.debug("dashboard sign-in from %s refused: %.0f s to wait", address, wait)
        seconds = retry_after(wait)
        response = _login_again(
            request, form, f"too many failed sign-ins: try again in {seconds} s", 429
        )
        response.headers["Retry-After"] = seconds
        return response
    user = str(form.get("user", ""))
    if not auth.check_password(user, str(form.get("password", ""))):
        failures = throttle.failed(address)
        wait = throttle.wait(address)
        then = f"; wait {retry_after(wait)} s before the next try" if wait > 0 else ""
        # The address, never what was typed (a password in the user field).
        log.warning(
            "dashboard sign-in failed from %s (%d in a row from that address%s)",
            address,
            failures,
            then,
        )
        return _login_again(request, form, f"wrong user or password{then}", 403)
    throttle.succeeded(address)
    request[SESSION_KEY] = Session.fresh(user=auth.user)  # a new nonce: a new CSRF token
    raise web.HTTPSeeOther(_next(form.get("next")))


def _login_again(request: web.Request, form: Any, error: str, status: int) -> web.Response:
    """The sign-in form again, saying why (`error`)."""
    context = {"page": "login", "next": _next(form.get("next")), "error": error}
    return aiohttp_jinja2.render_template("login.html", request, context, status=status)


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    _check_csrf(request, await request.post())
    ended = session(request)
    request[SESSION_KEY] = Session.fresh()  # this browser's cookie: anonymous again
    if ended.user is not None:
        # Ends the session for any copy of its cookie too: refused here at
        # once, and by every process (a restarted one, a replica) that reads
        # the audit table (corral.dashboard.app.signed_out_sessions).
        sid = session_id(ended)
        request.app[REVOCATIONS].revoke(sid, now())
        async with database(request) as q:
            await q.record_audit(ended.user, LOGOUT_ACTION, f"session:{sid}", None)
    raise web.HTTPSeeOther("/")


def _next(value: Any) -> str:
    """A path of this site to go back to after signing in or acting (a
    link's `next=`, a form's `next`), as aiohttp will write it in Location;
    anything else is "/".

    Checked as a browser will read the header, not as the raw string: yarl
    (which builds aiohttp's Location) drops TAB, CR and LF, so "/\t/x" was
    written "//x", another site; browsers read a backslash as a slash. So a
    control character or a backslash anywhere refuses it, and what yarl makes
    of the rest must be a bare path (no scheme, no host) starting with a
    single "/"."""
    text = str(value or "")
    if not text.startswith("/") or text.startswith("//") or "\\" in text:
        return "/"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text):
        return "/"
    try:
        written = str(URL(text))
    except ValueError:
        return "/"
    parts = urlsplit(written)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return "/"
    if not written.startswith("/") or written.startswith("//") or "\\" in written:
        return "/"
    return written


# -- actions ------------------------------------------------------------------

_READ_ONLY = (
    "the dashboard is read-only: no password is configured. Set CORRAL_DASHBOARD_PASSWORD "
    "or start it with --password-file to enable actions"
)


def _error(request: web.Request, status: int, message: str) -> web.HTTPException:
    """An HTTP error whose body is the message (a flash for htmx, a page otherwise)."""
    name = "_flash.html" if is_htmx(request) else "error.html"
    response = aiohttp_jinja2.render_template(
        name, request, {"page": "error", "message": message, "ok": False, "status": status}
    )
    cls = web.HTTPException
    for candidate in (
        web.HTTPBadRequest,
        web.HTTPForbidden,
        web.HTTPNotFound,
        web.HTTPConflict,
        web.HTTPServiceUnavailable,
    ):
        if candidate.status_code == status:
            cls = candidate
    return cls(text=response.text, content_type="text/html")


def _check_csrf(request: web.Request, form: Any) -> None:
    token = form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not settings(request).auth.csrf_ok(session(request), token):
        raise _error(
            request,
            403,
            "refused: this form's CSRF token is missing or out of date. "
            "Reload the page and try again",
        )


Action = Callable[[AsyncQueue, Any], Awaitable[tuple[str, str, str, dict[str, Any] | None]]]


async def _action(request: web.Request, run: Action) -> web.StreamResponse:
    """Check and run one mutation; `run` returns (message, action, target, detail)."""
    form = await request.post()
    _check_csrf(request, form)
    auth = settings(request).auth
    if not auth.actions_enabled:
        raise _error(request, 403, _READ_ONLY)
    user = session(request).user
    if user is None:
        raise _error(request, 403, "sign in to do this (the Sign in link, top right)")
    async with database(request) as q:
        try:
            message, action, target, detail = await run(q, form)
        except (JobNotFound, WorkerNotFound, ScheduleNotFound) as exc:
            raise _error(request, 404, str(exc)) from None
        except QueueError as exc:
            raise _error(request, 409, str(exc)) from None
        await q.record_audit(user, action, target, detail)
    if not is_htmx(request):
        raise web.HTTPSeeOther(_next(form.get("next")))
    response = aiohttp_jinja2.render_template(
        "_flash.html", request, {"message": message, "ok": True}
    )
    response.headers["HX-Trigger"] = "corral-changed"
    return response


def _int(request: web.Request, name: str) -> int:
    return int(request.match_info[name])


@routes.post("/jobs/{id:\\d+}/{verb:cancel|requeue}")
async def job_action(request: web.Request) -> web.StreamResponse:
    job_id = _int(request, "id")
    verb = request.match_info["verb"]

    async def run(q: AsyncQueue, form: Any) -> tuple[str, str, str, dict[str, Any] | None]:
        await (q.cancel(job_id) if verb == "cancel" else q.requeue(job_id))
        done = "cancelled" if verb == "cancel" else "requeued"
        return f"job {job_id} {done}", f"job.{verb}", f"job:{job_id}", None

    return await _action(request, run)


@routes.post("/jobs/requeue-dead")
async def requeue_dead(request: web.Request) -> web.StreamResponse:
    async def run(q: AsyncQueue, form: Any) -> tuple[str, str, str, dict[str, Any] | None]:
        try:
            f = views.JobFilter.parse({k: str(v) for k, v in form.items()})
        except views.FilterError as exc:
            raise _error(request, 400, str(exc)) from None
        n = await q.requeue_dead(queue=f.queue, kind=f.kind, region=f.region, error=f.error)
        detail = f.terms(("queue", "kind", "region", "error"))  # the state is "dead"
        return (
            f"{n} dead jobs requeued",
            "jobs.requeue_dead",
            f.queue or "*",
            {**detail, "count": n},
        )

    return await _action(request, run)


@routes.post("/workers/{id:\\d+}/{verb:drain|remove}")
async def worker_action(request: web.Request) -> web.StreamResponse:
    worker_id = _int(request, "id")
    verb = request.match_info["verb"]

    async def run(q: AsyncQueue, form: Any) -> tuple[str, str, str, dict[str, Any] | None]:
        if verb == "drain":
            w = await q.request_drain(worker_id)
            return f"worker {w.name} draining", "worker.drain", f"worker:{worker_id}", None
        w = await q.remove_worker(worker_id)
        return f"worker {w.name} removed", "worker.remove", f"worker:{worker_id}", None

    return await _action(request, run)


@routes.post("/schedules/{name}/{verb:pause|resume|run}")
async def schedule_action(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    verb = request.match_info["verb"]

    async def run(q: AsyncQueue, form: Any) -> tuple[str, str, str, dict[str, Any] | None]:
        if verb == "pause":
            await q.pause_schedule(name)
            return f"schedule {name} paused", "schedule.pause", f"schedule:{name}", None
        if verb == "resume":
            await q.resume_schedule(name)
            return f"schedule {name} resumed", "schedule.resume", f"schedule:{name}", None
        job_id = await q.run_schedule_now(name)
        return (
            f"schedule {name} enqueued job {job_id}",
            "schedule.run_now",
            f"schedule:{name}",
            {"job": job_id},
        )

    return await _action(request, run)


@routes.post("/dispatch/pause")
async def pause_dispatch(request: web.Request) -> web.StreamResponse:
    async def run(q: AsyncQueue, form: Any) -> tuple[str, str, str, dict[str, Any] | None]:
        queue = str(form.get("queue") or "").strip() or None
        reason = str(form.get("reason") or "").strip() or None
        if queue == "*":
            queue = None
        await q.pause(queue, reason)
        shown = queue or "every queue"
        detail = {"reason": reason} if reason else None
        return f"dispatch paused: {shown}", "dispatch.pause", queue or "*", detail

    return await _action(request, run)


@routes.post("/dispatch/resume")
async def resume_dispatch(request: web.Request) -> web.StreamResponse:
    async def run(q: AsyncQueue, form: Any) -> tuple[str, str, str, dict[str, Any] | None]:
        queue = str(form.get("queue") or "").strip() or None
        if queue == "*":
            queue = None
        await q.resume(queue)
        return f"dispatch resumed: {queue or 'every queue'}", "dispatch.resume", queue or "*", None

    return await _action(request, run)

"""Job handlers: the `Job` a handler receives, the `@corral.handler` decorator
and the registry the worker looks kinds up in.

Users decorate functions in their own modules; `corral worker --handlers
myapp.jobs` (or the `corral.handlers` entry-point group) imports those modules,
which registers them. The runtime (`corral.worker.runtime`) asks the registry
for a kind's `Handler` once per job.

Delivery is at-least-once: a job whose worker dies, or whose lease lapses, runs
again. `Job.id` together with `Job.attempt` is the idempotency key a handler
should use for side effects it must not repeat.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypedDict, TypeVar, Unpack, overload

from corral.distinfo import entry_points
from corral.worker.payloadmodel import LazyPayload, is_validation_error

if TYPE_CHECKING:
    # pydantic is imported by what uses it (a handler's payload model, the
    # first payload validated, `defer`), never by a worker's start.
    from pydantic import BaseModel, ValidationError

    from corral.queue import AsyncQueue, Queue
    from corral.queue.schedules import ScheduleSpec

__all__ = [
    "ENTRY_POINT_GROUP",
    "Every",
    "Handler",
    "HandlerError",
    "HandlerFunction",
    "HandlerRegistry",
    "Job",
    "LazyPayload",  # corral.worker.payloadmodel's, named here too
    "PayloadError",
    "declared_schedules",
    "every",
    "handler",
    "registry",
    "schedule",
]

ENTRY_POINT_GROUP = "corral.handlers"

P = TypeVar("P")
F = TypeVar("F", bound=Callable[..., Any])
Params = ParamSpec("Params")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Job(Generic[P]):
    """One delivery of a job to a handler.

    Delivery is at-least-once: the same job may be delivered again after a
    worker crash or a lapsed lease. Use `id` (stable across deliveries) and
    `attempt` (1 on the first delivery) as the idempotency key.
    """

    id: int
    kind: str
    queue: str
    payload: P
    attempt: int = 1
    max_attempts: int = 0
    region: str | None = None
    enqueued_at: datetime | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    # The occurrence a schedule enqueued this job for (None: not a schedule's
    # job): the natural key of "the 03:00 run", stable across retries.
    scheduled_for: datetime | None = None

    @property
    def idempotency_key(self) -> str:
        """`"<id>"` — the same for every delivery of this job."""
        return str(self.id)


class HandlerError(Exception):
    """Raise from a handler to fail the job with this message (retried per budget)."""


class PayloadError(HandlerError):
    """The payload does not decode or does not match the handler's payload model."""


HandlerFn = Callable[[Job[Any]], Awaitable[Any]] | Callable[[Job[Any]], Any]


@dataclass(frozen=True, slots=True)
class Handler:
    """A registered handler: how to call it and what it expects."""

    name: str
    fn: Callable[..., Any]
    is_async: bool
    payload_model: type[BaseModel] | LazyPayload | None = None
    timeout_s: float | None = None  # None: the worker's --job-timeout
    # Safe to start in the claim loop's own task (corral.worker.jobs.Jobs.start).
    eager: bool = False

    def prepare(self, job: Job[Any]) -> Job[Any]:
        """Validate the payload into the handler's model, if it declares one."""
        if self.payload_model is None:
            return job
        try:
            model = self.payload_model.model_validate(job.payload)
        except ValueError as exc:  # pydantic's ValidationError is one
            if not is_validation_error(exc):
                raise
            raise _mismatch("payload", self.payload_model, exc) from None
        return dataclasses.replace(job, payload=model)


def _mismatch(
    what: str, model: type[BaseModel] | LazyPayload, exc: ValidationError
) -> PayloadError:
    """ "WHAT does not match MODEL: field: why; ...", each field by its path."""
    fields = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '<payload>'}: {e['msg']}" for e in exc.errors()
    )
    return PayloadError(f"{what} does not match {model.__name__}: {fields}")


class DeferOptions(TypedDict, total=False):
    """What `defer` and `defer_async` pass on to `Queue.enqueue` (its defaults)."""

    queue: str | None
    priority: int
    region: str | None
    run_at: datetime | None
    expires_at: datetime | None
    max_attempts: int | None
    dedupe_key: str | None
    allow_empty_region: bool
    result_queue: str | None


def _validated_payload(kind: str, model: type[BaseModel] | None, payload: Any) -> Any:
    """What `defer` stores: a pydantic model as JSON data, and a payload checked
    against the handler's model before it is enqueued, not when a worker runs it."""
    from pydantic import BaseModel, ValidationError

    if isinstance(payload, BaseModel):
        return payload.model_dump(mode="json")
    if model is not None:
        try:
            model.model_validate(payload)
        except ValidationError as exc:
            raise _mismatch(f"{kind}.defer: payload", model, exc) from None
    return payload


class HandlerFunction(Generic[Params, R]):
    """What `@corral.handler` returns: the function, still directly callable
    (in tests, say), plus `defer` / `defer_async`, which enqueue a job of its
    kind, the way `task.defer` (procrastinate) or `task.delay` (Celery) do.

        with corral.connect(url) as queue:
            send_email.defer(queue, {"to": "ada@example.com"}, priority=5)

    Pass a psycopg connection instead of a queue to enqueue inside the
    transaction open on it: the job commits, or rolls back, with your writes.
    """

    __name__: str  # with __doc__, __module__ ...: the function's, set by update_wrapper

    def __init__(
        self, fn: Callable[Params, R], kind: str, payload_model: type[BaseModel] | None
    ) -> None:
        self.fn = fn
        self.kind = kind
        self.payload_model = payload_model
        functools.update_wrapper(self, fn)

    def __call__(self, *args: Params.args, **kwargs: Params.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<corral handler {self.kind!r}: {_where(self.fn)}>"

    def defer(
        self,
        target: Queue | Any,
        payload: Any = None,
        **options: Unpack[DeferOptions],
    ) -> int:
        """Enqueue a job of this handler's kind on `target` (a `corral.Queue`,
        or a psycopg `Connection` whose open transaction the job joins) and
        return its id. `queue` defaults to the kind's name; the other options
        are `Queue.enqueue`'s (a `region` without workers is refused unless
        `allow_empty_region`). A payload that does not match the handler's
        payload model raises `PayloadError` here, before anything is written."""
        from corral.queue import Queue

        return Queue.of(target).enqueue(
            self.kind, _validated_payload(self.kind, self.payload_model, payload), **options
        )

    async def defer_async(
        self,
        target: AsyncQueue | Any,
        payload: Any = None,
        **options: Unpack[DeferOptions],
    ) -> int:
        """`defer` on asyncio: `target` is a `corral.AsyncQueue` or a psycopg
        `AsyncConnection`."""
        from corral.queue import AsyncQueue

        return await AsyncQueue.of(target).enqueue(
            self.kind, _validated_payload(self.kind, self.payload_model, payload), **options
        )


class HandlerRegistry:
    """Kind name -> `Handler`. Registering a name twice is an error (a typo
    or a copy-paste that would silently route jobs to the wrong function)."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(
        self,
        name: str,
        fn: Callable[..., Any],
        *,
        payload: type[BaseModel] | LazyPayload | None = None,
        timeout_s: float | None = None,
        replace: bool = False,
        eager: bool = False,
    ) -> Handler:
        if not name or not isinstance(name, str):
            raise ValueError("a handler needs a non-empty name, e.g. @corral.handler('send-email')")
        if not callable(fn):
            raise TypeError(f"handler {name!r}: {fn!r} is not callable")
        if isinstance(fn, HandlerFunction):  # `module:function` of a decorated function
            payload = payload or fn.payload_model
            fn = fn.fn
        existing = self._handlers.get(name)
        if existing is not None and not replace and existing.fn is not fn:
            raise ValueError(
                f"handler {name!r} is already registered by {_where(existing.fn)}; "
                f"pick another name for {_where(fn)}"
            )
        handler_ = Handler(
            name=name,
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            payload_model=payload,
            timeout_s=timeout_s,
            eager=eager,
        )
        self._handlers[name] = handler_
        return handler_

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> list[str]:
        return sorted(self._handlers)

    def update(self, other: HandlerRegistry) -> None:
        for name, h in other._handlers.items():
            self.register(name, h.fn, payload=h.payload_model, timeout_s=h.timeout_s)

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[Handler]:
        return iter(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    def load_module(self, path: str) -> None:
        """Import `path` (a module, or `module:function`) so its decorators run.

        `module:function` registers that one function under its own name.
        """
        module_name, _, attr = path.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ValueError(f"--handlers {path!r}: cannot import {module_name!r}: {exc}") from exc
        if attr:
            fn = getattr(module, attr, None)
            if fn is None:
                raise ValueError(f"--handlers {path!r}: {module_name!r} has no attribute {attr!r}")
            self.register(getattr(fn, "__corral_handler__", attr), fn)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[str]:
        """Load every entry point of `group`: a module (its decorators register)
        or a callable (registered under the entry point's name)."""
        loaded = []
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
            except Exception as exc:
                raise ValueError(f"entry point {ep.name} = {ep.value} ({group}): {exc}") from exc
            if callable(obj) and not inspect.ismodule(obj):
                self.register(ep.name, obj)
            loaded.append(ep.name)
        return loaded


def _where(fn: Callable[..., Any]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


# The registry `@handler` writes into; the worker starts from a copy of it.
registry = HandlerRegistry()


@overload
def handler(name: Callable[Params, R], /) -> HandlerFunction[Params, R]: ...


@overload
def handler(
    name: str | None = None,
    /,
    *,
    payload: type[BaseModel] | None = None,
    timeout: float | None = None,
    schedule: Every | None = None,
) -> Callable[[Callable[Params, R]], HandlerFunction[Params, R]]: ...


def handler(
    name: str | Callable[Params, R] | None = None,
    /,
    *,
    payload: type[BaseModel] | None = None,
    timeout: float | None = None,
    schedule: Every | None = None,
) -> HandlerFunction[Params, R] | Callable[[Callable[Params, R]], HandlerFunction[Params, R]]:
    """Register a function as the handler for jobs of kind `name`.

        @corral.handler("send-email", payload=Email, timeout=30)
        async def send_email(job: corral.Job[Email]) -> None: ...

    Sync and async functions both work; a sync handler runs in a thread so it
    cannot block the worker (but it cannot be interrupted either: past its
    timeout, or at shutdown, the job is failed or handed back while the thread
    runs on — prefer async handlers for work that must stop on time). `payload` (a pydantic model) validates the job's
    payload first: a mismatch fails the job with the field that is wrong.
    `timeout` (seconds) overrides the worker's `--job-timeout`.
    `schedule` (`corral.every("5m")`, `corral.every(cron="0 3 * * *")`)
    declares a schedule named after the kind that enqueues its jobs; every
    worker loading this module upserts it at start-up.

    Delivery is at-least-once: make side effects idempotent on `job.id`.
    The result stays directly callable like the function (in tests, say) and
    adds `defer(queue_or_conn, payload, priority=...)` (and `defer_async`),
    which enqueue a job of this kind (`HandlerFunction`).
    """
    if callable(name):
        fn = name
        registry.register(fn.__name__, fn)
        return HandlerFunction(fn, fn.__name__, None)

    def decorate(fn: Callable[Params, R]) -> HandlerFunction[Params, R]:
        kind = name or fn.__name__
        if schedule is not None:
            _declare(schedule.spec(kind, kind))
        registry.register(kind, fn, payload=payload, timeout_s=timeout)
        fn.__corral_handler__ = kind  # type: ignore[attr-defined]
        return HandlerFunction(fn, kind, payload)

    return decorate


# -- declared schedules ----------------------------------------------------------

# Schedule name -> spec: what `@handler(..., schedule=...)` and `schedule()`
# declared in the modules loaded; the worker upserts each at start-up.
_declared: dict[str, ScheduleSpec] = {}


def declared_schedules() -> list[ScheduleSpec]:
    """The schedules declared so far, by name."""
    return [_declared[name] for name in sorted(_declared)]


def _declare(spec: ScheduleSpec) -> ScheduleSpec:
    existing = _declared.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(
            f"schedule {spec.name!r} is declared twice with different specs "
            f"({existing.describe()} and {spec.describe()}): give one of them another name"
        )
    _declared[spec.name] = spec
    return spec


@dataclass(frozen=True, slots=True)
class Every:
    """When a handler's schedule fires (`corral.every`), without its name
    and kind: `@corral.handler` supplies both (the kind)."""

    every_s: float | str | None = None
    cron: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def spec(self, name: str, kind: str) -> ScheduleSpec:
        from corral.queue.schedules import ScheduleSpec

        return ScheduleSpec(name, kind, every_s=self.every_s, cron=self.cron, **self.options)


def every(
    interval: float | str | None = None, /, *, cron: str | None = None, **options: Any
) -> Every:
    """A schedule for `@corral.handler("kind", schedule=corral.every("5m"))`:
    every `interval` (seconds, or '30s', '5m', '1h'), or on `cron` ('0 3 * *
    *', '@hourly'); `options` are ScheduleSpec's (timezone, payload, queue,
    catch_up, overlap, jitter_s, ...). Checked now: a bad one raises
    InvalidSchedule naming the field."""
    schedule_ = Every(interval, cron, dict(options))
    schedule_.spec("check", "check")
    return schedule_


def schedule(name: str, kind: str, payload: Any = None, **options: Any) -> ScheduleSpec:
    """Declare schedule `name` enqueueing `kind` jobs with `payload`, e.g.
    `corral.schedule("nightly", "roll-up", cron="0 3 * * *",
    timezone="Europe/Berlin")` (ScheduleSpec's fields: every_s or cron,
    timezone, queue, ...). Every worker loading the module upserts it at
    start-up (an unchanged spec keeps its place)."""
    from corral.queue.schedules import ScheduleSpec

    return _declare(ScheduleSpec(name, kind, payload, **options))

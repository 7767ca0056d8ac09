"""The methods both queue clients have, listed once.

`Queue` (`client.py`) and `AsyncQueue` (`client_async.py`) subclass
`ClientMethods`, naming their binder (`class Queue(ClientMethods,
bind=_method)`); each `Shared` entry below becomes a plain function of that
class with the operation's name, signature and docstring: a call on Queue, a
coroutine on AsyncQueue. `Shared.__get__` tells mypy which. A call only one
client offers (the admin CLI's listings on Queue) stays in that client's own
table. `client_of` is both clients' `of`.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from corral.queue import _insights as ins
from corral.queue import _operations as op
from corral.queue import _regions as regions
from corral.queue import _registry as reg
from corral.queue import _schedules as sch

if TYPE_CHECKING:
    from corral.queue.client import Queue
    from corral.queue.client_async import AsyncQueue

P = ParamSpec("P")
T = TypeVar("T")
C = TypeVar("C")
# A client's way of turning an operation into one of its methods.
Binder = Callable[[Callable[..., op.Operation[Any]]], Callable[..., Any]]


class Shared(Generic[P, T]):
    """An operation of the table; each client class holds its own method in its place."""

    def __init__(self, operation: Callable[P, op.Operation[T]]) -> None:
        self.operation = operation

    @overload
    def __get__(self, obj: Queue, owner: Any) -> Callable[P, T]: ...
    @overload
    def __get__(self, obj: AsyncQueue, owner: Any) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __get__(self, obj: None, owner: type[Queue]) -> Callable[Concatenate[Queue, P], T]: ...
    @overload
    def __get__(
        self, obj: None, owner: type[AsyncQueue]
    ) -> Callable[Concatenate[AsyncQueue, P], Coroutine[Any, Any, T]]: ...
    def __get__(self, obj: Any, owner: Any) -> Any:
        # Only reached through ClientMethods itself: a client class shadows it.
        return self


def client_of(
    client: type[C], target: object, connection: type[Any], how: str, wrap: Callable[[Any], C]
) -> C:
    """`Queue.of` and `AsyncQueue.of`: `target` itself when it is a `client`,
    else `wrap(target)` when it is a psycopg `connection`; `how` says where
    a client comes from."""
    if isinstance(target, client):
        return target
    if isinstance(target, connection):
        return wrap(target)
    raise TypeError(
        f"expected a corral {client.__name__} ({how}) or a psycopg {connection.__name__}, "
        f"got {type(target).__name__}"
    )


class ClientMethods:
    """The table; see the module's docstring."""

    def __init_subclass__(cls, /, bind: Binder | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if bind is None:  # a subclass of a client keeps its parent's methods
            return
        for name, entry in vars(ClientMethods).items():
            if isinstance(entry, Shared):
                if name in vars(cls):
                    raise TypeError(f"{cls.__name__}.{name} is in ClientMethods already")
                setattr(cls, name, bind(entry.operation))

    # The worker's calls, by connection: claims; completions; control
    # (identity, heartbeat and drain, failures and hand-back, upkeep).
    claim = Shared(op.claim)
    complete_many = Shared(op.complete_many)
    enroll = Shared(reg.enroll)
    authenticate = Shared(reg.authenticate)
    heartbeat = Shared(op.heartbeat)
    drain_self = Shared(reg.drain_self)
    mark_drained = Shared(reg.mark_drained)
    fail_many = Shared(op.fail_many)
    release_many = Shared(op.release_many)
    reap = Shared(op.reap)
    purge_finished_batch = Shared(op.purge_finished_batch)
    retention_batch = Shared(op.retention_batch)
    purge_finished = Shared(op.purge_finished)
    purge_registry = Shared(op.purge_registry)
    # Enqueueing.
    enqueue = Shared(op.enqueue)
    enqueue_many = Shared(op.enqueue_many)
    enqueue_group = Shared(regions.enqueue_group)
    get_group = Shared(regions.get_group)
    list_regions = Shared(regions.list_regions)
    # The operator's (kopf runs on asyncio).
    depth = Shared(op.depth)
    create_token = Shared(reg.create_token)
    get_worker = Shared(reg.get_worker)
    list_workers = Shared(reg.list_workers)
    request_drain = Shared(reg.request_drain)
    request_restart = Shared(reg.request_restart)
    resume_worker = Shared(reg.resume_worker)
    remove_worker = Shared(reg.remove_worker)
    # Inspection and admin (the CLI; the dashboard on asyncio).
    get_job = Shared(op.get_job)
    browse_jobs = Shared(ins.browse_jobs)
    cancel = Shared(op.cancel)
    requeue = Shared(op.requeue)
    requeue_dead = Shared(ins.requeue_dead)
    pause = Shared(op.pause)
    resume = Shared(op.resume)
    dispatch_status = Shared(op.dispatch_status)
    stats = Shared(op.stats)
    recent_stats = Shared(ins.recent_stats)
    # The dashboard: per-minute charts and the audit trail.
    rollup_throughput = Shared(ins.rollup_throughput)
    throughput = Shared(ins.throughput)
    depth_history = Shared(ins.depth_history)
    record_audit = Shared(ins.record_audit)
    audit = Shared(ins.audit)
    # Recurring schedules (the worker's firing pass, declared schedules).
    fire_due_schedules = Shared(sch.fire_due_schedules)
    create_schedule = Shared(sch.create_schedule)
    declare_schedule = Shared(sch.declare_schedule)
    list_schedules = Shared(sch.list_schedules)
    get_schedule = Shared(sch.get_schedule)
    pause_schedule = Shared(sch.pause_schedule)
    resume_schedule = Shared(sch.resume_schedule)
    delete_schedule = Shared(sch.delete_schedule)
    run_schedule_now = Shared(sch.run_schedule_now)

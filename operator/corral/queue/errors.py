"""Errors raised by corral.queue. Each message names what is wrong and what to do."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
from psycopg import OperationalError

from corral.queue.dsn import DsnError
from corral.queue.migrations import MigrationError

_log = logging.getLogger("corral.queue")


class QueueError(Exception):
    """Base class for errors about jobs, queues, workers and tokens."""


class JobNotFound(QueueError, LookupError):
    pass


class JobStateError(QueueError):
    """The job is in a state the operation does not apply to (e.g. cancel a running job)."""


class InvalidJob(QueueError, ValueError):
    """An enqueue argument is out of range (priority, max_attempts, kind, queue)."""


class WorkerStateError(QueueError):
    """The worker is in a state the operation does not apply to (e.g. resume
    a worker that is not draining)."""


class GroupNotFound(QueueError, LookupError):
    pass


class EmptyRegion(InvalidJob):
    """A job for a region where no worker heartbeats and no pool can start
    one; `allow_empty_region=True` (CLI: --allow-empty-region) enqueues anyway."""


class InvalidAuditEntry(QueueError, ValueError):
    """An audit entry without an actor or action, or with a detail that is not JSON."""


class DataRefused(QueueError, ValueError):
    """PostgreSQL cannot store a value sent (SQLSTATE class 22: a NUL
    character, text that is not UTF-8, a number out of range)."""


class WorkerNotFound(QueueError, LookupError):
    pass


class TokenNotFound(QueueError, LookupError):
    pass


class ScheduleNotFound(QueueError, LookupError):
    pass


class EnrollmentError(QueueError):
    """The enrollment token is unknown, revoked, expired or used up (SQLSTATE CR403)."""


class CredentialError(QueueError):
    """The worker id / credential pair is not known (SQLSTATE CR401): enroll again."""


class CredentialRetired(CredentialError):
    """A pool worker's own drain finished: its credential does not come back
    (SQLSTATE CR409); it enrolls afresh with its pool's token."""


class SchemaMissing(QueueError):
    """The database lacks a table or function this corral uses: its schema
    was never migrated, or by an older corral (`corral db migrate`)."""


class PermissionDenied(QueueError):
    """This connection's database role may not do that (SQLSTATE 42501): a
    worker role may only call corral's worker functions."""


class WorkerRemoved(QueueError):
    """The worker was removed from the fleet (SQLSTATE CR410): it must stop and exit."""


# The connection itself failed or broke (server gone, network down, backend
# terminated): psycopg's class, named here so that code outside corral.queue
# can tell a dead connection from a refused operation without importing psycopg.
ConnectionLost = OperationalError


def log_notice(diag: psycopg.errors.Diagnostic) -> None:
    """What the server says beside a result (a claim for a queue outside the
    worker's enrollment returns nothing and says why in a WARNING)."""
    if diag.severity_nonlocalized in ("WARNING", "NOTICE"):
        _log.warning("postgres: %s", diag.message_primary)


def log_notices(conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Route `conn`'s notices to `log_notice`, once however often it is called:
    `handler.defer(conn, ...)` wraps the caller's own connection in a new Queue
    on every call, and each would otherwise add the handler again."""
    with suppress(ValueError):
        conn.remove_notice_handler(log_notice)
    conn.add_notice_handler(log_notice)


@contextmanager
def translated() -> Iterator[None]:
    """Turn corral's custom SQLSTATEs into the matching Python errors."""
    try:
        yield
    except UnicodeEncodeError as exc:  # refused before it was sent (a lone surrogate)
        raise DataRefused(f"text that is not UTF-8: {exc}") from None
    except psycopg.Error as exc:
        state = exc.sqlstate or ""
        message = exc.diag.message_primary or str(exc)
        hint = exc.diag.message_hint
        text = f"{message} ({hint})" if hint else message
        if state == "CR401":
            raise CredentialError(text) from None
        if state == "CR409":
            raise CredentialRetired(text) from None
        if state == "CR410":
            raise WorkerRemoved(text) from None
        if state == "CR403":
            raise EnrollmentError(text) from None
        if state == "42501":
            if not message.startswith("permission denied"):
                raise PermissionDenied(text) from None  # a function's own refusal says why
            raise PermissionDenied(
                f"{text}: this DSN's role lacks the right (a worker role may only call "
                "corral's worker functions; admin calls need a member of corral_admin)"
            ) from None
        if state in ("42P01", "42883"):  # undefined_table, undefined_function
            raise SchemaMissing(
                f"{message}: this database has no corral schema, or an older one than this "
                "corral's; run `corral db migrate` with an admin's URL"
            ) from None
        if state.startswith("22"):  # data exception: this value cannot be stored
            raise DataRefused(text) from None
        if state == "23514":  # check_violation: name the constraint, it says what is wrong
            raise InvalidJob(
                f"rejected by constraint {exc.diag.constraint_name}: {message}"
            ) from None
        raise


__all__ = [
    "ConnectionLost",
    "CredentialError",
    "CredentialRetired",
    "DataRefused",
    "DsnError",
    "EnrollmentError",
    "InvalidAuditEntry",
    "InvalidJob",
    "JobNotFound",
    "JobStateError",
    "MigrationError",
    "PermissionDenied",
    "QueueError",
    "ScheduleNotFound",
    "SchemaMissing",
    "TokenNotFound",
    "WorkerNotFound",
    "WorkerRemoved",
]

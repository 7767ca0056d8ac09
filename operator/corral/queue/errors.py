"""Errors raised by corral.queue. Each message names what is wrong and what to do."""

from __future__ import annotations

from psycopg import OperationalError

from corral.queue.dsn import DsnError
from corral.queue.migrations import MigrationError


class QueueError(Exception):
    """Base class for errors about jobs, queues, workers and tokens."""


class JobNotFound(QueueError, LookupError):
    pass


class JobStateError(QueueError):
    """The job is in a state the operation does not apply to (e.g. cancel a running job)."""


class InvalidJob(QueueError, ValueError):
    """An enqueue argument is out of range (priority, max_attempts, kind, queue)."""


class WorkerNotFound(QueueError, LookupError):
    pass


class TokenNotFound(QueueError, LookupError):
    pass


class EnrollmentError(QueueError):
    """The enrollment token is unknown, revoked, expired or used up (SQLSTATE CR403)."""


class CredentialError(QueueError):
    """The worker id / credential pair is not known (SQLSTATE CR401): enroll again."""


class WorkerRemoved(QueueError):
    """The worker was removed from the fleet (SQLSTATE CR410): it must stop and exit."""


# The connection itself failed or broke (server gone, network down, backend
# terminated): psycopg's class, named here so that code outside corral.queue
# can tell a dead connection from a refused operation without importing psycopg.
ConnectionLost = OperationalError

__all__ = [
    "ConnectionLost",
    "CredentialError",
    "DsnError",
    "EnrollmentError",
    "InvalidJob",
    "JobNotFound",
    "JobStateError",
    "MigrationError",
    "QueueError",
    "TokenNotFound",
    "WorkerNotFound",
    "WorkerRemoved",
]

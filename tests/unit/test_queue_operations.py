"""The queue's calls as sans-IO operations (corral.queue._operations): what
each yields and what it makes of the answers, driven here without a database,
as both clients drive them with one."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest

from corral.queue import DEFAULT_LEASE_S, client, client_async
from corral.queue import _operations as op
from corral.queue import _registry as reg
from corral.queue.errors import JobStateError
from corral.queue.records import Job, JobState

_NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


def drive(operation: op.Operation[Any], answers: Iterator[Any]) -> tuple[list[op.Statement], Any]:
    """Run `operation`, answering each statement with the next of `answers`."""
    seen: list[op.Statement] = []
    try:
        stmt = next(operation)
        while True:
            seen.append(stmt)
            stmt = operation.send(next(answers))
    except StopIteration as done:
        return seen, done.value


def _job_row(state: JobState) -> tuple[Any, ...]:
    values: list[Any] = [None] * len(dataclasses.fields(Job))
    values[:7] = [7, "noop", "q", {}, 0, "", state.value]
    return tuple(values)


def test_a_claim_is_one_prepared_binary_statement_and_an_empty_batch_costs_no_round_trip() -> None:
    row: tuple[object, ...] = (1, "noop", "q", {}, 0, "", 1, 3, 99, _NOW, _NOW, _NOW)
    seen, jobs = drive(op.claim(5, "crl_wc_x", ["q"], batch=10), iter([[row]]))
    assert [(s.name, s.prepare, s.binary) for s in seen] == [("claim_v5", True, True)]
    assert seen[0].params == (5, "crl_wc_x", ["q"], 10, DEFAULT_LEASE_S)
    assert jobs[0].id == 1 and jobs[0].region is None and jobs[0].lease_token == 99
    assert drive(op.enqueue_many([]), iter([])) == ([], [])
    assert drive(op.complete_many([], None), iter([])) == ([], [])


def test_cancelling_a_job_that_already_runs_reads_it_back_and_names_its_state() -> None:
    with pytest.raises(JobStateError, match="job 7 is running: only scheduled or pending"):
        drive(op.cancel(7), iter([None, [_job_row(JobState.RUNNING)]]))
    seen, job = drive(op.cancel(7), iter([7, [_job_row(JobState.CANCELLED)]]))
    assert [s.name for s in seen] == ["cancel_job", "get_job"] and job.state is JobState.CANCELLED


def test_each_fetch_kind_sends_back_what_the_operation_expects() -> None:
    rows = [(3, "x"), (4, "y")]
    assert op.result(op.Statement("a", fetch=op.Fetch.ALL), rows, 2) == rows
    assert op.result(op.Statement("a", fetch=op.Fetch.ONE), rows, 2) == 3
    assert op.result(op.Statement("a", fetch=op.Fetch.ONE), [], 0) is None
    assert op.result(op.Statement("a", fetch=op.Fetch.ROWCOUNT), None, 5) == 5


def test_calls_that_must_land_together_are_marked_transactional() -> None:
    assert {f.__name__ for f in op.TRANSACTIONAL} == {
        "enroll",
        "resume",
        "create_schedule",
        "declare_schedule",
        "fire_due_schedules",
        "enqueue_group",
    }
    assert reg.enroll in op.TRANSACTIONAL


def test_both_clients_expose_each_operation_under_its_own_name_and_docstring() -> None:
    for cls in (client.Queue, client_async.AsyncQueue):
        for name in ("claim", "enroll", "depth", "request_drain"):
            method = getattr(cls, name)
            operation = getattr(reg if name in ("enroll", "request_drain") else op, name)
            assert method.__name__ == name and method.__doc__ == operation.__doc__

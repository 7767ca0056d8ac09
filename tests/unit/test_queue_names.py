"""One queue-name rule (corral.queuenames): the CRD, the worker's --queues
and the admin commands that name a queue accept and refuse the same names,
and a command refuses a bad one with exit 2 naming its flag, before it
connects anywhere."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from pydantic import TypeAdapter, ValidationError

from corral import queuenames
from corral.api.v1alpha1 import QUEUE_NAME_PATTERN, QueueName
from corral.cli import cli
from corral.worker.config import queue_names

GOOD = ["emails", "a", "A1", "reports.eu", "ns:jobs", "send-email", "x_y", "9", "q" * 63]
BAD = ["_private", ".hidden", "-dash", ":colon", "bad queue!", "é", "a/b", "q" * 64, "*"]


def crd_accepts(name: str) -> bool:
    try:
        TypeAdapter(QueueName).validate_python(name)
    except ValidationError:
        return False
    return True


def worker_accepts(name: str) -> bool:
    try:
        queue_names([name])
    except ValueError:
        return False
    return True


@pytest.mark.parametrize("name", GOOD + BAD)
def test_the_crd_and_the_worker_agree_with_the_rule(name: str) -> None:
    expected = name in GOOD
    assert (queuenames.problem(name) is None) is expected
    assert crd_accepts(name) is expected
    assert worker_accepts(name) is expected


def test_the_crd_schema_carries_the_rule() -> None:
    assert QUEUE_NAME_PATTERN == queuenames.PATTERN


def corral(*args: str) -> tuple[int, str]:
    # No database is reached: the URL points nowhere (a socket fails the unit tier).
    result = CliRunner().invoke(
        cli, list(args), env={"CORRAL_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none"}
    )
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("jobs", "enqueue", "noop", "--queue", "bad queue!"), "--queue"),
        (("jobs", "enqueue", "noop", "--result-queue", "_r"), "--result-queue"),
        (("jobs", "enqueue", "k" * 300), "KIND"),
        (("jobs", "enqueue", "send email"), "KIND"),
        (("queues", "set", "_x", "--max-attempts", "3"), "QUEUE"),
        (("dispatch", "pause", "--queue", "a b"), "--queue"),
        (("dispatch", "resume", "--queue", "a b"), "--queue"),
        (("dispatch", "status", "--queue", "a b"), "--queue"),
        (("schedules", "create", "s", "noop", "--every", "1m", "--queue", "a b"), "--queue"),
        (("schedules", "create", "s", "bad kind", "--every", "1m"), "KIND"),
        (("tokens", "create", "--region", "eu", "--queue", "ok,_no"), "--queue"),
    ],
)
def test_commands_refuse_a_queue_name_no_worker_can_claim(
    args: tuple[str, ...], named: str
) -> None:
    code, output = corral(*args)
    assert code == 2, output
    assert named in output and "is not a queue name" in output, output

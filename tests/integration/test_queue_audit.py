"""The audit trail: `record_audit` / `audit` on both clients, and `corral audit list`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

from corral.cli import cli
from corral.queue import InvalidAuditEntry
from tests.integration._clients import Client


def corral(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"CORRAL_DATABASE_URL": url})


def _record_three(queue: Client) -> None:
    queue.record_audit("alice", "jobs.cancel", "42", {"queue": "mail", "reason": "stuck"})
    queue.record_audit("bob", "dispatch.pause", "mail")
    queue.record_audit("alice", "workers.drain", "7")


def test_an_entry_is_stored_whole_and_read_back(queue: Client) -> None:
    entry = queue.record_audit("alice", "jobs.requeue", "17", {"dead": 3, "queues": ["a"]})
    [read] = queue.audit()
    assert read == entry
    assert (read.actor, read.action, read.target) == ("alice", "jobs.requeue", "17")
    assert read.detail == {"dead": 3, "queues": ["a"]}
    assert read.at.tzinfo is not None


def test_audit_lists_newest_first_filtered_and_limited(queue: Client) -> None:
    _record_three(queue)
    assert [e.action for e in queue.audit()] == ["workers.drain", "dispatch.pause", "jobs.cancel"]
    assert [e.action for e in queue.audit(actor="alice")] == ["workers.drain", "jobs.cancel"]
    assert [e.target for e in queue.audit(action="dispatch.pause")] == ["mail"]
    assert [e.action for e in queue.audit(actor="alice", action="jobs.cancel")] == ["jobs.cancel"]
    assert queue.audit(actor="nobody") == []
    assert [e.action for e in queue.audit(2)] == ["workers.drain", "dispatch.pause"]


@pytest.mark.parametrize(
    ("actor", "action", "detail", "field"),
    [
        ("", "jobs.cancel", None, "actor"),
        ("alice", "  ", None, "action"),
        ("alice", "jobs.cancel", {"when": object()}, "detail"),
    ],
)
def test_an_entry_without_who_or_what_or_with_a_detail_not_json_is_refused(
    queue: Client, actor: str, action: str, detail: dict[str, object] | None, field: str
) -> None:
    with pytest.raises(InvalidAuditEntry, match=f"audit {field} must be"):
        queue.record_audit(actor, action, "1", detail)
    assert queue.audit() == []


def test_cli_lists_the_trail_as_a_table_and_as_json(queue: Client, database_url: str) -> None:
    _record_three(queue)
    shown = corral(database_url, "audit", "list")
    assert shown.exit_code == 0, shown.output
    header, *lines = shown.output.splitlines()
    assert header.split() == ["AT", "ACTOR", "ACTION", "TARGET", "DETAIL"]
    assert [line.split()[1:4] for line in lines] == [
        ["alice", "workers.drain", "7"],
        ["bob", "dispatch.pause", "mail"],
        ["alice", "jobs.cancel", "42"],
    ]
    assert lines[1].split()[4] == "<none>"
    assert lines[2].split()[4] == '{"queue":"mail","reason":"stuck"}'
    assert lines[0].split()[0].endswith("Z")

    filtered = corral(
        database_url, "audit", "list", "--actor", "alice", "--limit", "1", "-o", "json"
    )
    assert filtered.exit_code == 0, filtered.output
    [entry] = json.loads(filtered.output)
    assert (entry["actor"], entry["action"], entry["target"]) == ("alice", "workers.drain", "7")
    by_action = json.loads(
        corral(database_url, "audit", "list", "--action", "jobs.cancel", "-o", "json").output
    )
    assert [e["detail"] for e in by_action] == [{"queue": "mail", "reason": "stuck"}]


def test_cli_says_when_there_is_nothing_and_refuses_a_bad_limit(database_url: str) -> None:
    empty = corral(database_url, "audit", "list")
    assert empty.exit_code == 0 and "No resources found." in empty.output
    bad = corral(database_url, "audit", "list", "--limit", "0")
    assert bad.exit_code == 2 and "--limit" in bad.output

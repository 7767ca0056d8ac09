"""The audit trail: `record_audit` / `audit` on both clients."""

from __future__ import annotations

import pytest

from corral.queue import InvalidAuditEntry
from tests.integration._clients import Client


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

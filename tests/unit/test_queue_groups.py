"""The roll-up of a job group (corral.queue.groups): when a fan-out over
regions succeeded, failed or is still pending, by its rule."""

from __future__ import annotations

import pytest

from corral.queue import InvalidJob, JobState
from corral.queue.groups import (
    GroupStatus,
    Rule,
    needed,
    parse_group_id,
    parse_regions,
    parse_rule,
    rollup,
)

C, D, P, R, X = (
    JobState.COMPLETED,
    JobState.DEAD,
    JobState.PENDING,
    JobState.RUNNING,
    JobState.EXPIRED,
)
S, F, W, U = GroupStatus.SUCCEEDED, GroupStatus.FAILED, GroupStatus.PENDING, GroupStatus.UNKNOWN


@pytest.mark.parametrize(
    ("rule", "states", "status"),
    [
        # all: every region completed; failed at the first region that cannot.
        (Rule.ALL, [C, C, C], S),
        (Rule.ALL, [C, C, R], W),
        (Rule.ALL, [D, P, P], F),
        # A job purged by retention may have completed: unknown, unless the
        # others decide it.
        (Rule.ALL, [C, C, None], U),
        (Rule.ALL, [D, C, None], F),
        (Rule.ALL, [C, R, None], W),
        (Rule.ANY, [None, C, D], S),
        (Rule.MAJORITY, [C, None, D], U),
        # any: one region completed; failed once none can.
        (Rule.ANY, [D, C, R], S),
        (Rule.ANY, [D, X, R], W),
        (Rule.ANY, [D, X, JobState.CANCELLED], F),
        # majority: more than half.
        (Rule.MAJORITY, [C, C, R], S),
        (Rule.MAJORITY, [C, D, R], W),
        (Rule.MAJORITY, [C, D, D], F),
        (Rule.MAJORITY, [C, C, D, R], W),  # 2 of 4 is not more than half
        (Rule.MAJORITY, [C, C, D, D], F),
        (Rule.MAJORITY, [C, C, C, D], S),
    ],
)
def test_a_group_rolls_up_by_its_rule(
    rule: Rule, states: list[JobState | None], status: GroupStatus
) -> None:
    assert rollup(rule, states) is status


def test_how_many_regions_each_rule_needs() -> None:
    assert [needed(rule, 5) for rule in Rule] == [5, 1, 3]
    assert [needed(rule, 2) for rule in Rule] == [2, 1, 2]


def test_group_ids_are_written_g_dash_n_so_they_never_read_as_job_ids() -> None:
    assert parse_group_id("g-12") == 12
    assert [parse_group_id(text) for text in ("12", "g-", "g-0", "g-1x", "G12")] == [None] * 5


def test_bad_rules_and_region_lists_are_refused_naming_the_fix() -> None:
    with pytest.raises(InvalidJob, match="all, any, majority"):
        parse_rule("most")
    with pytest.raises(InvalidJob, match="iad,fra,sin"):
        parse_regions(["iad", ""])
    with pytest.raises(InvalidJob, match="fra named more than once"):
        parse_regions(["fra", "iad", "fra"])
    assert parse_regions([" iad", "fra "]) == ["iad", "fra"]

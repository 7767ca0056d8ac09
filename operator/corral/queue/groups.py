"""Jobs fanned out over regions, rolled up by a rule (pure: no I/O).

`corral jobs enqueue KIND --regions iad,fra,sin --rule majority` (or
`Queue.enqueue_group`) puts one job per region under a group; `corral jobs
get g-<id>` (`Queue.get_group`) shows each region's job and the group's
status, decided here from the jobs' states, as a multi-region monitor rolls
up its probes:

- `all`: succeeded once every region's job completed;
- `any`: succeeded once one did;
- `majority`: succeeded once more than half did;
- failed as soon as the rule can no longer be met (too many jobs dead,
  cancelled or expired); pending while it may still be met;
- unknown when only jobs purged by retention (gone from the history) could
  tell: a group's outcome is read from the finished jobs, so a fan-out is
  refused on a queue that keeps no completed jobs.

Unit tests: tests/unit/test_queue_groups.py.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence

from corral.queue.errors import InvalidJob
from corral.queue.records import JobState

__all__ = [
    "GROUP_PREFIX",
    "GroupStatus",
    "Rule",
    "group_name",
    "needed",
    "parse_group_id",
    "parse_regions",
    "parse_rule",
    "rollup",
]

GROUP_PREFIX = "g-"  # how a group id is written: jobs are plain numbers
_GROUP_ID = re.compile(r"^g-([1-9][0-9]{0,18})$")


class Rule(enum.StrEnum):
    ALL = "all"
    ANY = "any"
    MAJORITY = "majority"


class GroupStatus(enum.StrEnum):
    PENDING = "pending"  # the rule may still be met, and is not yet
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # the rule can no longer be met
    UNKNOWN = "unknown"  # only jobs purged by retention could tell


def needed(rule: Rule, regions: int) -> int:
    """How many regions' jobs must complete for the group to succeed."""
    if rule is Rule.ALL:
        return regions
    if rule is Rule.ANY:
        return min(1, regions)
    return regions // 2 + 1


def rollup(rule: Rule, states: Sequence[JobState | None]) -> GroupStatus:
    """The group's status from its jobs' states (None: the job is gone,
    purged by retention: it may have completed or not)."""
    need = needed(rule, len(states))
    completed = sum(1 for s in states if s is JobState.COMPLETED)
    still_open = sum(1 for s in states if s is not None and not s.finished)
    gone = sum(1 for s in states if s is None)
    if completed >= need:
        return GroupStatus.SUCCEEDED
    if completed + still_open + gone < need:
        return GroupStatus.FAILED
    if still_open:
        return GroupStatus.PENDING
    return GroupStatus.UNKNOWN


def parse_rule(value: str) -> Rule:
    try:
        return Rule(value)
    except ValueError:
        raise InvalidJob(
            f"rule {value!r} is not one of {', '.join(r.value for r in Rule)}"
        ) from None


def parse_regions(regions: Sequence[str]) -> list[str]:
    """The regions of a fan-out, in order, each once; InvalidJob when none
    is given, one is empty or one is named twice."""
    names = [r.strip() for r in regions]
    if not names or any(not n for n in names):
        raise InvalidJob("regions: give one or more region names, e.g. iad,fra,sin")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise InvalidJob(f"regions: {', '.join(twice)} named more than once; name each once")
    return names


def group_name(group_id: int) -> str:
    return f"{GROUP_PREFIX}{group_id}"


def parse_group_id(text: str) -> int | None:
    """`g-12` -> 12; None when `text` is not a group id."""
    match = _GROUP_ID.match(text.strip())
    return int(match.group(1)) if match else None

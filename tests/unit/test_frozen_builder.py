"""`corral.frozen.builder`: the hot path's cheap constructor must give exactly
the object the dataclass's own `__init__` gives (every field, still frozen),
and refuse a class whose `__init__` it cannot stand in for."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from corral.frozen import builder
from corral.queue import ClaimedJob
from corral.queue._params import claimed_from_row
from corral.worker.handlers import Job
from corral.worker.jobs import handler_job

T0 = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


def distinct_values(cls: type) -> list[object]:
    """One value per field, each different from the others and from its default."""
    return [f"{f.name}-value" for f in dataclasses.fields(cls)]


@pytest.mark.parametrize("cls", [ClaimedJob, Job])
def test_builds_what_the_init_builds(cls: type) -> None:
    values = distinct_values(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    built: object = builder(cls)(*values)
    assert type(built) is cls
    assert built == cls(*values)
    assert [getattr(built, name) for name in names] == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.kind = "other"  # type: ignore[attr-defined]


def test_every_field_is_required() -> None:
    with pytest.raises(TypeError):
        builder(ClaimedJob)(*distinct_values(ClaimedJob)[:-1])


def test_claim_rows_and_handler_jobs() -> None:
    row = (7, "emails", "q", {"to": "a"}, 5, "", 2, 25, 99, T0, T0, T0, T0)
    claimed = claimed_from_row(row)
    assert claimed == ClaimedJob(7, "emails", "q", {"to": "a"}, 5, None, 2, 25, 99, T0, T0, T0, T0)
    # A row from a claim function without the schedule column.
    assert claimed_from_row(row[:12]).scheduled_for is None
    job = handler_job(claimed)
    assert job == Job(7, "emails", "q", {"to": "a"}, 2, 25, None, T0, {}, T0)
    assert job.meta == {} and job.meta is not handler_job(claimed).meta


@dataclasses.dataclass(frozen=True)
class _NoSlots:
    a: int


@dataclasses.dataclass(slots=True)
class _NotFrozen:
    a: int


@dataclasses.dataclass(frozen=True, slots=True)
class _Checked:
    a: int

    def __post_init__(self) -> None:
        if self.a < 0:
            raise ValueError("a")


@pytest.mark.parametrize("cls", [_NoSlots, _NotFrozen, _Checked, dict])
def test_refuses_what_it_cannot_stand_in_for(cls: type) -> None:
    with pytest.raises(TypeError, match=cls.__qualname__):
        builder(cls)

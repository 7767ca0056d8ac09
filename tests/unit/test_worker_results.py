"""What a handler returns becomes the job's result: JSON data, whatever the
handler handed back, and never something that would break a completion batch."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from pydantic import BaseModel

from corral.queue import ClaimedJob
from corral.worker.results import result_value as _result_value

NOW = dt.datetime(2030, 1, 31, 9, 0, tzinfo=dt.UTC)
JOB = ClaimedJob(7, "check", "q", {}, 0, None, 1, 3, 11, NOW, NOW, NOW)


class Probe(BaseModel):
    status: int
    seen_at: dt.datetime


def test_models_datetimes_and_uuids_become_plain_json_data() -> None:
    ident = uuid.UUID(int=5)
    value = _result_value(JOB, {"probe": Probe(status=200, seen_at=NOW), "id": ident})
    assert value == {
        "probe": {"status": 200, "seen_at": "2030-01-31T09:00:00Z"},
        "id": str(ident),
    }
    assert json.loads(json.dumps(value)) == value


def test_a_value_json_cannot_hold_is_kept_as_its_repr_instead_of_failing_the_batch() -> None:
    assert _result_value(JOB, float("nan")) == {"unserializable_result": "nan"}
    odd = _result_value(JOB, object())
    assert odd["unserializable_result"].startswith("<object object at")


def test_a_value_nested_deeper_than_json_goes_is_kept_as_a_note() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert _result_value(JOB, deep) == {"unserializable_result": "<list nested too deeply to show>"}


def test_nul_characters_and_lone_surrogates_are_replaced_wherever_they_are() -> None:
    value = _result_value(JOB, {"out\x00": ["a\x00b", "lone \ud800 half"], "n": 1})
    assert value == {"out\ufffd": ["a\ufffdb", "lone \ufffd half"], "n": 1}
    json.dumps(value).encode("utf-8")  # storable as UTF-8 text


def test_a_result_past_the_limit_is_kept_as_a_preview() -> None:
    value = _result_value(JOB, {"blob": "x" * 5000}, max_bytes=1000)
    assert value["result_too_large"] > 5000
    assert len(value["preview"]) == 1000


class _Detached:
    def __repr__(self) -> str:
        raise AttributeError("instance is detached")


def test_a_value_whose_repr_fails_too_is_kept_as_its_type_name() -> None:
    assert _result_value(JOB, _Detached()) == {"unserializable_result": "<_Detached>"}
    # Past Python's 4,300-digit limit neither json.dumps nor repr() converts it.
    assert _result_value(JOB, 10**5000) == {"unserializable_result": "<int>"}

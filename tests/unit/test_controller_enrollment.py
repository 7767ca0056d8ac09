"""The enrollment Secret and the token-rotation decision (corral.controller.enrollment)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

from corral.controller import enrollment
from tests.unit._pools import make_pool

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
DAY = 86400


def _secret(
    created: datetime = NOW, ttl_s: int = DAY, database_url: str | None = None
) -> dict[str, Any]:
    return enrollment.desired_secret(
        make_pool(),
        region="eu-west",
        token="crl_secret-token",
        token_id="42",
        created_at=created,
        expires_at=enrollment.token_expiry(created, ttl_s),
        database_url=database_url,
    )


def test_the_secret_holds_the_token_and_names_it_in_annotations() -> None:
    secret = _secret()
    assert secret["metadata"]["name"] == "email-enrollment"
    assert secret["metadata"]["namespace"] == "jobs"
    assert base64.b64decode(secret["data"]["token"]).decode() == "crl_secret-token"
    assert secret["metadata"]["annotations"][enrollment.TOKEN_ID_ANNOTATION] == "42"
    assert (
        secret["metadata"]["annotations"][enrollment.TOKEN_EXPIRES_ANNOTATION]
        == "2026-11-23T12:00:00Z"
    )
    assert "database-url" not in secret["data"]


def test_the_operators_database_url_is_copied_in_only_when_given() -> None:
    secret = _secret(database_url="postgresql://u:p@db/corral")
    assert base64.b64decode(secret["data"]["database-url"]).decode() == "postgresql://u:p@db/corral"


def test_the_token_never_appears_in_labels_or_annotations() -> None:
    metadata = _secret()["metadata"]
    assert "crl_secret-token" not in repr(metadata)


def test_a_missing_secret_gets_a_token() -> None:
    decision = enrollment.rotation(None, ttl_s=DAY, now=NOW)
    assert decision.rotate
    assert "does not exist" in decision.reason


def test_a_fresh_token_is_kept_and_checked_again_when_a_third_is_left() -> None:
    decision = enrollment.rotation(_secret(), ttl_s=DAY, now=NOW + timedelta(hours=1))
    assert not decision.rotate
    assert decision.check_at == NOW + timedelta(hours=16)


def test_a_token_in_the_last_third_of_its_life_is_rotated_before_it_expires() -> None:
    assert not enrollment.rotation(
        _secret(), ttl_s=DAY, now=NOW + timedelta(hours=15, minutes=59)
    ).rotate
    decision = enrollment.rotation(_secret(), ttl_s=DAY, now=NOW + timedelta(hours=16))
    assert decision.rotate
    assert "last third" in decision.reason


def test_an_expired_token_is_rotated() -> None:
    assert enrollment.rotation(_secret(), ttl_s=DAY, now=NOW + timedelta(days=2)).rotate


def test_a_shortened_ttl_rotates_a_token_that_would_outlive_it() -> None:
    decision = enrollment.rotation(_secret(ttl_s=7 * DAY), ttl_s=DAY, now=NOW)
    assert decision.rotate
    assert "tokenTTLSeconds" in decision.reason


def test_a_hand_edited_secret_without_its_annotations_gets_a_new_token() -> None:
    secret = _secret()
    del secret["metadata"]["annotations"][enrollment.TOKEN_EXPIRES_ANNOTATION]
    assert enrollment.rotation(secret, ttl_s=DAY, now=NOW).rotate
    secret = _secret()
    secret["data"] = {}
    assert enrollment.rotation(secret, ttl_s=DAY, now=NOW).rotate


def test_the_held_token_round_trips_so_the_secret_can_be_rebuilt_without_rotating() -> None:
    secret = _secret()
    held = enrollment.held_token(secret)
    assert held is not None
    assert held.token == "crl_secret-token"
    assert held.token_id == "42"
    assert held.expires_at == NOW + timedelta(days=1)
    rebuilt = enrollment.desired_secret(
        make_pool(), region="eu-west", token=held.token, token_id=held.token_id,
        created_at=held.created_at, expires_at=held.expires_at, database_url=None,
    )  # fmt: skip
    assert rebuilt == secret
    assert enrollment.current_token_id(secret) == "42"


def test_no_token_is_held_by_a_secret_with_garbage_in_it() -> None:
    secret = _secret()
    secret["data"]["token"] = "not base64!"
    assert enrollment.held_token(secret) is None
    assert enrollment.held_token(None) is None
    assert enrollment.current_token_id(None) is None


def test_a_pool_that_moved_region_gets_a_token_for_its_new_region() -> None:
    assert not enrollment.rotation(_secret(), ttl_s=DAY, now=NOW, region="eu-west").rotate
    decision = enrollment.rotation(_secret(), ttl_s=DAY, now=NOW, region="us-east")
    assert decision.rotate
    assert "us-east" in decision.reason


def test_a_secret_that_already_holds_the_desired_token_is_not_written_again() -> None:
    existing = _secret()
    existing["metadata"]["uid"] = "abc"
    existing["metadata"]["labels"]["added-by-someone"] = "yes"
    assert enrollment.secret_is_current(existing, _secret())


def test_a_missing_or_changed_secret_is_written() -> None:
    assert not enrollment.secret_is_current(None, _secret())
    other_token = _secret()
    other_token["data"]["token"] = base64.b64encode(b"crl_other").decode()
    assert not enrollment.secret_is_current(other_token, _secret())
    desired = _secret()
    desired["metadata"]["ownerReferences"] = [{"uid": "pool-uid"}]
    assert not enrollment.secret_is_current(_secret(), desired)

"""Which identity a starting worker takes (corral.worker.enrollment.establish):
its stored credential, or a fresh enrollment with its token."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from corral.worker.config import WorkerSettings
from corral.worker.enrollment import EnrollmentError, Identity, Retired, establish, load, save


class FakeSession:
    def __init__(self, refusal: Exception | None = None) -> None:
        self.refusal = refusal
        self.enrolled_with: list[str] = []

    async def authenticate(self, identity: Identity) -> str:
        if self.refusal is not None:
            raise self.refusal
        return "active"

    async def enroll(self, token: str) -> Identity:
        self.enrolled_with.append(token)
        return Identity("8", "crl_wc_fresh", "eu")


def _settings(state_dir: Path, token: str | None) -> WorkerSettings:
    return WorkerSettings(
        database_url="postgresql://w@db.invalid/corral", queues=["q"], state_dir=state_dir,
        enrollment_token=token,
    )  # fmt: skip


def test_a_stored_credential_is_used_as_it_is(tmp_path: Path) -> None:
    save(tmp_path, Identity("7", "crl_wc_old", "eu"))
    session = FakeSession()
    assert asyncio.run(establish(session, _settings(tmp_path, "crl_et_t"))).worker_id == "7"
    assert session.enrolled_with == []


def test_a_retired_credential_is_replaced_by_a_fresh_enrollment_with_the_pods_token(
    tmp_path: Path,
) -> None:
    # A container restarted inside its pod after its own drain finished: the
    # registry refuses the old credential for good (CR409).
    save(tmp_path, Identity("7", "crl_wc_old", "eu"))
    session = FakeSession(Retired("worker 7 of pool jobs/email finished its own drain"))
    identity = asyncio.run(establish(session, _settings(tmp_path, "crl_et_t")))
    assert (identity.worker_id, session.enrolled_with) == ("8", ["crl_et_t"])
    stored = load(tmp_path)
    assert stored is not None and stored.credential == "crl_wc_fresh"


def test_a_retired_credential_without_a_token_says_what_is_missing(tmp_path: Path) -> None:
    save(tmp_path, Identity("7", "crl_wc_old", "eu"))
    session = FakeSession(Retired("worker 7 of pool jobs/email finished its own drain"))
    with pytest.raises(EnrollmentError, match="no enrollment token"):
        asyncio.run(establish(session, _settings(tmp_path, None)))


def test_the_sessions_refusals_map_a_retired_credential_apart_from_a_removed_worker() -> None:
    from corral.queue import CredentialError, CredentialRetired
    from corral.worker._queue import RemovedError, _refused, _retired

    with pytest.raises(Retired), _refused, _retired:
        raise CredentialRetired("retired")
    with pytest.raises(RemovedError), _refused, _retired:
        raise CredentialError("unknown")

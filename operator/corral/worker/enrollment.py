"""A worker's identity: trade the enrollment token for a credential once,
keep the credential under `CORRAL_STATE_DIR`, re-use it after a restart.

Called by `corral.worker.runtime.Worker.run` before anything is claimed. The
exchange itself (token check, hashing, the registry row) is the queue's
(`corral.queue`); this module decides which path to take and owns the file.

The credential file is written atomically with mode 0600; it holds the worker
id and the credential (a secret, never logged).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from corral.worker.config import ENV_VARS, WorkerSettings

log = logging.getLogger("corral.worker")

__all__ = [
    "CREDENTIAL_FILE",
    "EnrollmentError",
    "Identity",
    "Retired",
    "establish",
    "load",
    "save",
]

CREDENTIAL_FILE = "credential.json"


class EnrollmentError(RuntimeError):
    """The worker cannot get an identity; the message says what to do."""


class Retired(RuntimeError):
    """The registry retired the stored credential: a pool worker whose own
    drain finished (its pod's preStop, a SIGTERM) enrolls afresh."""


@dataclass(frozen=True)
class Identity:
    worker_id: str
    credential: str
    region: str | None = None  # the token's, for the start-up line (None: an older file)

    def __repr__(self) -> str:  # never print the secret
        return f"Identity(worker_id={self.worker_id!r}, credential=***)"


class _Enroller(Protocol):
    async def enroll(self, token: str) -> Identity: ...
    async def authenticate(self, identity: Identity) -> str: ...


def credential_path(state_dir: Path) -> Path:
    return state_dir / CREDENTIAL_FILE


def load(state_dir: Path) -> Identity | None:
    path = credential_path(state_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise EnrollmentError(
            f"the credential file {path} is unreadable ({exc}); delete it and start the worker "
            "with a fresh enrollment token"
        ) from None
    try:
        return Identity(
            worker_id=str(data["worker_id"]),
            credential=str(data["credential"]),
            region=data.get("region"),
        )
    except KeyError as exc:
        raise EnrollmentError(
            f"the credential file {path} lacks {exc}; delete it and re-enroll"
        ) from None


def save(state_dir: Path, identity: Identity) -> Path:
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnrollmentError(
            f"--state-dir / {ENV_VARS['state_dir']}: cannot create {state_dir}: {exc.strerror}"
        ) from None
    path = credential_path(state_dir)
    fd, tmp = tempfile.mkstemp(prefix=".credential-", dir=state_dir)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)
            json.dump(
                {
                    "worker_id": identity.worker_id,
                    "credential": identity.credential,
                    "region": identity.region,
                },
                fh,
            )
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise EnrollmentError(
            f"--state-dir / {ENV_VARS['state_dir']}: cannot write {path}: {exc.strerror}"
        ) from None
    return path


async def establish(session: _Enroller, settings: WorkerSettings) -> Identity:
    """The persisted identity if there is one (checked against the registry),
    else a fresh enrollment with the token (then persisted).

    A persisted credential that the registry rejects or marks removed raises
    (`RemovedError` from the session): a removed worker must not come back by
    itself just because a token is still mounted. One the registry retired
    (`Retired`: a pool worker whose own drain finished, restarted inside its
    pod) is replaced by a fresh enrollment with the token.
    """
    identity = load(settings.state_dir)
    if identity is not None:
        try:
            await session.authenticate(identity)
            return identity
        except Retired as exc:
            # A container restarted inside its pod after its own drain
            # finished: the old credential stays retired (whoever copied
            # it cannot bring it back); the pod's token enrolls it afresh.
            if not settings.read_enrollment_token():
                raise EnrollmentError(
                    f"{exc}; no enrollment token to enroll with: set "
                    f"{ENV_VARS['enrollment_token']} or --enrollment-token-file"
                ) from None
            log.info("worker %s: %s; enrolling afresh", identity.worker_id, exc)
    token = settings.read_enrollment_token()
    if not token:
        raise EnrollmentError(
            "no enrollment token and no saved credential: set "
            f"{ENV_VARS['enrollment_token']} or --enrollment-token-file "
            f"(mint one with `corral tokens create --region R`), or point "
            f"--state-dir / {ENV_VARS['state_dir']} at the directory holding {CREDENTIAL_FILE}"
        )
    identity = await session.enroll(token)
    save(settings.state_dir, identity)
    return identity

"""`corral worker prestop` waits out a slow worker and stops only when the
worker is gone: giving up on one slow answer would let SIGTERM hand back jobs
the worker was about to finish."""

from __future__ import annotations

import time
import urllib.error
from typing import Any

import click
import pytest

from corral.worker.cli import _ask_until


def _answers(*outcomes: Any) -> Any:
    """A stand-in for one HTTP call: raises or returns each outcome in turn."""
    queue = list(outcomes)
    calls: list[int] = []

    def ask() -> dict[str, Any]:
        calls.append(1)
        outcome = queue.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome  # type: ignore[no-any-return]

    ask.calls = calls  # type: ignore[attr-defined]
    return ask


def test_a_slow_or_cut_off_answer_is_asked_again_until_the_worker_answers() -> None:
    ask = _answers(TimeoutError("timed out"), ConnectionResetError("reset"), {"state": "draining"})
    status = _ask_until(ask, "http://127.0.0.1:8080", time.monotonic() + 30)
    assert status == {"state": "draining"}
    assert len(ask.calls) == 3


def test_a_refused_connection_means_the_worker_is_gone() -> None:
    ask = _answers(urllib.error.URLError(ConnectionRefusedError(111, "refused")))
    assert _ask_until(ask, "http://127.0.0.1:8080", time.monotonic() + 30) is None


def test_past_the_deadline_a_silent_worker_is_an_error_naming_it() -> None:
    ask = _answers(TimeoutError("timed out"))
    with pytest.raises(click.ClickException, match=r"127\.0\.0\.1:8080 did not answer"):
        _ask_until(ask, "http://127.0.0.1:8080", time.monotonic() - 1)

"""`_with_progress`: a long admin call says on stderr, every few seconds,
that it is still at work, then returns (or raises) what the call did."""

from __future__ import annotations

import time

import click
import pytest

from corral.admin import cli as admin


def test_a_long_call_says_so_every_interval_then_returns_its_value(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(admin, "PROGRESS_EVERY_S", 0.05)

    def slow() -> int:
        time.sleep(0.3)
        return 7

    assert admin._with_progress(slow, lambda s: f"still at it ({s:.1f}s)") == 7
    said = capsys.readouterr()
    assert said.out == ""
    assert said.err.count("still at it") >= 3, said.err


def test_a_quick_call_says_nothing_and_an_error_comes_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert admin._with_progress(lambda: "done", lambda s: "never") == "done"

    def broken() -> None:
        raise click.ClickException("no")

    with pytest.raises(click.ClickException, match="no"):
        admin._with_progress(broken, lambda s: "never")
    assert capsys.readouterr().err == ""

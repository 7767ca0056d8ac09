"""Every Python snippet of README.md, run in order against a real PostgreSQL,
as a reader would paste them: one namespace, CORRAL_DATABASE_URL pointing at
the test's database. A snippet that stops working fails here, and so does a
README whose enqueue examples stop enqueueing."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from corral.worker import handlers
from tests.integration._enrolled import run_sql

README = Path(__file__).resolve().parents[2] / "README.md"
SNIPPET = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> list[str]:
    return SNIPPET.findall(README.read_text())


def test_the_readme_has_python_snippets() -> None:
    assert len(snippets()) >= 4


def test_every_python_snippet_of_the_readme_runs(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CORRAL_DATABASE_URL", database_url)
    namespace: dict[str, object] = {"__name__": "readme"}
    for number, code in enumerate(snippets(), 1):
        # Each snippet registers handlers afresh, as its own module would.
        monkeypatch.setattr(handlers, "registry", handlers.HandlerRegistry())
        try:
            exec(compile(code, f"README.md python snippet {number}", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"README.md python snippet {number} failed:\n{code}") from exc
    assert "pending" in capsys.readouterr().out
    jobs = run_sql(database_url, "SELECT kind, queue, payload FROM corral_jobs ORDER BY id")
    assert jobs == [
        ("noop", "default", {"hello": "world"}),
        ("send-email", "email", {"to": "ada@example.com"}),
        ("send-email", "email", {"to": "bob@example.com"}),
        ("send-email", "email", {"to": "eve@example.com"}),
        ("noop", "default", {}),
    ]

"""`corral queues list|set` against a real database: per-queue defaults and
retention caps, their output formats and their errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from corral.cli import cli
from corral.queue import Queue


def corral(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"CORRAL_DATABASE_URL": url})


def listed(url: str) -> dict[str, dict[str, object]]:
    result = corral(url, "queues", "list", "-o", "json")
    assert result.exit_code == 0, result.output
    return {q["queue"]: q for q in json.loads(result.output)}


def test_a_queue_with_jobs_but_no_settings_is_listed_with_the_defaults(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        queue.enqueue("noop", queue="emails")
    table = corral(database_url, "queues", "list")
    assert table.exit_code == 0, table.output
    header, row = table.output.splitlines()
    assert header.split() == [
        "QUEUE", "MAX-ATTEMPTS", "RETRY-BASE", "RETRY-MAX", "KEEP-COMPLETED", "MAX-DEAD",
        "MAX-COMPLETED", "PAUSED",
    ]  # fmt: skip
    assert row.split() == ["emails", "20", "(default)", "1s", "3600s", "true", "5000", "none",
                           "false"]  # fmt: skip
    assert listed(database_url)["emails"]["configured"] is False


def test_set_changes_only_what_it_is_given_and_jobs_follow(database_url: str) -> None:
    first = corral(
        database_url, "queues", "set", "emails", "--max-attempts", "3", "--retry-base", "2s",
        "--retry-max", "1h", "--keep-completed", "false", "--max-dead", "100",
        "--max-completed", "50", "-o", "json",
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    assert json.loads(first.output) == {
        "queue": "emails", "configured": True, "max_attempts": 3, "retry_base_s": 2.0,
        "retry_max_s": 3600.0, "keep_completed": False, "max_dead": 100, "max_completed": 50,
        "paused": False,
    }  # fmt: skip
    again = corral(database_url, "queues", "set", "emails", "--max-dead", "none")
    assert again.exit_code == 0, again.output
    shown = listed(database_url)["emails"]
    assert (shown["max_dead"], shown["max_completed"], shown["max_attempts"]) == (None, 50, 3)
    with Queue.connect(database_url) as queue:
        assert queue.get_job(queue.enqueue("noop", queue="emails")).max_attempts == 3


def test_bad_settings_are_named_with_their_fix_and_change_nothing(database_url: str) -> None:
    nothing = corral(database_url, "queues", "set", "emails")
    assert nothing.exit_code == 2 and "nothing to set" in nothing.output
    negative = corral(database_url, "queues", "set", "emails", "--max-dead", "-3")
    assert negative.exit_code == 2
    assert "--max-dead" in negative.output and "`none` for no cap" in negative.output
    backwards = corral(database_url, "queues", "set", "emails", "--retry-base", "2h",
                       "--retry-max", "1m")  # fmt: skip
    assert backwards.exit_code == 2
    assert "--retry-max (60s) must be at least --retry-base (7200s)" in backwards.output
    duration = corral(database_url, "queues", "set", "emails", "--retry-base", "soon")
    assert duration.exit_code == 2 and "--retry-base 'soon' is not a duration" in duration.output
    assert "emails" not in listed(database_url)


def test_without_a_database_url_the_commands_say_where_one_comes_from(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["queues", "list"], env={"CORRAL_DATABASE_URL": None, "XDG_CONFIG_HOME": str(tmp_path)}
    )
    assert result.exit_code == 1
    assert "--database-url" in result.output and "CORRAL_DATABASE_URL" in result.output
    assert "corral config set-context NAME --database-url URL" in result.output


def test_the_admin_commands_use_the_current_context_when_given_no_url(
    database_url: str, tmp_path: Path
) -> None:
    env = {"CORRAL_DATABASE_URL": None, "XDG_CONFIG_HOME": str(tmp_path)}

    def run(*args: str, **more: str) -> Result:
        return CliRunner().invoke(cli, list(args), env={**env, **more})

    assert (
        run(
            "config", "set-context", "broken", "--database-url", "postgresql://nobody@127.0.0.1:1/x"
        ).exit_code
        == 0
    )
    assert run("config", "set-context", "test", "--database-url", database_url).exit_code == 0
    # The first context is current: it points nowhere, and the error says so.
    assert run("queues", "list").exit_code == 1
    assert run("config", "use-context", "test").exit_code == 0
    created = run("queues", "set", "from-context", "--max-dead", "7")
    assert created.exit_code == 0, created.output
    # A variable wins over the context.
    assert run("config", "use-context", "broken").exit_code == 0
    via_env = run("queues", "list", "-o", "json", CORRAL_DATABASE_URL=database_url)
    assert via_env.exit_code == 0, via_env.output
    assert {q["queue"]: q["max_dead"] for q in json.loads(via_env.output)}["from-context"] == 7
    # And the flag over both.
    via_flag = run("queues", "list", "--database-url", database_url)
    assert via_flag.exit_code == 0 and "from-context" in via_flag.output

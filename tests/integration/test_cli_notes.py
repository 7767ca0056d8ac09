"""What the admin commands say when the result alone would mislead: a
listing cut at --limit, a --dedupe-key that enqueued nothing, a resume of
a queue that was not paused. Notes go to stderr; stdout keeps the result."""

from __future__ import annotations

from click.testing import CliRunner, Result

from corral.cli import cli
from corral.queue import JobSpec, Queue


def corral(url: str, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"CORRAL_DATABASE_URL": url})


def test_jobs_list_says_when_it_shows_only_the_newest(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        queue.enqueue_many([JobSpec("noop") for _ in range(5)])
    cut = corral(database_url, "jobs", "list", "--limit", "3")
    whole = corral(database_url, "jobs", "list", "--limit", "5")
    as_json = corral(database_url, "jobs", "list", "--limit", "3", "-o", "json")
    assert cut.exit_code == 0 and len(cut.stdout.splitlines()) == 4, cut.output
    assert "showing 3; --limit N for more" in cut.stderr, cut.stderr
    assert whole.exit_code == 0 and whole.stderr == "", whole.stderr
    assert as_json.stdout.startswith("[") and "--limit N for more" in as_json.stderr


def test_a_repeated_dedupe_key_says_nothing_was_enqueued(database_url: str) -> None:
    first = corral(database_url, "jobs", "enqueue", "noop", "--dedupe-key", "k1")
    again = corral(database_url, "jobs", "enqueue", "noop", "--dedupe-key", "k1")
    other = corral(database_url, "jobs", "enqueue", "noop", "--dedupe-key", "k2")
    assert first.exit_code == again.exit_code == other.exit_code == 0
    assert first.stderr == "" and other.stderr == "", first.stderr + other.stderr
    assert again.stdout == first.stdout  # the id, as before
    assert f"job {first.stdout.strip()} already holds --dedupe-key 'k1'" in again.stderr
    assert "nothing was enqueued" in again.stderr


def test_dispatch_resume_of_a_queue_that_was_not_paused_says_so(database_url: str) -> None:
    nosuch = corral(database_url, "dispatch", "resume", "--queue", "nosuch")
    assert nosuch.exit_code == 0, nosuch.output
    assert nosuch.stdout.strip() == "queue nosuch was not paused: nothing to resume"
    with Queue.connect(database_url) as queue:
        assert "nosuch" not in [s.queue for s in queue.list_queues()]  # no row made for it
    assert corral(database_url, "dispatch", "pause", "--queue", "email").exit_code == 0
    resumed = corral(database_url, "dispatch", "resume", "--queue", "email")
    assert resumed.stdout.strip() == "queue email resumed", resumed.output
    assert corral(database_url, "dispatch", "pause").exit_code == 0
    held = corral(database_url, "dispatch", "resume", "--queue", "email")
    assert "every queue is paused" in held.stdout and "corral dispatch resume" in held.stdout


def test_create_worker_role_prints_a_kubectl_line_with_the_namespace(database_url: str) -> None:
    made = corral(database_url, "db", "create-worker-role", "corral_ns_worker")
    assert made.exit_code == 0, made.output
    assert "kubectl -n corral-system create secret generic corral-worker-database" in made.stderr
    other = corral(database_url, "db", "create-worker-role", "corral_ns_worker", "-n", "jobs")
    assert "kubectl -n jobs create secret generic corral-worker-database" in other.stderr


def test_resume_after_a_finished_restart_says_to_start_it_again(database_url: str) -> None:
    from tests.integration._enrolled import enroll

    with Queue.connect(database_url) as queue:
        worker = enroll(queue, name="restarted")
        queue.request_restart(worker.worker_id)
        queue.mark_drained(worker.worker_id, worker.credential)
    refused = corral(database_url, "workers", "resume", str(worker.worker_id))
    assert refused.exit_code == 1, refused.output
    assert "its restart finished its drain" in refused.stderr, refused.stderr
    assert "started again (same --state-dir) it is active" in refused.stderr

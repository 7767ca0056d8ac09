"""The admin CLI against a real database: output, formats and exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from corral.cli import cli
from corral.queue import EmptyRegion, Enrollment, Queue
from tests._postgres import PgHandle
from tests.integration._enrolled import enroll, run_sql


def corral(url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=stdin, env={"CORRAL_DATABASE_URL": url})


def test_db_migrate_then_status_shows_every_migration_applied(empty_database_url: str) -> None:
    first = corral(empty_database_url, "db", "migrate")
    again = corral(empty_database_url, "db", "migrate")
    status = corral(empty_database_url, "db", "status", "--check")
    assert first.exit_code == 0 and "applied 0010_baseline" in first.output
    assert again.exit_code == 0 and "applied" not in again.output.split("\n")[0]
    assert status.exit_code == 0, status.output
    assert status.output.splitlines()[0].split() == ["VERSION", "NAME", "STATE", "APPLIED"]
    assert status.output.splitlines()[1].split()[:3] == ["0010", "baseline", "applied"]


def test_db_status_check_fails_on_a_database_without_the_schema(empty_database_url: str) -> None:
    result = corral(empty_database_url, "db", "status", "--check")
    assert result.exit_code == 1
    assert "pending" in result.output and "corral db migrate" in result.output


@pytest.mark.parametrize(
    "args", [("jobs", "list"), ("jobs", "enqueue", "noop"), ("stats",), ("workers", "list")]
)
def test_commands_on_a_database_without_the_schema_say_to_migrate(
    empty_database_url: str, args: tuple[str, ...]
) -> None:
    # Not the server's raw "relation ... does not exist" with its LINE and
    # caret, nor a function's nine-argument signature: what to run.
    result = corral(empty_database_url, *args)
    assert result.exit_code == 1, result.output
    assert "this database has no corral schema" in result.output, result.output
    assert "run `corral db migrate`" in result.output
    assert "LINE" not in result.output and "HINT" not in result.output


def test_jobs_enqueue_prints_the_id_and_jobs_get_shows_every_field(database_url: str) -> None:
    enqueued = corral(
        database_url, "jobs", "enqueue", "http", '{"url": "https://example.com"}',
        "--queue", "probes", "--priority", "5", "--region", "eu", "--max-attempts", "3",
        "--dedupe-key", "probe-1", "--expires-in", "1h", "--allow-empty-region",
    )  # fmt: skip
    assert enqueued.exit_code == 0, enqueued.output
    job_id = int(enqueued.output.strip())
    shown = json.loads(corral(database_url, "jobs", "get", str(job_id), "-o", "json").output)
    assert shown["payload"] == {"url": "https://example.com"}
    assert (shown["queue"], shown["priority"], shown["region"]) == ("probes", 5, "eu")
    assert (shown["max_attempts"], shown["dedupe_key"], shown["state"]) == (3, "probe-1", "pending")
    assert shown["expires_at"] is not None


def test_jobs_enqueue_reads_the_payload_from_stdin_and_delays_it(database_url: str) -> None:
    result = corral(
        database_url, "jobs", "enqueue", "noop", "-", "--delay", "30s", stdin='{"n": 7}'
    )
    assert result.exit_code == 0, result.output
    with Queue.connect(database_url) as queue:
        job = queue.get_job(int(result.output))
    assert (job.payload, job.state) == ({"n": 7}, "scheduled")


def test_jobs_enqueue_rejects_bad_json_and_conflicting_times_with_exit_2(database_url: str) -> None:
    bad_json = corral(database_url, "jobs", "enqueue", "noop", "{oops")
    both = corral(
        database_url, "jobs", "enqueue", "noop", "--delay", "5s", "--run-at", "2030-01-01T00:00:00Z"
    )
    bad_delay = corral(database_url, "jobs", "enqueue", "noop", "--delay", "soon")
    assert bad_json.exit_code == 2 and "PAYLOAD is not valid JSON" in bad_json.output
    assert both.exit_code == 2 and "give one" in both.output
    assert bad_delay.exit_code == 2 and "'soon' is not a duration" in bad_delay.output


def test_jobs_list_filters_by_queue_and_state_in_every_output_format(database_url: str) -> None:
    for queue_name in ("a", "a", "b"):
        assert corral(database_url, "jobs", "enqueue", "noop", "--queue", queue_name).exit_code == 0
    table = corral(database_url, "jobs", "list", "--queue", "a")
    as_json = json.loads(
        corral(database_url, "jobs", "list", "--state", "pending", "-o", "json").output
    )
    as_yaml = yaml.safe_load(
        corral(database_url, "jobs", "list", "--queue", "b", "-o", "yaml").output
    )
    lines = table.output.splitlines()
    assert lines[0].split()[:4] == ["ID", "KIND", "QUEUE", "STATE"]
    assert len(lines) == 3 and all(" a " in line for line in lines[1:])
    assert len(as_json) == 3 and {j["state"] for j in as_json} == {"pending"}
    assert [j["queue"] for j in as_yaml] == ["b"]


def test_jobs_cancel_and_requeue_report_what_happened_and_refuse_wrong_states(
    database_url: str,
) -> None:
    job_id = corral(database_url, "jobs", "enqueue", "noop").output.strip()
    cancelled = corral(database_url, "jobs", "cancel", job_id)
    twice = corral(database_url, "jobs", "cancel", job_id)
    requeued = corral(database_url, "jobs", "requeue", job_id)
    missing = corral(database_url, "jobs", "get", "424242")
    assert cancelled.exit_code == 0 and f"job {job_id} cancelled" in cancelled.output
    assert twice.exit_code == 1 and "only scheduled or pending" in twice.output
    assert requeued.exit_code == 0 and "requeued" in requeued.output
    assert missing.exit_code == 3 and "job 424242 does not exist" in missing.output


def test_stats_prints_one_row_per_queue_with_counts_by_state(database_url: str) -> None:
    corral(database_url, "jobs", "enqueue", "noop", "--queue", "a")
    corral(database_url, "jobs", "enqueue", "noop", "--queue", "b")
    result = corral(database_url, "stats")
    rows = [line.split() for line in result.output.splitlines()]
    assert rows[0][:4] == ["QUEUE", "PAUSED", "SCHEDULED", "PENDING"]
    assert [r[0] for r in rows[1:]] == ["a", "b"]
    assert rows[1][3] == "1"
    # JSON names every state too, 0 included, as the table shows them.
    (a, _b) = json.loads(corral(database_url, "stats", "-o", "json").output)
    assert a["counts"] == {
        "scheduled": 0, "pending": 1, "running": 0, "completed": 0, "dead": 0,
        "cancelled": 0, "expired": 0,
    }  # fmt: skip


def test_dispatch_pause_status_and_resume_round_trip(database_url: str) -> None:
    paused = corral(database_url, "dispatch", "pause", "--queue", "emails", "-m", "smtp outage")
    status = corral(database_url, "dispatch", "status")
    resumed = corral(database_url, "dispatch", "resume", "--queue", "emails")
    after = corral(database_url, "dispatch", "status")
    assert paused.exit_code == 0 and "queue emails paused" in paused.output
    assert "emails" in status.output and "smtp outage" in status.output
    assert resumed.exit_code == 0
    assert "no queue is paused" in after.output


def test_tokens_create_prints_only_the_secret_on_stdout_then_list_and_revoke(
    database_url: str,
) -> None:
    created = CliRunner().invoke(
        cli, ["tokens", "create", "--region", "eu", "--pool", "web", "--ttl", "15m", "--uses", "2"],
        env={"CORRAL_DATABASE_URL": database_url},
    )  # fmt: skip
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip()
    assert secret.startswith("crl_et_") and "\n" not in secret
    listed = corral(database_url, "tokens", "list")
    assert secret not in listed.output and secret[:13] in listed.output
    assert "eu" in listed.output and "web" in listed.output
    revoked = corral(database_url, "tokens", "revoke", secret[:13])
    assert revoked.exit_code == 0 and "revoked" in revoked.output
    assert "No resources found" in corral(database_url, "tokens", "list").output
    assert corral(database_url, "tokens", "revoke", "crl_et_nope").exit_code == 3


def test_workers_are_named_by_id_or_by_name(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, name="pod-b", queues=["q1"])
        enroll(queue, name="twin", queues=["q1"])
        enroll(queue, name="twin", queues=["q1"])
    drained = corral(database_url, "workers", "drain", "pod-b")
    assert drained.exit_code == 0, drained.output
    assert f"worker {worker.worker_id} (pod-b) is draining" in drained.output
    resumed = corral(database_url, "workers", "resume", str(worker.worker_id))
    assert resumed.exit_code == 0 and "(pod-b) is active" in resumed.output, resumed.output
    missing = corral(database_url, "workers", "remove", "pod-z")
    assert missing.exit_code == 3 and "no worker is named 'pod-z'" in missing.output
    twins = corral(database_url, "workers", "drain", "twin")
    assert twins.exit_code == 2 and "2 workers are named 'twin'" in twins.output, twins.output
    assert "pass the ID" in twins.output


def test_tokens_create_takes_queues_repeated_or_comma_separated(database_url: str) -> None:
    # As `corral worker -q a,b` serves two queues: never one named "a,b".
    created = corral(
        database_url, "tokens", "create", "--region", "eu", "--queue", "a, b", "--queue", "c"
    )
    assert created.exit_code == 0, created.output
    rows = run_sql(database_url, "SELECT queues FROM corral_enrollment_tokens")
    assert rows == [(["a", "b", "c"],)]


def test_workers_list_drain_and_remove_change_the_registry(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        worker = enroll(queue, name="pod-a", queues=["q1", "q2"])
    wid = str(worker.worker_id)
    listed = corral(database_url, "workers", "list")
    drained = corral(database_url, "workers", "drain", wid)
    removed = corral(database_url, "workers", "remove", wid)
    gone = corral(database_url, "workers", "list")
    everyone = corral(database_url, "workers", "list", "--all", "-o", "json")
    assert "pod-a" in listed.output and "q1,q2" in listed.output and "active" in listed.output
    assert drained.exit_code == 0 and "draining" in drained.output
    assert removed.exit_code == 0 and "removed" in removed.output
    assert "pod-a" not in gone.output
    assert json.loads(everyone.output)[0]["state"] == "removed"
    assert corral(database_url, "workers", "drain", "9999").exit_code == 3


@pytest.mark.parametrize("command", [["jobs", "list"], ["db", "migrate"], ["stats"]])
def test_a_wrong_password_is_named_and_never_printed(
    pg_server: PgHandle, command: list[str]
) -> None:
    url = make_conninfo(pg_server.dsn("postgres"), password="hunter2-wrong")
    result = corral(url, *command)
    assert result.exit_code == 1
    assert "password" in result.output and "check the password" in result.output
    assert "hunter2-wrong" not in result.output


def test_a_command_without_a_database_url_says_how_to_give_one() -> None:
    result = CliRunner().invoke(cli, ["jobs", "list"], env={"CORRAL_DATABASE_URL": ""})
    assert result.exit_code == 1
    assert "--database-url" in result.output and "CORRAL_DATABASE_URL" in result.output


def test_jobs_purge_deletes_only_finished_jobs_past_the_retention(database_url: str) -> None:
    kept = corral(database_url, "jobs", "enqueue", "noop").output.strip()
    old = corral(database_url, "jobs", "enqueue", "noop").output.strip()
    corral(database_url, "jobs", "cancel", old)
    run_sql(
        database_url,
        "UPDATE corral_jobs_finished SET finished_at = now() - interval '8 days' WHERE id = %s",
        [int(old)],
    )
    # A bare number would be seconds: refused, nothing deleted.
    bare = corral(database_url, "jobs", "purge", "--older-than", "7")
    assert bare.exit_code == 2 and "'7' has no unit: write 7d for days" in bare.output, bare.output
    assert corral(database_url, "jobs", "get", old).exit_code == 0
    result = corral(database_url, "jobs", "purge", "--older-than", "7d")
    assert result.exit_code == 0 and "deleted 1 finished job(s)" in result.output
    assert corral(database_url, "jobs", "get", old).exit_code == 3
    assert corral(database_url, "jobs", "get", kept).exit_code == 0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"dbname": "no_such_db"}, "database 'no_such_db' does not exist"),
        ({"user": "nobody"}, "nobody"),
        ({"port": "1"}, "nothing is listening on 127.0.0.1:1"),
    ],
)
def test_a_wrong_database_user_or_port_is_named_in_the_error(
    pg_server: PgHandle, change: dict[str, str], named: str
) -> None:
    url = make_conninfo(pg_server.dsn("postgres"), **change)
    result = corral(url, "stats")
    assert result.exit_code == 1
    assert named in result.output
    password = str(conninfo_to_dict(url).get("password") or "")
    assert not password or password not in result.output


def test_jobs_get_shows_what_the_handler_returned(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        job_id = queue.enqueue("http", {"url": "https://example.com"}, queue="q")
        worker = enroll(queue)
        [held] = queue.claim(worker.worker_id, worker.credential, ["q"])
        queue.complete_many([held], {job_id: {"status": 200, "cert_expires_in_days": 41.5}})
    table = corral(database_url, "jobs", "get", str(job_id))
    assert table.exit_code == 0, table.output
    header, row = table.output.splitlines()
    assert header.split()[-1] == "RESULT"
    assert row.endswith('{"cert_expires_in_days":41.5,"status":200}')
    shown = json.loads(corral(database_url, "jobs", "get", str(job_id), "-o", "json").output)
    assert shown["result"] == {"status": 200, "cert_expires_in_days": 41.5}


# -- regions: the enqueue check, corral regions list, fan-out groups ---------------------


def test_a_job_for_a_region_without_workers_is_refused_naming_the_regions_that_have_some(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as queue:
        enroll(queue, region="iad", name="w-iad", queues=["noop"])
        enroll(queue, region="fra", name="w-fra", queues=["noop"])
    refused = corral(database_url, "jobs", "enqueue", "noop", "--region", "sin")
    # A refusal by the live state (no worker there now), not a usage error: exit 1.
    assert refused.exit_code == 1, refused.output
    assert "no worker heartbeats in region 'sin'" in refused.output
    assert "regions with workers: fra, iad" in refused.output
    assert "--allow-empty-region" in refused.output
    served = corral(database_url, "jobs", "enqueue", "noop", "--region", "iad")
    forced = corral(database_url, "jobs", "enqueue", "noop", "--region", "sin",
                    "--allow-empty-region")  # fmt: skip
    assert served.exit_code == 0 and forced.exit_code == 0, served.output + forced.output
    with Queue.connect(database_url) as queue:
        assert sorted(str(j.region) for j in queue.list_jobs()) == ["iad", "sin"]
        # A worker silent for longer than LIVE_WORKER_S no longer counts.
        run_sql(database_url, "UPDATE corral_workers SET last_heartbeat = now() - interval '1 hour',"
                " enrolled_at = now() - interval '1 hour' WHERE region = 'iad'")  # fmt: skip
    stale = corral(database_url, "jobs", "enqueue", "noop", "--region", "iad")
    assert stale.exit_code == 1 and "regions with workers: fra." in stale.output


def test_a_job_for_a_queue_no_worker_of_its_region_serves_is_refused(database_url: str) -> None:
    # iad has a live worker, but for "mail" only; a pool token in iad admits
    # "reports" only: a "noop" job there would never be claimed.
    with Queue.connect(database_url) as queue:
        enroll(queue, region="iad", name="w-iad", queues=["mail"])
        queue.create_token("iad", pool="jobs/reports", ttl_s=600, uses=2, queues=["reports"])
        queue.create_token("ams", pool="jobs/any", ttl_s=600, uses=2)  # admits any queue
    refused = corral(database_url, "jobs", "enqueue", "noop", "--region", "iad")
    assert refused.exit_code == 1, refused.output
    assert "no worker in region 'iad' serves queue 'noop'" in refused.output
    assert "region iad serves: mail, reports" in refused.output
    for queue_name in ("mail", "reports"):
        served = corral(database_url, "jobs", "enqueue", "noop", "--queue", queue_name,
                        "--region", "iad")  # fmt: skip
        assert served.exit_code == 0, served.output
    assert corral(database_url, "jobs", "enqueue", "noop", "--region", "ams").exit_code == 0
    forced = corral(database_url, "jobs", "enqueue", "noop", "--region", "iad",
                    "--allow-empty-region")  # fmt: skip
    assert forced.exit_code == 0, forced.output
    with Queue.connect(database_url) as queue, pytest.raises(EmptyRegion, match="queue 'noop'"):
        queue.enqueue_group("noop", regions=["iad", "ams"])


def test_the_python_api_checks_regions_on_enqueue_and_only_when_asked_on_enqueue_many(
    database_url: str,
) -> None:
    from corral.queue import JobSpec

    with Queue.connect(database_url) as queue:
        enroll(queue, region="fra")
        with pytest.raises(EmptyRegion, match="region 'sin'"):
            queue.enqueue("noop", region="sin")
        assert queue.enqueue("noop", region="sin", allow_empty_region=True) > 0
        assert len(queue.enqueue_many([JobSpec("noop", region="sin")])) == 1  # bulk: off
        with pytest.raises(EmptyRegion, match="regions with workers: fra"):
            queue.enqueue_many(
                [JobSpec("noop", region="fra"), JobSpec("noop", region="sin")],
                allow_empty_region=False,
            )
        # A pool that can start a worker (its enrollment token is usable) takes
        # jobs though scaled to zero; an admin's token without a pool does not.
        queue.create_token("ams", pool="probes", ttl_s=600, uses=3)
        queue.create_token("lhr", ttl_s=600, uses=3)
        assert queue.enqueue("noop", region="ams") > 0
        with pytest.raises(EmptyRegion):
            queue.enqueue("noop", region="lhr")
        assert len(queue.list_jobs(limit=10)) == 3


def test_regions_list_shows_live_workers_pools_and_depth_in_each_format(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        enroll(queue, region="iad", name="a", pool="edge", queues=["noop"])
        enroll(queue, region="iad", name="b", queues=["noop"])
        queue.create_token("fra", pool="probes-fra", ttl_s=600, uses=2)
        for _ in range(3):
            queue.enqueue("noop", region="iad")
        queue.enqueue("noop", region="sin", allow_empty_region=True)
    table = corral(database_url, "regions", "list")
    assert table.exit_code == 0, table.output
    lines = [line.split() for line in table.output.splitlines()]
    assert lines[0] == ["REGION", "WORKERS", "POOLS", "DEPTH", "ACCEPTS-JOBS"]
    assert lines[1:] == [
        ["fra", "0", "probes-fra", "0", "yes"],
        ["iad", "2", "edge", "3", "yes"],
        ["sin", "0", "<none>", "1", "no"],
    ]
    as_json = json.loads(corral(database_url, "regions", "list", "-o", "json").output)
    assert as_json[1] == {
        "name": "iad", "workers": 2, "pools": ["edge"], "depth": 3, "pool_can_start": False,
        "accepts_jobs": True,
    }  # fmt: skip
    as_yaml = yaml.safe_load(corral(database_url, "regions", "list", "-o", "yaml").output)
    assert [r["name"] for r in as_yaml] == ["fra", "iad", "sin"]


def _group(url: str, group: str) -> dict[str, Any]:
    shown = corral(url, "jobs", "get", group, "-o", "json")
    assert shown.exit_code == 0, shown.output
    data: dict[str, Any] = json.loads(shown.output)
    return data


def test_a_fan_out_enqueues_one_job_per_region_and_rolls_up_by_its_rule(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        worker = {
            region: enroll(queue, region=region, name=f"w-{region}", queues=("probe",))
            for region in ("iad", "fra", "sin")
        }
    out = corral(database_url, "jobs", "enqueue", "probe", '{"url": "https://example.com"}',
                 "--regions", "iad,fra,sin", "--rule", "majority")  # fmt: skip
    assert out.exit_code == 0, out.output
    group = out.output.strip()
    assert group.startswith("g-")
    shown = _group(database_url, group)
    assert (shown["name"], shown["rule"], shown["status"]) == (group, "majority", "pending")
    jobs = {j["region"]: j for j in shown["jobs"]}
    assert sorted(jobs) == ["fra", "iad", "sin"]
    with Queue.connect(database_url) as queue:
        for region in jobs:
            job = queue.get_job(jobs[region]["job_id"])
            assert (job.region, job.payload, job.state) == (
                region, {"url": "https://example.com"}, "pending",
            )  # fmt: skip
        queue.cancel(jobs["sin"]["job_id"])
        _finish(database_url, worker["iad"])
        assert _group(database_url, group)["status"] == "pending"  # 1 of 3, 1 open
        _finish(database_url, worker["fra"])
    assert _group(database_url, group)["status"] == "succeeded"  # 2 of 3
    table = corral(database_url, "jobs", "get", group)
    assert table.output.splitlines()[0].split() == [
        "GROUP", "RULE", "STATUS", "REGION", "JOB", "STATE", "ATTEMPTS", "LAST-ERROR",
    ]  # fmt: skip
    assert [line.split()[3:6] for line in table.output.splitlines()[1:]] == [
        ["fra", str(jobs["fra"]["job_id"]), "completed"],
        ["iad", str(jobs["iad"]["job_id"]), "completed"],
        ["sin", str(jobs["sin"]["job_id"]), "cancelled"],
    ]
    # rule all: failed as soon as one region's job cannot complete.
    strict = corral(database_url, "jobs", "enqueue", "probe", "--regions", "iad,fra")
    strict_jobs = _group(database_url, strict.output.strip())["jobs"]
    with Queue.connect(database_url) as queue:
        queue.cancel(strict_jobs[0]["job_id"])
    assert _group(database_url, strict.output.strip())["status"] == "failed"
    # A job id still reads as a job.
    assert corral(database_url, "jobs", "get", str(jobs["iad"]["job_id"])).exit_code == 0


def _finish(url: str, worker: Enrollment) -> None:
    """The region's worker claims its job and completes it."""
    with Queue.connect(url) as queue:
        (job,) = queue.claim(worker.worker_id, worker.credential, ["probe"], batch=5)
        assert queue.complete_many([job]) == []


def test_fan_out_and_group_mistakes_exit_1_2_or_3_naming_the_fix(database_url: str) -> None:
    with Queue.connect(database_url) as queue:
        enroll(queue, region="iad")
    empty = corral(database_url, "jobs", "enqueue", "noop", "--regions", "iad,sin")
    both = corral(database_url, "jobs", "enqueue", "noop", "--regions", "iad", "--region", "iad")
    twice = corral(database_url, "jobs", "enqueue", "noop", "--regions", "iad,iad")
    lone_rule = corral(database_url, "jobs", "enqueue", "noop", "--rule", "any")
    bad_id = corral(database_url, "jobs", "get", "group-1")
    missing = corral(database_url, "jobs", "get", "g-999")
    assert empty.exit_code == 1 and "region 'sin'" in empty.output  # the live state
    assert both.exit_code == 2 and "leave out --region" in both.output
    assert twice.exit_code == 2 and "iad named more than once" in twice.output
    assert lone_rule.exit_code == 2 and "give --regions" in lone_rule.output
    assert bad_id.exit_code == 2 and "group id (g-12)" in bad_id.output
    assert missing.exit_code == 3 and "no job group g-999" in missing.output
    with Queue.connect(database_url) as queue:
        assert queue.list_jobs() == []  # the refused fan-out left nothing behind


def test_a_refused_password_names_where_the_url_came_from(
    worker_database_url: str, tmp_path: Path
) -> None:
    wrong = make_conninfo(worker_database_url, password="wrong-pw-4711")
    variable = CliRunner().invoke(cli, ["stats"], env={"CORRAL_DATABASE_URL": wrong})
    flag = CliRunner().invoke(
        cli, ["stats", "--database-url", wrong], env={"CORRAL_DATABASE_URL": ""}
    )
    home = {"XDG_CONFIG_HOME": str(tmp_path), "CORRAL_DATABASE_URL": ""}
    made = CliRunner().invoke(
        cli, ["config", "set-context", "prod", "--database-url", wrong], env=home
    )
    assert made.exit_code == 0, made.output
    context = CliRunner().invoke(cli, ["stats"], env=home)
    for result, source in ((variable, "CORRAL_DATABASE_URL"), (flag, "--database-url"),
                           (context, "context prod")):  # fmt: skip
        assert result.exit_code == 1, result.output
        assert "check the password" in result.output, result.output
        assert f"(from {source})" in result.output, result.output
        assert "wrong-pw-4711" not in result.output

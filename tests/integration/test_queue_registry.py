"""Enrollment tokens and the workers registry."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from corral.queue import (
    AsyncQueue,
    CredentialError,
    EnrollmentError,
    JobState,
    WorkerRemoved,
    WorkerState,
)
from tests.integration._clients import Client
from tests.integration._enrolled import enroll, run_sql


def test_enrollment_tokens_and_credentials_are_stored_only_as_sha256_hashes(
    database_url: str, queue: Client
) -> None:
    token = queue.create_token("eu", pool="batch", ttl_s=900, uses=1)
    worker = queue.enroll(token.secret, name="pod-1", queues=["q"], concurrency=8)
    assert token.secret.startswith("crl_et_") and len(token.secret) >= 7 + 43  # 256 bits
    dump = repr(run_sql(database_url, "SELECT * FROM corral_enrollment_tokens"))
    dump += repr(run_sql(database_url, "SELECT * FROM corral_workers"))
    assert token.secret not in dump and worker.credential not in dump
    assert hashlib.sha256(token.secret.encode()).hexdigest() in dump
    assert hashlib.sha256(worker.credential.encode()).hexdigest() in dump
    assert (worker.region, worker.pool) == ("eu", "batch")


def test_a_token_enrolls_only_as_many_workers_as_its_uses(queue: Client) -> None:
    token = queue.create_token("eu", uses=2)
    for name in ("a", "b"):
        queue.enroll(token.secret, name=name, queues=["q"], concurrency=1)
    with pytest.raises(EnrollmentError, match="no uses left"):
        queue.enroll(token.secret, name="c", queues=["q"], concurrency=1)
    assert queue.list_tokens() == []
    [spent] = queue.list_tokens(include_unusable=True)
    assert spent.uses_remaining == 0


def test_an_expired_or_revoked_token_cannot_enroll(database_url: str, queue: Client) -> None:
    expired = queue.create_token("eu", ttl_s=60)
    run_sql(
        database_url,
        "UPDATE corral_enrollment_tokens SET expires_at = now() - interval '1 s' WHERE id = %s",
        [expired.info.id],
    )
    revoked = queue.create_token("eu", ttl_s=60)
    queue.revoke_token(revoked.info.display_prefix)
    with pytest.raises(EnrollmentError, match="expired"):
        queue.enroll(expired.secret, name="a", queues=["q"], concurrency=1)
    with pytest.raises(EnrollmentError, match="revoked"):
        queue.enroll(revoked.secret, name="b", queues=["q"], concurrency=1)
    with pytest.raises(EnrollmentError, match="not known"):
        queue.enroll("crl_et_made-up", name="c", queues=["q"], concurrency=1)


def test_a_restarted_worker_reauthenticates_with_its_credential_and_a_wrong_one_is_refused(
    queue: Client,
) -> None:
    worker = enroll(queue)
    state = queue.authenticate(worker.worker_id, worker.credential, version="0.2.0", concurrency=16)
    assert state == WorkerState.ACTIVE
    assert queue.get_worker(worker.worker_id).concurrency == 16
    with pytest.raises(CredentialError):
        queue.authenticate(worker.worker_id, worker.credential + "x")
    with pytest.raises(CredentialError):
        queue.heartbeat(worker.worker_id, "crl_wc_wrong", in_flight=0)
    with pytest.raises(CredentialError):
        queue.claim(worker.worker_id, "crl_wc_wrong", ["q"])


def test_a_drained_worker_stops_claiming_and_reports_drained_with_nothing_in_flight(
    queue: Client,
) -> None:
    queue.enqueue("noop", queue="q")
    queue.enqueue("noop", queue="q")
    worker = enroll(queue)
    [held] = queue.claim(worker.worker_id, worker.credential, ["q"], batch=1)
    assert queue.request_drain(worker.worker_id).state == WorkerState.DRAINING
    assert queue.heartbeat(worker.worker_id, worker.credential, in_flight=1) == WorkerState.DRAINING
    assert queue.claim(worker.worker_id, worker.credential, ["q"]) == []
    queue.complete_many([held])
    assert queue.mark_drained(worker.worker_id, worker.credential) == WorkerState.DRAINED
    listed = {w.id: w for w in queue.list_workers()}
    assert listed[worker.worker_id].state == WorkerState.DRAINED
    assert listed[worker.worker_id].in_flight == 0
    assert listed[worker.worker_id].drained_at is not None


def test_a_removed_worker_is_refused_and_its_running_jobs_are_retried(queue: Client) -> None:
    job_id = queue.enqueue("noop", queue="q")
    worker = enroll(queue)
    [held] = queue.claim(worker.worker_id, worker.credential, ["q"])
    assert queue.remove_worker(worker.worker_id).state == WorkerState.REMOVED
    assert queue.heartbeat(worker.worker_id, worker.credential, in_flight=1) == WorkerState.REMOVED
    with pytest.raises(WorkerRemoved):
        queue.claim(worker.worker_id, worker.credential, ["q"])
    # It still holds the job, but cannot complete it: the job is retried.
    with pytest.raises(CredentialError):
        queue.complete_many([held], worker=worker)
    with pytest.raises(WorkerRemoved):
        queue.authenticate(worker.worker_id, worker.credential)
    assert queue.reap() == 1
    assert queue.complete_many([held]) == [job_id]
    assert queue.get_job(job_id).state == JobState.SCHEDULED
    assert worker.worker_id not in {w.id for w in queue.list_workers()}
    assert worker.worker_id in {w.id for w in queue.list_workers(include_removed=True)}


def test_the_asyncio_client_serves_the_operators_calls(database_url: str) -> None:
    async def scenario() -> None:
        async with await AsyncQueue.connect(database_url) as aq:
            token = await aq.create_token("eu", pool="web", ttl_s=60, uses=1)
            worker = await aq.enroll(token.secret, name="pod-1", queues=["q"], concurrency=2)
            await aq.enqueue("noop", queue="q", region="eu")
            assert (await aq.depth(["q"], "eu")).pending == 1
            assert [w.pool for w in await aq.list_workers()] == ["web"]
            assert (await aq.request_drain(worker.worker_id)).state == WorkerState.DRAINING
            assert (await aq.remove_worker(worker.worker_id)).state == WorkerState.REMOVED
            assert await aq.list_workers() == []

    asyncio.run(scenario())


def test_a_worker_drains_itself_with_its_credential_and_a_restart_makes_it_active_again(
    queue: Client,
) -> None:
    queue.enqueue("noop", queue="q")
    worker = enroll(queue)
    with pytest.raises(CredentialError):
        queue.drain_self(worker.worker_id, worker.credential + "x")
    assert queue.drain_self(worker.worker_id, worker.credential) == WorkerState.DRAINING
    row = queue.get_worker(worker.worker_id)
    assert (row.state, row.drain_requested_by) == (WorkerState.DRAINING, "self")
    assert row.drain_requested_at is not None
    assert queue.claim(worker.worker_id, worker.credential, ["q"]) == []
    assert queue.mark_drained(worker.worker_id, worker.credential) == WorkerState.DRAINED
    # Draining again changes nothing.
    assert queue.drain_self(worker.worker_id, worker.credential) == WorkerState.DRAINED
    # The process that drained is gone; its restarted container works again.
    assert queue.authenticate(worker.worker_id, worker.credential) == WorkerState.ACTIVE
    row = queue.get_worker(worker.worker_id)
    assert (row.state, row.drain_requested_by, row.drained_at) == (
        WorkerState.ACTIVE,
        None,
        None,
    )
    assert len(queue.claim(worker.worker_id, worker.credential, ["q"])) == 1


def test_an_admin_drain_outlasts_a_restart_even_when_the_worker_began_draining_itself(
    queue: Client,
) -> None:
    worker = enroll(queue)
    queue.drain_self(worker.worker_id, worker.credential)
    assert queue.request_drain(worker.worker_id).drain_requested_by == "admin"
    assert queue.authenticate(worker.worker_id, worker.credential) == WorkerState.DRAINING
    other = enroll(queue, name="w2")
    queue.request_drain(other.worker_id)
    assert queue.authenticate(other.worker_id, other.credential) == WorkerState.DRAINING


def test_a_removed_worker_cannot_drain_itself_back_into_the_fleet(database_url: str) -> None:
    async def scenario() -> None:
        async with await AsyncQueue.connect(database_url) as aq:
            token = await aq.create_token("eu", ttl_s=60, uses=1)
            worker = await aq.enroll(token.secret, name="pod-1", queues=["q"], concurrency=2)
            assert await aq.drain_self(worker.worker_id, worker.credential) == (
                WorkerState.DRAINING
            )
            await aq.remove_worker(worker.worker_id)
            with pytest.raises(WorkerRemoved):
                await aq.drain_self(worker.worker_id, worker.credential)
            assert (await aq.get_worker(worker.worker_id)).state == WorkerState.REMOVED

    asyncio.run(scenario())


def test_registry_retention_deletes_long_removed_and_long_silent_workers_and_dead_tokens(
    database_url: str, queue: Client
) -> None:
    def worker(name: str, state: str, last_seen: str) -> int:
        token = queue.create_token("eu", ttl_s=86_400 * 30, uses=1)
        w = queue.enroll(token.secret, name=name, queues=["q"], concurrency=1)
        column = "removed_at" if state == "removed" else "last_heartbeat"
        run_sql(
            database_url,
            f"UPDATE corral_workers SET state = %s, {column} = now() - %s::interval WHERE id = %s",
            [state, last_seen, w.worker_id],
        )
        return w.worker_id

    old_removed = worker("old-removed", "removed", "8 days")
    worker("new-removed", "removed", "1 day")
    old_silent = worker("old-silent", "active", "8 days")
    worker("heartbeating", "active", "1 second")
    worker("drained-idle", "drained", "2 seconds")

    def token(age: str, how: str) -> int:
        t = queue.create_token("eu", ttl_s=86_400 * 30, uses=5)
        run_sql(database_url, f"UPDATE corral_enrollment_tokens SET {how} WHERE id = %s",
                [t.info.id])  # fmt: skip
        return t.info.id

    dead = {
        token("8 days", "revoked_at = now() - interval '8 days'"),
        token("8 days", "expires_at = now() - interval '8 days'"),
        token("8 days", "uses_remaining = 0, last_used_at = now() - interval '8 days'"),
    }
    token("1 day", "revoked_at = now() - interval '1 day'")  # dead, not for long enough
    token("live", "last_used_at = now() - interval '8 days'")  # unused lately, still usable
    tokens_before = {r[0] for r in run_sql(database_url, "SELECT id FROM corral_enrollment_tokens")}

    purged = queue.purge_registry(7 * 86_400, batch=2)  # batches smaller than the work
    assert (purged.workers, purged.tokens) == (2, 3)
    names = {r[0] for r in run_sql(database_url, "SELECT name FROM corral_workers")}
    assert names == {"new-removed", "heartbeating", "drained-idle"}
    assert not {old_removed, old_silent} & {
        r[0] for r in run_sql(database_url, "SELECT id FROM corral_workers")
    }
    left = {r[0] for r in run_sql(database_url, "SELECT id FROM corral_enrollment_tokens")}
    assert left == tokens_before - dead
    assert queue.purge_registry(7 * 86_400) == type(purged)(workers=0, tokens=0)


def test_a_restart_answers_restarting_and_ends_when_the_worker_reauthenticates(
    queue: Client,
) -> None:
    worker = enroll(queue, pool="p")
    restarting = queue.request_restart(worker.worker_id)
    assert (restarting.state, restarting.shown_state) == (WorkerState.DRAINING, "restarting")
    assert queue.heartbeat(worker.worker_id, worker.credential, in_flight=0) == "restarting"
    assert queue.mark_drained(worker.worker_id, worker.credential) == WorkerState.DRAINED
    assert queue.get_worker(worker.worker_id).shown_state == "restarting"
    # The new process, with the stored credential: active, the restart forgotten.
    assert queue.authenticate(worker.worker_id, worker.credential) == WorkerState.ACTIVE
    row = queue.get_worker(worker.worker_id)
    assert (row.state, row.drain_requested_by, row.drained_at) == ("active", None, None)
    assert queue.heartbeat(worker.worker_id, worker.credential, in_flight=0) == "active"


def test_resume_undoes_a_registry_drain_under_way_and_refuses_what_it_cannot(
    queue: Client,
) -> None:
    from corral.queue import WorkerStateError

    hand = enroll(queue, name="by-hand")
    pooled = enroll(queue, name="pooled", pool="p")
    own = enroll(queue, name="own")
    for w in (hand, pooled):
        queue.request_drain(w.worker_id)
        queue.mark_drained(w.worker_id, w.credential)
    # Drained: a pool's worker stays up and can resume; one by hand has exited.
    assert queue.resume_worker(pooled.worker_id).state == WorkerState.ACTIVE
    with pytest.raises(WorkerStateError, match="start it again instead"):
        queue.resume_worker(hand.worker_id)
    # Draining (not finished): resumed whoever runs it; then nothing to undo.
    queue.request_restart(own.worker_id)
    resumed = queue.resume_worker(own.worker_id)
    assert (resumed.state, resumed.drain_requested_by) == (WorkerState.ACTIVE, None)
    assert queue.heartbeat(own.worker_id, own.credential, in_flight=0) == WorkerState.ACTIVE
    with pytest.raises(WorkerStateError, match="no drain to undo"):
        queue.resume_worker(own.worker_id)
    queue.drain_self(own.worker_id, own.credential)  # SIGTERM: its pod is going
    with pytest.raises(WorkerStateError, match="by its own drain"):
        queue.resume_worker(own.worker_id)


def test_the_region_check_and_fan_out_groups_behave_alike_in_both_clients(
    queue: Client,
) -> None:
    from corral.queue import EmptyRegion

    with pytest.raises(EmptyRegion, match="regions with workers: none"):
        queue.enqueue("noop", queue="q", region="eu")
    enroll(queue, region="eu")
    assert queue.enqueue("noop", queue="q", region="eu") > 0
    with pytest.raises(EmptyRegion, match="region 'us'"):
        queue.enqueue_group("noop", regions=["eu", "us"], queue="q")
    group = queue.enqueue_group(
        "noop", {"n": 1}, regions=["eu", "us"], rule="any", queue="q", allow_empty_region=True
    )
    assert (group.rule, group.status, [j.region for j in group.jobs]) == (
        "any", "pending", ["eu", "us"],
    )  # fmt: skip
    assert queue.get_group(group.id) == group
    assert [(r.name, r.workers, r.depth) for r in queue.list_regions()] == [
        ("eu", 1, 2),
        ("us", 0, 1),
    ]


def test_a_fan_out_needs_the_queues_history_and_a_job_retention_purged_reads_unknown(
    database_url: str, queue: Client
) -> None:
    from corral.queue import InvalidJob

    enroll(queue, region="eu")
    queue.set_queue_defaults("nohistory", keep_completed=False)
    # Its completed jobs would vanish at once, and the group's status with them.
    with pytest.raises(InvalidJob, match="corral queues set nohistory --keep-completed true"):
        queue.enqueue_group("noop", regions=["eu"], queue="nohistory")
    assert run_sql(database_url, "SELECT count(*) FROM corral_job_groups") == [(0,)]
    group = queue.enqueue_group("noop", regions=["eu"], queue="q")
    # Gone from both tables, as retention leaves a job: it may have completed.
    run_sql(database_url, "DELETE FROM corral_jobs WHERE id = %s", (group.jobs[0].job_id,))
    assert queue.get_group(group.id).status == "unknown"

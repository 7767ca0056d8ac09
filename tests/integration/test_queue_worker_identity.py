"""A worker's credential and name cannot outlive or impersonate its pod.

Run as the worker role (`worker_database_url`), as a holder of a copied
credential or of a pool's token would. Reproduces the reviewer's scripts
(stolen credential brought back after a scale-down, a worker renaming
itself after a busy pod, an unbounded in_flight) against the real server.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import subprocess
from typing import cast

import pytest

from corral.controller.config import OperatorConfig
from corral.controller.queue_access import QueueAccess
from corral.controller.reconcile import Reconciler
from corral.kube import Kube
from corral.queue import CredentialError, EnrollmentError, Queue, WorkerRemoved, WorkerState
from tests.integration._clients import Connect
from tests.integration._enrolled import run_sql
from tests.integration._workers import CORRAL

POOL = "prod/batch"


def _pool_token(database_url: str, *, uses: int = 10) -> str:
    with Queue.connect(database_url) as admin:
        return admin.create_token("eu", pool=POOL, uses=uses, ttl_s=600, queues=["batch"]).secret


def test_a_pool_worker_whose_drain_finished_cannot_authenticate_back_to_active(
    connect: Connect, database_url: str, worker_database_url: str
) -> None:
    token = _pool_token(database_url)
    with connect(worker_database_url) as w:
        e = w.enroll(token, name="batch-5c-xyz12", queues=["batch"], concurrency=1)
    with Queue.connect(database_url) as admin:
        # The operator's scale-down: the scaler drains, the pod's preStop
        # drains itself (turning the scaler's drain into its own), the worker
        # reports drained and the pod goes.
        assert admin.scaler_drain([e.worker_id]) == [e.worker_id]
        admin.enqueue("export", {"s3_key": "secret-report.csv"}, queue="batch", region="eu")
    with connect(worker_database_url) as w:
        assert w.drain_self(e.worker_id, e.credential) == WorkerState.DRAINING
        assert w.mark_drained(e.worker_id, e.credential) == WorkerState.DRAINED
        # Whoever copied credential.json cannot bring the row back.
        with pytest.raises(CredentialError, match="enroll afresh"):
            w.authenticate(e.worker_id, e.credential)
        assert w.heartbeat(e.worker_id, e.credential, in_flight=0) == WorkerState.DRAINED
        assert w.claim(e.worker_id, e.credential, ["batch"]) == []
    row = run_sql(database_url, "SELECT state FROM corral_workers WHERE id = %s", [e.worker_id])
    assert row == [("drained",)]
    # A container restarted inside the live pod enrolls afresh with the pool's
    # token under its pod's name; the retired row leaves the registry.
    with connect(worker_database_url) as w:
        again = w.enroll(token, name="batch-5c-xyz12", queues=["batch"], concurrency=1)
        assert len(w.claim(again.worker_id, again.credential, ["batch"])) == 1
    states = run_sql(database_url, "SELECT id, state FROM corral_workers ORDER BY id", [])
    assert states == [(e.worker_id, "removed"), (again.worker_id, "active")]


def test_a_pool_workers_restart_still_comes_back_active(
    connect: Connect, database_url: str, worker_database_url: str
) -> None:
    token = _pool_token(database_url)
    with connect(worker_database_url) as w:
        e = w.enroll(token, name="batch-r", queues=["batch"], concurrency=1)
    with Queue.connect(database_url) as admin:
        admin.request_restart(e.worker_id)
    with connect(worker_database_url) as w:
        w.mark_drained(e.worker_id, e.credential)
        # `corral workers restart`: the container exits 75 and comes back in its pod.
        assert w.authenticate(e.worker_id, e.credential) == WorkerState.ACTIVE
        # A self-drain that has not finished (the worker was killed while
        # draining) ends with the process, as before.
        w.drain_self(e.worker_id, e.credential)
        assert w.authenticate(e.worker_id, e.credential) == WorkerState.ACTIVE


def test_a_name_held_by_a_live_worker_of_the_pool_cannot_be_taken(
    connect: Connect, database_url: str, worker_database_url: str
) -> None:
    token = _pool_token(database_url)
    with connect(worker_database_url) as w:
        busy = w.enroll(token, name="render-aaa", queues=["batch"], concurrency=3)
        rogue = w.enroll(token, name="render-ccc", queues=["batch"], concurrency=1)
        with pytest.raises(EnrollmentError, match="render-aaa"):
            w.enroll(token, name="render-aaa", queues=["batch"], concurrency=1)
        with pytest.raises(EnrollmentError, match="render-aaa"):
            w.authenticate(rogue.worker_id, rogue.credential, name="render-aaa")
        # Its own name, or a free one, is fine; so is the same name in
        # another pool or outside any pool.
        assert w.authenticate(busy.worker_id, busy.credential, name="render-aaa") == "active"
        assert w.authenticate(rogue.worker_id, rogue.credential, name="render-ddd") == "active"
    names = run_sql(database_url, "SELECT name FROM corral_workers ORDER BY id", [])
    assert names == [("render-aaa",), ("render-ddd",)]
    with Queue.connect(database_url) as admin:
        other = admin.create_token("eu", pool="prod/other", uses=1, ttl_s=60).secret
        loose = admin.create_token("eu", uses=1, ttl_s=60).secret
    with connect(worker_database_url) as w:
        w.enroll(other, name="render-aaa", queues=["batch"], concurrency=1)
        w.enroll(loose, name="render-aaa", queues=["batch"], concurrency=1)


def test_a_heartbeat_cannot_report_more_jobs_than_the_worker_has_slots(
    connect: Connect, database_url: str, worker_database_url: str
) -> None:
    token = _pool_token(database_url)
    with connect(worker_database_url) as w:
        e = w.enroll(token, name="infl-1", queues=["batch"], concurrency=2)
        w.heartbeat(e.worker_id, e.credential, in_flight=2147483647)
    with Queue.connect(database_url) as admin:
        [row] = admin.pool_workers(POOL)
    assert (row.concurrency, row.in_flight) == (2, 2)


def test_the_operator_removes_the_row_of_a_worker_whose_pod_is_gone_and_the_copy_dies(
    database_url: str, worker_database_url: str
) -> None:
    # The whole reconcile on the real queue, with the API server in memory.
    from tests.unit.test_controller_reconcile import FakeKube, _pods, _pool, _reconcile

    kube = FakeKube()
    kube.objects[("Region", None, "default")] = {
        "apiVersion": "corral.dev/v1alpha1", "kind": "Region",
        "metadata": {"name": "default"}, "spec": {},
    }  # fmt: skip
    access = QueueAccess(database_url)
    reconciler = Reconciler(
        cast(Kube, kube),
        access,
        OperatorConfig(database_url=database_url, worker_database_url=worker_database_url),
    )
    try:
        now = dt.datetime.now(dt.UTC)
        _reconcile(reconciler, _pool(replicas={"min": 1, "max": 1}), now=now)
        secret = kube.objects[("Secret", "jobs", "email-enrollment")]
        token = base64.b64decode(secret["data"]["token"]).decode()
        _pods(kube, "email-a")
        with Queue.connect(worker_database_url) as w:
            kept = w.enroll(token, name="email-a", queues=["email"], concurrency=1)
            gone = w.enroll(token, name="email-b", queues=["email"], concurrency=1)
            w.drain_self(gone.worker_id, gone.credential)
            w.mark_drained(gone.worker_id, gone.credential)
            young = w.enroll(token, name="email-c", queues=["email"], concurrency=1)
        run_sql(
            database_url,
            "UPDATE corral_workers SET enrolled_at = now() - interval '10 minutes'"
            " WHERE id = ANY(%s)",
            [[kept.worker_id, gone.worker_id]],
        )
        reconciler.autoscale("jobs", "email", now=dt.datetime.now(dt.UTC))
        with Queue.connect(worker_database_url) as w:
            with pytest.raises(WorkerRemoved):
                w.claim(gone.worker_id, gone.credential, ["email"])
            with pytest.raises(WorkerRemoved):
                w.authenticate(gone.worker_id, gone.credential)
            w.claim(kept.worker_id, kept.credential, ["email"])
            w.claim(young.worker_id, young.credential, ["email"])  # its pod may be starting
    finally:
        access.close()


def test_revoking_a_leaked_token_with_remove_workers_removes_the_workers_it_enrolled(
    database_url: str, worker_database_url: str
) -> None:
    # /tmp/rc/revoke.py: the admin revokes a leaked token as the docs say;
    # the worker an attacker enrolled with it must go too, and be findable.
    with Queue.connect(database_url) as admin:
        leaked = admin.create_token("eu", pool="prod/payments", uses=10, ttl_s=600)
        other = admin.create_token("eu", pool="prod/payments", uses=10, ttl_s=600)
        for n in range(3):
            admin.enqueue("charge", {"n": n}, queue="payments", region="eu")
    with Queue.connect(worker_database_url) as w:
        rogue = w.enroll(leaked.secret, name="payments-7d9f-abcde", queues=["payments"],
                         concurrency=1)  # fmt: skip
        real = w.enroll(other.secret, name="payments-1", queues=["payments"], concurrency=1)
        [held] = w.claim(rogue.worker_id, rogue.credential, ["payments"], batch=1)
    with Queue.connect(database_url) as admin:
        by_id = {x.id: x for x in admin.list_workers()}
    assert (by_id[rogue.worker_id].token_id, by_id[real.worker_id].token_id) == (
        leaked.info.id, other.info.id,
    )  # fmt: skip
    with Queue.connect(database_url) as admin:
        assert admin.remove_token_workers(leaked.info.id) == 1
        assert admin.get_token(leaked.info.id).revoked_at is not None
    with Queue.connect(worker_database_url) as w:
        with pytest.raises(WorkerRemoved):
            w.claim(rogue.worker_id, rogue.credential, ["payments"])
        assert len(w.claim(real.worker_id, real.credential, ["payments"])) == 2
    lease = run_sql(
        database_url, "SELECT lease_expires_at <= now() FROM corral_jobs WHERE id = %s", [held.id]
    )
    assert lease == [(True,)]  # the rogue's job goes back through the reaper now


def test_revoking_a_token_alone_leaves_the_workers_it_enrolled(database_url: str) -> None:
    # The operator revokes a rotated pool token after its grace period: the
    # pool's workers enrolled with it are legitimate.
    with Queue.connect(database_url) as admin:
        token = admin.create_token("eu", pool="prod/payments", uses=1, ttl_s=600)
        worker = admin.enroll(token.secret, name="p-1", queues=["payments"], concurrency=1)
        admin.revoke_token(token.info.id)
        assert admin.get_worker(worker.worker_id).state == WorkerState.ACTIVE


def test_the_cli_shows_each_workers_token_and_revokes_a_leaked_one_with_its_workers(
    database_url: str,
) -> None:
    with Queue.connect(database_url) as admin:
        leaked = admin.create_token("eu", pool="prod/payments", uses=2, ttl_s=600)
        other = admin.create_token("eu", pool="prod/payments", uses=1, ttl_s=600)
        rogue = admin.enroll(leaked.secret, name="p-x", queues=["payments"], concurrency=1)
        real = admin.enroll(other.secret, name="p-1", queues=["payments"], concurrency=1)
    env = {**os.environ, "CORRAL_DATABASE_URL": database_url}

    def corral(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CORRAL, *args], capture_output=True, text=True, env=env)

    listed = corral("workers", "list").stdout.splitlines()
    assert listed[0].split()[-1] == "TOKEN"
    assert [line.split()[-1] for line in listed[1:]] == [str(leaked.info.id), str(other.info.id)]
    done = corral("tokens", "revoke", str(leaked.info.id), "--remove-workers")
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"token {leaked.info.id} revoked; 1 worker(s) it enrolled removed\n"
    with Queue.connect(database_url) as admin:
        assert admin.get_worker(rogue.worker_id).state == WorkerState.REMOVED
        assert admin.get_worker(real.worker_id).state == WorkerState.ACTIVE
    assert corral("tokens", "revoke", str(other.info.id)).stdout == (
        f"token {other.info.id} revoked\n"
    )
    with Queue.connect(database_url) as admin:
        assert admin.get_worker(real.worker_id).state == WorkerState.ACTIVE

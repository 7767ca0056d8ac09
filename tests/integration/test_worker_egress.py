"""The executor guard in a real `corral worker` process, against real servers
on loopback addresses: each rule refuses its target (the job goes straight to
dead, reason `payload`, the rule named) and an allow rule opens it; the
worker's own endpoint stays closed whatever the allow list says.

Link-local targets are not routed on every host, so for 169.254.169.254 the
test checks what the guard decides, not what the network would answer: with
the default rules the job is refused before any packet is sent; once allowed,
whatever happens next (a timeout here, an answer on a cloud VM) is the
network's doing, not the guard's.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from corral import queue
from tests.integration._local_servers import ok_server
from tests.integration._workers import WorkerProcess, mint_token, wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def servers() -> Iterator[dict[str, int]]:
    """HTTP servers on 127.0.0.2 and 127.0.0.1 (twice), and one whose status
    line never ends."""
    started = {"a": ok_server("127.0.0.2"), "b": ok_server(), "c": ok_server()}
    endless = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def babble() -> None:
        endless.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = endless.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 200 " + b"x" * 60_000)  # under asyncio's own 64 KiB limit

    threading.Thread(target=babble, daemon=True).start()
    ports = {name: int(server.server_address[1]) for name, server in started.items()}
    ports["endless"] = int(endless.getsockname()[1])
    yield ports
    stop.set()
    for server in started.values():
        server.shutdown()
    endless.close()


def _spawn(
    started: list[WorkerProcess], dsn: str, tmp_path: Path, name: str, *args: str
) -> WorkerProcess:
    w = WorkerProcess(
        dsn, tmp_path / name, name=name, token=mint_token(dsn), queues=name, args=args
    )
    started.append(w)
    return w.wait_ready()


def _finish(dsn: str, ids: dict[str, int]) -> dict[str, Any]:
    with queue.Queue.connect(dsn) as q:

        def done() -> dict[str, Any] | None:
            jobs = {what: q.get_job(i) for what, i in ids.items()}
            finished = all(j.state in ("completed", "dead") for j in jobs.values())
            return jobs if finished else None

        jobs: dict[str, Any] = wait_until(done, 60, f"jobs {sorted(ids)} to finish")
        return jobs


def test_each_guard_rule_refuses_its_target_and_an_allow_rule_opens_it(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess], servers: dict[str, int]
) -> None:
    a, b, c = servers["a"], servers["b"], servers["c"]
    deny = f"127.0.0.2/32,localhost,:{c}"
    closed = _spawn(workers, database_url, tmp_path, "closed", "--egress-deny", deny)
    opened = _spawn(
        workers, database_url, tmp_path, "opened", "--egress-deny", deny,
        # Everything refused above, opened again; and all of loopback on every
        # port, which must still not open the worker's own endpoint.
        "--egress-allow", f"127.0.0.2:{a},localhost,127.0.0.1:{c},169.254.169.254:80",
        "--egress-allow", "127.0.0.0/8",
    )  # fmt: skip

    def jobs(w: WorkerProcess) -> dict[str, int]:
        with queue.Queue.connect(database_url) as q:
            specs: dict[str, tuple[str, dict[str, Any]]] = {
                "cidr": ("http", {"url": f"http://127.0.0.2:{a}/"}),
                # "localhost" is judged on what it resolves to, then by name.
                "host pattern": ("tcp", {"host": "localhost", "port": b}),
                "port": ("tcp", {"host": "127.0.0.1", "port": c}),
                "dns by name": ("dns", {"name": "localhost"}),
                "metadata": (
                    "http",
                    {"url": "http://169.254.169.254/latest/meta-data/", "timeout": 2},
                ),
                "metadata v6": ("http", {"url": "http://[fd00:ec2::254]/", "timeout": 2}),
                "own drain": (
                    "http",
                    {"url": f"http://127.0.0.1:{w.port}/drain", "method": "POST"},
                ),
                "own drain by name": ("tcp", {"host": "localhost", "port": w.port}),
            }
            return {
                what: q.enqueue(kind, payload, queue=w.name, max_attempts=3)
                for what, (kind, payload) in specs.items()
            }

    refused = _finish(database_url, jobs(closed))
    allowed = _finish(database_url, jobs(opened))

    expected_rule = {
        "cidr": "deny rule 127.0.0.2/32",
        "host pattern": "deny rule localhost",
        "port": f"deny rule :{c}",
        "dns by name": "deny rule localhost",
        "metadata": "built-in rule 169.254.0.0/16",
        "metadata v6": "built-in rule fd00:ec2::254",
        "own drain": "own endpoint",
        "own drain by name": "deny rule localhost",  # the name is refused before its lookup
    }
    for what, rule in expected_rule.items():
        job = refused[what]
        # Straight to dead on the first attempt, the rule named.
        assert (job.state, job.attempt, job.last_error_reason) == ("dead", 1, "payload"), what
        assert rule in (job.last_error or ""), (what, job.last_error)

    for what in ("cidr", "host pattern", "port", "dns by name"):
        assert allowed[what].state == "completed", (what, allowed[what].last_error)
    assert "127.0.0.1" in allowed["dns by name"].result["addresses"]
    # Allowed through the guard: whatever the network then says is not `payload`.
    metadata = allowed["metadata"]
    assert metadata.state == "completed" or metadata.last_error_reason != "payload", (
        metadata.last_error
    )
    assert "executor guard" not in (metadata.last_error or "")
    # fd00:ec2::254 was not on the allow list, and no allow rule opens the endpoint.
    assert "built-in rule" in (allowed["metadata v6"].last_error or "")
    for what in ("own drain", "own drain by name"):
        assert allowed[what].last_error_reason == "payload"
        assert "own endpoint" in (allowed[what].last_error or ""), allowed[what].last_error
    # Neither worker was drained by the jobs aimed at it.
    assert closed.status()["state"] == "active" and opened.status()["state"] == "active"


def test_cr_lf_and_uncapped_timeouts_are_payload_errors_and_a_response_is_read_only_so_far(
    database_url: str, tmp_path: Path, workers: list[WorkerProcess], servers: dict[str, int]
) -> None:
    w = _spawn(workers, database_url, tmp_path, "caps")
    ok = f"http://127.0.0.1:{servers['b']}/"
    with queue.Queue.connect(database_url) as q:
        ids = {
            what: q.enqueue(kind, payload, queue="caps", max_attempts=2)
            for what, (kind, payload) in {
                "crlf header": ("http", {"url": ok, "headers": {"X-A": "1\r\nX-Injected: 1"}}),
                "crlf method": ("http", {"url": ok, "method": "GET / HTTP/1.1\r\nX: 1\r\n"}),
                "timeout": ("tcp", {"host": "127.0.0.1", "port": servers["b"], "timeout": 600}),
                "endless": ("http", {"url": f"http://127.0.0.1:{servers['endless']}/"}),
                "fine": ("http", {"url": ok, "method": "get"}),
            }.items()
        }
    jobs = _finish(database_url, ids)
    for what, field in [
        ("crlf header", "headers"),
        ("crlf method", "method"),
        ("timeout", "timeout"),
    ]:
        job = jobs[what]
        assert (job.state, job.attempt, job.last_error_reason) == ("dead", 1, "payload"), what
        assert field in (job.last_error or ""), job.last_error
    # The status line never ends: aiohttp's parser stops at its line cap, as
    # a plain failure.
    endless = jobs["endless"]
    assert endless.state == "dead" and endless.last_error_reason == "exception"
    assert "Got more than 8190 bytes" in (endless.last_error or ""), endless.last_error
    assert jobs["fine"].state == "completed", jobs["fine"].last_error
    assert w.status()["state"] == "active"

"""Running real `corral worker` processes from integration tests.

`WorkerProcess` starts the CLI exactly as a pod would (flags and CORRAL_*
environment), reads its stdout for the endpoint port, and talks to its HTTP
endpoint with the standard library.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from corral import queue
from tests._waiting import T, eventually

ROOT = Path(__file__).resolve().parents[2]
CORRAL = str(Path(sys.executable).with_name("corral"))


def mint_token(dsn: str, *, uses: int = 1, region: str = "default") -> str:
    with queue.Queue.connect(dsn) as q:
        return q.create_token(region, ttl_s=600, uses=uses).secret


def wait_until(
    predicate: Callable[[], T | Literal[False] | None],
    timeout_s: float = 30.0,
    what: str = "condition",
) -> T:
    """`predicate()` once it is truthy, polled every 50 ms; an error is raised at once."""
    return eventually(predicate, what, timeout_s, 0.05, retry_errors=False)


class WorkerProcess:
    def __init__(
        self,
        dsn: str,
        state_dir: Path,
        *,
        name: str,
        token: str | None,
        queues: str = "noop",
        args: tuple[str, ...] = (),
    ) -> None:
        env = dict(os.environ)
        env.update(
            CORRAL_DATABASE_URL=dsn,
            CORRAL_QUEUES=queues,
            CORRAL_NAME=name,
            CORRAL_STATE_DIR=str(state_dir),
            CORRAL_HTTP_HOST="127.0.0.1",
            CORRAL_HTTP_PORT="0",
            CORRAL_HANDLERS="tests.integration.worker_handlers",
            PYTHONPATH=str(ROOT),
        )
        env.pop("CORRAL_ENROLLMENT_TOKEN", None)
        if token:
            env["CORRAL_ENROLLMENT_TOKEN"] = token
        self.name = name
        self.state_dir = state_dir
        self.proc = subprocess.Popen(
            [CORRAL, "worker", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._port: int | None = None
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _pump(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def output(self) -> str:
        return "".join(self.stdout) + "".join(self.stderr)

    def wait_ready(self, timeout_s: float = 30.0) -> WorkerProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker {self.name} exited early:\n{self.output()}")
            for line in self.stdout:
                if " ready on :" in line:
                    self._port = int(line.rsplit(":", 1)[1])
                    return True
            return False

        wait_until(ready, timeout_s, f"worker {self.name} to start")
        return self

    @property
    def port(self) -> int:
        assert self._port is not None
        return self._port

    def drain_key(self) -> str:
        """The key the worker wrote to its state directory (what preStop sends)."""
        return (self.state_dir / "drain.key").read_text().strip()

    def http(
        self, path: str, method: str = "GET", headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            method=method,
            data=b"" if method == "POST" else None,
            headers=headers or {},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    def status(self) -> dict[str, Any]:
        code, body = self.http("/status")
        assert code == 200, body
        data: dict[str, Any] = json.loads(body)
        return data

    def signal(self, sig: int = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        code = self.proc.wait(timeout=timeout_s)
        for t in self._readers:
            t.join(timeout=5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


@contextmanager
def starting_workers(
    admin_url: str, worker_url: str, root: Path, *, queues: str
) -> Iterator[Callable[..., WorkerProcess]]:
    """`start(name, *args)` runs a worker as the worker role, enrolled with a
    fresh token, on `queues`, and waits until it is ready; all of them are
    killed when the block ends."""
    started: list[WorkerProcess] = []

    def start(name: str, *args: str) -> WorkerProcess:
        w = WorkerProcess(
            worker_url, root / name, name=name, token=mint_token(admin_url), queues=queues,
            args=args,
        )  # fmt: skip
        started.append(w)
        return w.wait_ready()

    try:
        yield start
    finally:
        for w in started:
            w.stop()

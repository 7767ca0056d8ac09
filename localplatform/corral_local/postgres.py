"""A throwaway PostgreSQL server from the machine's own binaries.

Used by the integration and e2e test tiers (through `tests/_postgres.py`), by
`make dev` and by `make bench-queue`. It runs the real server — `initdb` in a
directory of ours, `postgres` as a child process with fsync on, as in
production — and removes everything on `stop()`.

PostgreSQL refuses to run as root; when we are root the server runs as the
`postgres` system user that Debian's package creates.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

__all__ = ["PostgresError", "PostgresServer", "find_bindir", "free_port"]

_SEARCH_DIRS = ("/usr/lib/postgresql",)


class PostgresError(RuntimeError):
    """The server could not be found, initialised or started; the message says why."""


def find_bindir() -> Path:
    """The directory holding `initdb` and `postgres`.

    `CORRAL_PG_BINDIR` wins; otherwise the newest Debian-packaged major version,
    then whatever `pg_config` on PATH reports.
    """
    env = os.environ.get("CORRAL_PG_BINDIR")
    if env:
        path = Path(env)
        if not (path / "initdb").exists():
            raise PostgresError(f"CORRAL_PG_BINDIR={env} has no initdb in it")
        return path
    for root in _SEARCH_DIRS:
        base = Path(root)
        if base.is_dir():
            versions = sorted(
                (p for p in base.iterdir() if (p / "bin" / "initdb").exists()),
                key=lambda p: int(p.name) if p.name.isdigit() else 0,
                reverse=True,
            )
            if versions:
                return versions[0] / "bin"
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        path = Path(out.stdout.strip())
        if (path / "initdb").exists():
            return path
    raise PostgresError(
        "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and pg_config). "
        "Install them with `apt-get install -y postgresql` or set CORRAL_PG_BINDIR."
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _run_as() -> pwd.struct_passwd | None:
    """The account the server runs as: ourselves, or `postgres` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PostgresError(
            "running as root, and PostgreSQL refuses to; no `postgres` user exists to run it as. "
            "Install Debian's postgresql package (it creates the user) or run as a normal user."
        ) from exc


@dataclass
class PostgresServer:
    """One PostgreSQL server owned by this process.

    `listen` is a list of addresses (`127.0.0.1`, and e.g. the pod bridge address
    for `make dev`); `hba_networks` are the CIDRs allowed to connect with the
    password. `settings` are extra postgresql.conf lines.
    """

    port: int = 0
    listen: tuple[str, ...] = ("127.0.0.1",)
    hba_networks: tuple[str, ...] = ("127.0.0.1/32",)
    settings: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    user: str = "postgres"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    startup_timeout_s: float = 60.0

    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _owns_dir: bool = field(default=False, init=False, repr=False)

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def log_file(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "server.log"

    def dsn(self, dbname: str = "postgres", *, host: str | None = None) -> str:
        """A libpq URL for `dbname` on this server (password included)."""
        return (
            f"postgresql://{quote(self.user)}:{quote(self.password, safe='')}"
            f"@{host or self.host}:{self.port}/{quote(dbname)}"
        )

    def create_database(self, name: str) -> str:
        """Create the empty database `name` on this server; returns its URL."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.dsn(name)

    def start(self) -> PostgresServer:
        bindir = find_bindir()
        owner = _run_as()
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="corral-pg-"))
            self._owns_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pgdata = self.data_dir / "data"
        if owner is not None:
            os.chown(self.data_dir, owner.pw_uid, owner.pw_gid)
        if not self.port:
            self.port = free_port(self.host)

        if not (pgdata / "PG_VERSION").exists():
            pwfile = self.data_dir / "pwfile"
            pwfile.write_text(self.password + "\n")
            if owner is not None:
                os.chown(pwfile, owner.pw_uid, owner.pw_gid)
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    self.user,
                    f"--pwfile={pwfile}",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C",
                ],
                owner,
                what="initdb",
            )
            pwfile.unlink()
            hba = pgdata / "pg_hba.conf"
            with hba.open("a") as fh:
                for net in self.hba_networks:
                    fh.write(f"host all all {net} scram-sha-256\n")

        conf = {
            "listen_addresses": "'" + ",".join(self.listen) + "'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.data_dir}'",
            "fsync": "on",
            "synchronous_commit": "on",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "logging_collector": "off",
            "log_min_messages": "warning",
            **self.settings,
        }
        with (pgdata / "postgresql.auto.conf").open("w") as fh:
            for key, value in conf.items():
                fh.write(f"{key} = {value}\n")

        log = self.log_file.open("ab")
        self._proc = subprocess.Popen(
            [str(bindir / "postgres"), "-D", str(pgdata)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_demote(owner),
            start_new_session=True,
        )
        log.close()
        self._wait_ready(bindir)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, bindir: Path) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                raise PostgresError(
                    f"postgres exited with code {self._proc.returncode} during startup; "
                    f"log tail:\n{self._log_tail()}"
                )
            probe = subprocess.run(
                [str(bindir / "pg_isready"), "-q", "-h", self.host, "-p", str(self.port)],
                check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        self.stop()
        raise PostgresError(
            f"postgres did not accept connections within {self.startup_timeout_s:.0f}s; "
            f"log tail:\n{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @staticmethod
    def _run(cmd: list[str], owner: pwd.struct_passwd | None, *, what: str) -> None:
        out = subprocess.run(
            cmd, capture_output=True, text=True, preexec_fn=_demote(owner), check=False
        )
        if out.returncode != 0:
            raise PostgresError(f"{what} failed (exit {out.returncode}):\n{out.stdout}{out.stderr}")


_PR_SET_PDEATHSIG = 1


def _demote(owner: pwd.struct_passwd | None) -> Callable[[], None]:
    """Child set-up between fork and exec: become `owner`, die with our parent.

    The parent-death signal (SIGQUIT: PostgreSQL's immediate shutdown) keeps a
    test run killed by SIGKILL or an unhandled SIGTERM from leaving a server
    behind. It is set after the user switch, which would clear it.
    """

    def _setup() -> None:
        if owner is not None:
            os.setgid(owner.pw_gid)
            os.setgroups([])
            os.setuid(owner.pw_uid)
        with contextlib.suppress(OSError, AttributeError):  # not Linux
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)

    return _setup


@contextlib.contextmanager
def running(**kwargs: object) -> Iterator[PostgresServer]:
    """`with running() as pg:` — a server for the duration of the block."""
    server = PostgresServer(**kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()

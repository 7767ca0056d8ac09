"""River's harness for `make bench-queue`: builds bench/river/ (one main.go,
River pinned in its go.mod) with the local Go from the Go module proxy, once,
into $CORRAL_CACHE/river-v<version>/bin/river-bench, the way tools/k8s/build.sh
caches the control plane. bench/queue.py calls `harness()` before it measures
anything, so a missing or too old Go fails the run at once, naming the fix.

Settings River runs at: MaxWorkers 10,000 with River's default FetchCooldown
(100 ms) and FetchPollInterval (1 s), pgxpool's default pool (max(4, CPUs)
connections). On the 2-vCPU machine that had the highest median of the
settings tried (MaxWorkers 1,000 or 10,000; FetchCooldown 1 ms, 10 ms, 50 ms or
100 ms; a pool of 8 or 16); docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

RIVER_VERSION = "0.51.2"
GO_MIN = (1, 26)  # bench/river/go.mod and River's own go.mod say `go 1.26.0`
HARNESS_DIR = Path(__file__).resolve().parent / "river"
CACHE = Path(os.environ.get("CORRAL_CACHE", Path.home() / ".cache" / "corral"))

MAX_WORKERS = 10_000
FETCH_COOLDOWN = "100ms"
FETCH_POLL_INTERVAL = "1s"


class HarnessError(RuntimeError):
    """River's harness cannot be built or run; the message says what to do."""


def _say(text: str) -> None:
    print(text, flush=True)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise HarnessError(
            "go not found on PATH: River's benchmark harness (bench/river/) is built from "
            f"the Go module proxy and needs Go >= {GO_MIN[0]}.{GO_MIN[1]}; install Go "
            "(https://go.dev/dl/) and put it on PATH, or pass --skip-peers"
        )
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    found = re.match(r"go(\d+)\.(\d+)", version)
    if found is None or (int(found[1]), int(found[2])) < GO_MIN:
        raise HarnessError(
            f"{go} is {version}; River v{RIVER_VERSION}'s harness needs Go >= "
            f"{GO_MIN[0]}.{GO_MIN[1]}: install a newer Go, or pass --skip-peers"
        )
    return go


def _pinned_version() -> str:
    """The River version bench/river/go.mod requires (must equal RIVER_VERSION)."""
    text = (HARNESS_DIR / "go.mod").read_text()
    found = re.search(r"^\s*github\.com/riverqueue/river v(\S+)", text, re.MULTILINE)
    if found is None:
        raise HarnessError("bench/river/go.mod does not require github.com/riverqueue/river")
    return found[1]


def harness() -> Path:
    """The river-bench binary, built on first use (a minute or two, with progress)."""
    go = _go()
    pinned = _pinned_version()
    if pinned != RIVER_VERSION:
        raise HarnessError(
            f"bench/river/go.mod pins River v{pinned} but bench/_river.py says "
            f"v{RIVER_VERSION}: change both together"
        )
    env = dict(os.environ, GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-buildvcs=false")
    goversion = subprocess.run(
        [go, "env", "GOVERSION", "GOOS", "GOARCH"], capture_output=True, text=True, check=True
    ).stdout
    key = hashlib.sha256(goversion.encode())
    for name in ("main.go", "go.mod", "go.sum"):
        key.update((HARNESS_DIR / name).read_bytes())
    bindir = CACHE / f"river-v{RIVER_VERSION}" / "bin"
    binary, stamp = bindir / "river-bench", bindir / ".stamp"
    if binary.exists() and stamp.exists() and stamp.read_text() == key.hexdigest():
        return binary

    _say(
        f"  building River v{RIVER_VERSION}'s harness (bench/river/) into {bindir} "
        "(once: modules from the Go module proxy, then compile; about 1-2 minutes)"
    )
    bindir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    partial = bindir / f".river-bench.{os.getpid()}"
    build = subprocess.Popen(
        [go, "build", "-v", "-mod=readonly", "-trimpath", "-o", str(partial), "."],
        cwd=HARNESS_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert build.stdout is not None
    output = []
    for line in build.stdout:  # `go: downloading ...` and one line per package compiled
        output.append(line.rstrip())
        _say(f"    [{time.monotonic() - started:5.0f}s] {line.rstrip()}")
    if build.wait() != 0:
        partial.unlink(missing_ok=True)
        raise HarnessError(
            "building River's harness failed (go build in bench/river/):\n"
            + "\n".join(output[-20:])
        )
    partial.replace(binary)  # rename: a reader sees the old binary or the new one
    stamp.write_text(key.hexdigest())
    _say(f"  built {binary} in {time.monotonic() - started:.0f}s")
    return binary


def parse_result(stdout: str, command: str) -> dict[str, str]:
    """The `river-bench <command>: key=value ...` line of a harness command's output."""
    prefix = f"river-bench {command}:"
    for line in stdout.splitlines():
        if line.startswith(prefix):
            return dict(item.split("=", 1) for item in line[len(prefix) :].split())
    raise HarnessError(f"river-bench {command} printed no result line:\n{stdout[-2000:]}")

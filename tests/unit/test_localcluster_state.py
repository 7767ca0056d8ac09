"""A fresh start of the local control plane still stops what a crashed run of
the same state folder left running (corral_local.localcluster.LocalCluster)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from corral_local.localcluster import LocalCluster


def test_a_fresh_start_reaps_the_components_a_crashed_run_left_before_wiping_its_state(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    sleep = shutil.copy(shutil.which("sleep") or "/bin/sleep", bin_dir / "etcd")
    state = tmp_path / "state"
    state.mkdir()
    # start_new_session: the reaper signals the component's process group
    left = subprocess.Popen([str(sleep), "60"], start_new_session=True)
    try:
        (state / "pids.json").write_text(json.dumps({"etcd": left.pid}))
        lines: list[str] = []
        cluster = LocalCluster(state, bin_dir=bin_dir, fresh=True, log=lines.append)
        cluster._prepare_state()
        assert left.wait(timeout=10) == -9, "the leftover etcd was not stopped"
        assert any(f"etcd (pid {left.pid}) left over" in line for line in lines), lines
    finally:
        left.kill()
        left.wait()

"""bench/workers.py: what a bench's sandboxd leaves in its own state directory."""

from __future__ import annotations

import os
from pathlib import Path

from bench.workers import runtime_tmpfs_release
from sandboxapp.runtime import runstate
from sandboxapp.runtime import syscalls as sc


def test_the_runtime_tmpfs_in_a_bench_state_directory_is_unmounted(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    run = runstate.run_dir(state)  # mounted as sandboxd mounts it
    assert os.path.ismount(run)
    try:
        runtime_tmpfs_release({"CONTAINED_STATE_DIR": str(state)})
        assert not os.path.ismount(run)
    finally:
        if os.path.ismount(run):
            sc.umount2(str(run), sc.MNT_DETACH)  # the release failed: leave no mount

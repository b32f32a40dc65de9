"""The runtime's volatile state lives on a tmpfs of its own, mounted once, whoever comes
first; what an earlier version left on the disk is moved onto it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from sandboxapp.runtime import ids
from sandboxapp.runtime import syscalls as sc
from sandboxapp.runtime.runstate import RUN, run_dir, run_dir_unmount
from sandboxapp.runtime.sandbox import sandbox_names, state_read

REPO = Path(__file__).resolve().parents[2]
AN_HOUR_AGO = 3600


def _mounts_at(path: Path) -> list[str]:
    """The file system types mounted exactly at `path`, bottom first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(path):
            found.append(fields[fields.index("-") + 1])
    return found


def test_two_processes_share_one_tmpfs(config):
    state = config.state_dir / "shared-run"
    state.mkdir()
    ensure = (
        "from pathlib import Path; from sandboxapp.runtime.runstate import run_dir; "
        f"run_dir(Path({str(state)!r}))"
    )
    for _ in range(2):  # a process of its own each time: nothing cached in between
        subprocess.run([sys.executable, "-c", ensure], cwd=REPO, check=True, timeout=60)

    assert _mounts_at(state / RUN) == ["tmpfs"]
    assert (state / RUN).stat().st_mode & 0o777 == 0o700


def test_what_an_earlier_version_left_on_the_disk_is_moved_in(config):
    state = config.state_dir / "legacy-run"
    (state / "ids").mkdir(parents=True)
    claim_link = state / "ids" / "block-40"
    claim_link.symlink_to("sandbox:old-link")
    (state / "ids" / "block-41").write_text("sandbox:old-file")
    os.utime(claim_link, (1, os.lstat(claim_link).st_mtime - AN_HOUR_AGO), follow_symlinks=False)
    rundir = state / "sandboxes" / "old-link"
    rundir.mkdir(parents=True)
    recorded = {
        "name": "old-link",
        "learner": None,
        "volume": None,
        "uid_base": 40 * 65536,
        "init_pid": 1,
        "init_start_time": 0,
        "owner_pid": 1,
        "owner_start_time": 0,
        "cgroup_parent": config.cgroup_parent,
        "created_at": 0,
    }
    (rundir / "state.json").write_text(json.dumps(recorded))

    moved = run_dir(state)

    assert _mounts_at(moved) == ["tmpfs"]
    assert not (state / "ids").exists() and not (state / "sandboxes").exists()
    # Both kinds of claim are still claims, so neither block can be handed out again...
    blocks = ids.borrowed_blocks(state)
    assert blocks == {"old-link": 40 * 65536, "old-file": 41 * 65536}
    # ...and the age reconcile goes by came along.
    assert ids.borrowed_blocks(state, min_age=AN_HOUR_AGO / 2) == {"old-link": 40 * 65536}
    assert sandbox_names(type(config)(state_dir=state)) == ["old-link"]
    assert state_read(type(config)(state_dir=state), "old-link").uid_base == 40 * 65536


def test_a_state_directory_of_its_own_is_unmounted_before_it_goes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    run = run_dir(state)  # mounted as sandboxd mounts it
    assert os.path.ismount(run)
    try:
        run_dir_unmount(state)
        assert not os.path.ismount(run)
    finally:
        if os.path.ismount(run):
            sc.umount2(str(run), sc.MNT_DETACH)  # the unmount failed: leave no mount

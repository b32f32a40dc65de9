"""sandboxd inside a container (docker compose): what differs there, reproduced on the host.

Each case runs in a child with a private mount namespace, so nothing it mounts outlives it.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sandboxapp.runtime.spec import Limits

REPO = Path(__file__).resolve().parents[2]


def _in_own_mount_namespace(code: str) -> str:
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_layer_mounts_where_dev_has_no_node_for_the_new_loop_device(config):
    # A container's /dev is a copy made at its start: no loop device node beyond those.
    out = _in_own_mount_namespace(
        textwrap.dedent(f"""
        import os, subprocess
        from pathlib import Path
        from sandboxapp.runtime import volumes
        subprocess.run(["mount", "-t", "tmpfs", "dev", "/dev"], check=True)
        os.mknod("/dev/loop-control", 0o600 | 0o020000, os.makedev(10, 237))
        os.mknod("/dev/null", 0o666 | 0o020000, os.makedev(1, 3))
        state = Path({str(config.state_dir)!r})
        path, lock = volumes.volume_acquire(state, "containered", {Limits().disk_bytes})
        print(sorted(os.listdir("/dev")))
        print(volumes.volume_mounted(state))
        """)
    )
    nodes, mounted = out.splitlines()
    assert "loop" in nodes and "containered" in mounted


def test_a_usr_on_overlayfs_is_copied_once_and_again_after_an_upgrade(tmp_path):
    source = tmp_path / "usr"
    for name in ("lower/bin", "upper", "work", "usr"):
        (tmp_path / name).mkdir(parents=True)
    (tmp_path / "lower/bin/tool").write_text("v1")
    state = tmp_path / "state"
    out = _in_own_mount_namespace(
        textwrap.dedent(f"""
        import subprocess
        from pathlib import Path
        from sandboxapp.runtime.image import usr_ensure
        t = Path({str(tmp_path)!r})
        options = f"lowerdir={{t}}/lower,upperdir={{t}}/upper,workdir={{t}}/work"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, {str(source)!r}],
                       check=True)
        state, source = Path({str(state)!r}), Path({str(source)!r})
        first = usr_ensure(state, source)
        copied = (first / "bin/tool").stat().st_ino
        again = usr_ensure(state, source)
        print(first, (again / "bin/tool").stat().st_ino == copied)
        (source / "bin/tool").write_text("v2")  # an upgrade replaces the file
        (source / "bin/new").write_text("new")
        upgraded = usr_ensure(state, source)
        print((upgraded / "bin/tool").read_text(), (upgraded / "bin/new").exists())
        """)
    )
    first, upgraded = out.splitlines()
    assert first == f"{state / 'usr'} True"  # a copy, made once
    assert upgraded == "v2 True"


def test_a_usr_that_can_be_idmapped_is_used_as_it_is(tmp_path):
    from sandboxapp.runtime.image import usr_ensure

    assert usr_ensure(tmp_path / "state", Path("/usr")) == Path("/usr")
    assert not (tmp_path / "state").exists()

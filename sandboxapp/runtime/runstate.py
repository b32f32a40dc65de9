"""The runtime's volatile state, on a tmpfs of its own under the state directory.

The id blocks' claims (`ids/`) and each sandbox's `state.json` (`sandboxes/`) describe
processes, and no process outlives the boot: like runc's and containerd's state under
`/run`, they belong on a file system that goes with it. On a disk they cost every start a
few metadata writes, and ext4's journal with them: in side-by-side runs of `sandbox bench`
here, a first exec took 0.92-1.00 times bwrap's cycle with them on a tmpfs, against
1.03-1.06 on ext4. `/run` is not a tmpfs on every host (this VM's, many containers'), so
the runtime mounts one, `run/` in the state directory, the first time it needs it; and a
reboot or a new container starts it empty.

Earlier versions kept both directories on the disk, directly in the state directory:
what they left is moved in once the tmpfs is mounted, so that reconcile still sees it
and no claimed block is handed out twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
from pathlib import Path

from . import syscalls as sc

RUN = "run"
VOLATILE = ("ids", "sandboxes")
# A few hundred sandboxes need a page each; the claims of 32,000 blocks fit in inodes.
_OPTIONS = "mode=0700,size=16m"

_ready: set[Path] = set()
_lock = threading.Lock()


def run_dir(state_dir: Path) -> Path:
    """`state_dir`/run, a tmpfs, mounted (and what earlier versions left moved in) if it
    is not yet."""
    path = run_path(state_dir)
    if state_dir in _ready:
        return path
    with _lock:
        if state_dir not in _ready:
            _ensure(state_dir, path)
            _ready.add(state_dir)
    return path


def run_path(state_dir: Path) -> Path:
    """Where `state_dir`'s run directory is, mounted or not (another process's)."""
    return state_dir / RUN


def run_dir_unmount(state_dir: Path) -> None:
    """Unmount `state_dir`/run, if it is mounted. sandboxd leaves it for the next daemon;
    whoever removes a state directory of its own (a bench's) unmounts it first."""
    path = run_path(state_dir)
    with _lock:
        _ready.discard(state_dir)
        if os.path.ismount(path):
            sc.umount2(str(path), sc.MNT_DETACH)


def _ensure(state_dir: Path, path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Another process (sandboxd, `sandbox run`) may be at the same point: one mounts.
    with open(state_dir / ".run.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.ismount(path):
            flags = sc.MS_NOSUID | sc.MS_NODEV | sc.MS_NOEXEC
            sc.mount("tmpfs", str(path), "tmpfs", flags, _OPTIONS)
        for name in VOLATILE:
            _move_in(state_dir / name, path / name)


def _move_in(legacy: Path, target: Path) -> None:
    """Copy a directory an earlier version kept on the disk (claims as they were, times
    kept: reconcile spares young ones), then remove it."""
    if not legacy.is_dir():
        return
    shutil.copytree(legacy, target, symlinks=True, dirs_exist_ok=True)
    shutil.rmtree(legacy)

"""A learner's persistent writable layer, with a hard size limit.

Each learner's files live in an ext4 filesystem inside one sparse file, mounted (through
a loop device) while one of their sandboxes runs. A full layer is the learner's ENOSPC,
never the host's: the file can never grow past its size.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

LAYER_DIRS = ("root/upper", "root/work", "usr/upper", "usr/work")


class VolumeError(RuntimeError):
    pass


class VolumeBusy(VolumeError):
    pass


def _paths(state_dir: Path, learner: str) -> tuple[Path, Path, Path]:
    base = state_dir / "volumes"
    return base / f"{learner}.ext4", base / learner, base / f"{learner}.lock"


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise VolumeError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def volume_acquire(state_dir: Path, volume: str, size: int, uid_base: int) -> tuple[str, int]:
    """Mount the learner's layer (creating it on first use); return (path, lock fd).

    The lock is held for as long as a sandbox uses the layer: two sandboxes sharing one
    overlay upper directory would corrupt it.
    """
    image, mountpoint, lockfile = _paths(state_dir, volume)
    image.parent.mkdir(parents=True, exist_ok=True)
    lock = os.open(lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(lock)
        raise VolumeBusy(f"the files of {volume!r} are in use by another sandbox") from None
    try:
        if not image.exists():
            # Made under another name and renamed: a failed mkfs leaves no broken layer.
            fresh = image.with_suffix(".new")
            with open(fresh, "wb") as f:
                f.truncate(size)
            # No reserved blocks: the whole quota is the learner's.
            _run(
                "mkfs.ext4",
                "-q",
                "-F",
                "-m",
                "0",
                "-E",
                f"root_owner={uid_base}:{uid_base}",
                str(fresh),
            )
            fresh.rename(image)
        mountpoint.mkdir(mode=0o700, exist_ok=True)
        if not os.path.ismount(mountpoint):
            _run("mount", "-o", "loop,nosuid,nodev,noatime", str(image), str(mountpoint))
        # The sandbox's root (uid_base) creates the overlay's files; only it needs in.
        os.chmod(mountpoint, 0o755)
        for rel in LAYER_DIRS:
            path = mountpoint / rel
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, uid_base, uid_base)
            os.chown(path.parent, uid_base, uid_base)
    except BaseException:
        os.close(lock)
        raise
    return str(mountpoint), lock


def volume_release(state_dir: Path, learner: str, lock: int | None) -> None:
    _, mountpoint, _ = _paths(state_dir, learner)
    try:
        if os.path.ismount(mountpoint):
            # Lazy: a process being killed may still hold a file open for a moment.
            _run("umount", "-l", str(mountpoint))
    finally:
        if lock is not None:
            os.close(lock)


def volume_release_if_unused(state_dir: Path, volume: str) -> bool:
    """Unmount a layer no sandbox holds (its lock is free); False if one does."""
    _, _, lockfile = _paths(state_dir, volume)
    try:
        lock = os.open(lockfile, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        lock = None
    if lock is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            return False
    volume_release(state_dir, volume, lock)
    return True


def volume_delete(state_dir: Path, volume: str) -> None:
    """The explicit reset: the files are gone for good. Refused while a sandbox uses them."""
    image, mountpoint, lockfile = _paths(state_dir, volume)
    lock = os.open(lockfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise VolumeBusy(
                f"the files of {volume!r} are in use: stop its sandbox first"
            ) from None
        if os.path.ismount(mountpoint):
            _run("umount", "-l", str(mountpoint))
        image.unlink(missing_ok=True)
        shutil.rmtree(mountpoint, ignore_errors=True)
    finally:
        os.close(lock)


def volume_mounted(state_dir: Path) -> list[str]:
    """Learners whose layer is mounted now (for reconcile)."""
    base = state_dir / "volumes"
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if p.is_dir() and os.path.ismount(p))


def volumes_of(state_dir: Path, learner: str) -> list[str]:
    """The learner's volumes: their own, and one per node ("learner.node")."""
    base = state_dir / "volumes"
    names = {p.name.removesuffix(".ext4") for p in base.glob("*.ext4")} if base.is_dir() else set()
    return sorted(n for n in names if n == learner or n.startswith(f"{learner}."))

"""A learner's persistent writable layer, with a hard size limit.

Each learner's files live in an ext4 filesystem inside one sparse file, mounted (through
a loop device) while one of their sandboxes runs. A full layer is the learner's ENOSPC,
never the host's: the file can never grow past its size.

A new learner should not wait for mkfs: sandboxd keeps a few formatted spares of the
default size (`volume_spares_fill`), and a learner's first layer is a spare renamed. The
loop device is set up with ioctls and the filesystem mounted with the kernel's mount API
(fsopen, fsmount, move_mount), about 1.5 ms where mount(8) took 8-60.

sandboxd also keeps one or two spares mounted ahead: detached mounts that only it holds,
so a new learner's layer is attached with a single move_mount. If sandboxd ends, the
kernel unmounts them and frees their loop devices; the files become spares again at the
next reconcile.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import shutil
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path

from . import syscalls as sc
from .rootfs import LAYER_DIRS
from .spec import ID_BLOCK

SPARES = ".spare"
# .spare/mounted-<pid>-<size>-<token>.ext4: a spare that process <pid> has mounted ahead.
MOUNTED = "mounted"
LOOP_CTL_GET_FREE = 0x4C82
LOOP_CONFIGURE = 0x4C0A
LOOP_MAJOR = 7
LO_FLAGS_AUTOCLEAR = 4  # the loop device frees itself when the filesystem is unmounted
MOUNT_ATTRS = sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV | sc.MOUNT_ATTR_NOATIME
MKFS_EXTENDED = "lazy_itable_init=1,lazy_journal_init=1,nodiscard"
# The inode tables mkfs left unzeroed (they read as zeros) stay so: no background thread
# writes zeros into the file's holes after the mount.
MOUNT_OPTIONS = ("noinit_itable",)


class VolumeError(RuntimeError):
    pass


class VolumeBusy(VolumeError):
    pass


def _paths(state_dir: Path, learner: str) -> tuple[Path, Path, Path]:
    base = state_dir / "volumes"
    return base / f"{learner}.ext4", base / learner, base / f"{learner}.lock"


def _lock(lockfile: Path, *, create: bool = True) -> int | None:
    """The layer's lock, taken (exclusive, never waiting); None if it is held elsewhere, or
    (without `create`) if the layer has none.

    A deleted layer's lock file goes with it. Whoever opened that file just before, and
    locks it just after, holds a lock on a file no one else will open: such a lock is
    dropped and taken again on the file now at that path."""
    flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
    while True:
        try:
            fd = os.open(lockfile, flags, 0o600)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        with contextlib.suppress(FileNotFoundError):
            if os.stat(lockfile).st_ino == os.fstat(fd).st_ino:
                return fd
        os.close(fd)


def _run(*argv: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise VolumeError(f"{argv[0]} failed: {result.stderr.strip() or result.stdout.strip()}")


def volume_acquire(state_dir: Path, volume: str, size: int) -> tuple[str, int]:
    """Mount the learner's layer (creating it on first use); return (path, lock fd).

    The lock is held for as long as a sandbox uses the layer: two sandboxes sharing one
    overlay upper directory would corrupt it. Its files are owned by the ids they have
    inside a sandbox (the learner's root is 0 on disk): each sandbox sees the layer
    through its own id map, so the layer does not depend on which host ids it runs as.
    """
    image, mountpoint, lockfile = _paths(state_dir, volume)
    image.parent.mkdir(parents=True, exist_ok=True)
    # A mounted layer holds files owned by ids 0-65535 on the host: host root's and host
    # users'. Only root may go through: sandboxes get their layer as a mount, not a path.
    os.chmod(image.parent, 0o700)
    lock = _lock(lockfile)
    if lock is None:
        raise VolumeBusy(f"the files of {volume!r} are in use by another sandbox")
    try:
        mountpoint.mkdir(mode=0o700, exist_ok=True)
        if not image.exists():
            _layer_new(state_dir, size, image, mountpoint)
        if not os.path.ismount(mountpoint):
            _mount(image, mountpoint)
        if os.stat(mountpoint).st_uid >= ID_BLOCK:
            _ids_to_inside(mountpoint)
        os.chmod(mountpoint, 0o755)
        for rel in LAYER_DIRS:
            (mountpoint / rel).mkdir(parents=True, exist_ok=True)
    except BaseException:
        os.close(lock)
        raise
    return str(mountpoint), lock


def _ids_to_inside(mountpoint: Path) -> None:
    """A layer written by an earlier version has its files owned by the host ids of its
    learner's block: give each file the id it has inside (the host id modulo the block
    size). Deepest first and the layer's top last, so a run cut short is finished by the
    next (its top is still owned by the block, and shifting twice changes nothing)."""
    for top, dirs, files in os.walk(mountpoint, topdown=False):
        for name in [*files, *dirs, None]:
            path = os.path.join(top, name) if name is not None else top
            st = os.lstat(path)
            if st.st_uid < ID_BLOCK and st.st_gid < ID_BLOCK:
                continue
            os.lchown(path, st.st_uid % ID_BLOCK, st.st_gid % ID_BLOCK)
            if not stat.S_ISLNK(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
                os.chmod(path, stat.S_IMODE(st.st_mode))  # chown cleared them


def _layer_new(state_dir: Path, size: int, image: Path, mountpoint: Path) -> None:
    """A new learner's layer at `image`: a spare mounted ahead, attached at `mountpoint`
    already, or else a spare (or a fresh one) for the caller to mount."""
    ahead = _AHEAD.take(state_dir, size)
    if ahead is None:
        (_take_spare(state_dir, size) or _format(state_dir, size)).rename(image)
        return
    held, mount = ahead
    try:
        held.rename(image)
        sc.move_mount_fd(mount, str(mountpoint))
    finally:
        os.close(mount)  # attached, the mount lives on; if not, the caller mounts anew


def volume_release(state_dir: Path, learner: str, lock: int | None) -> None:
    _, mountpoint, _ = _paths(state_dir, learner)
    try:
        if os.path.ismount(mountpoint):
            # Lazy: a process being killed may still hold a file open for a moment.
            sc.umount2(str(mountpoint), sc.MNT_DETACH)
    finally:
        if lock is not None:
            os.close(lock)


def volume_release_if_unused(state_dir: Path, volume: str) -> bool:
    """Unmount a layer no sandbox holds (its lock is free); False if one does."""
    _, _, lockfile = _paths(state_dir, volume)
    lock = _lock(lockfile, create=False)
    if lock is None and lockfile.exists():
        return False  # held by a sandbox (without a lock file, the layer has no holder)
    volume_release(state_dir, volume, lock)
    return True


def volume_delete(state_dir: Path, volume: str) -> None:
    """The explicit reset: the files are gone for good. Refused while a sandbox uses them."""
    image, mountpoint, lockfile = _paths(state_dir, volume)
    lock = _lock(lockfile)
    if lock is None:
        raise VolumeBusy(f"the files of {volume!r} are in use: stop its sandbox first")
    try:
        if os.path.ismount(mountpoint):
            sc.umount2(str(mountpoint), sc.MNT_DETACH)
        image.unlink(missing_ok=True)
        shutil.rmtree(mountpoint, ignore_errors=True)
        lockfile.unlink()  # held: see _lock
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


def _spares(state_dir: Path) -> Path:
    return state_dir / "volumes" / SPARES


def _format(state_dir: Path, size: int) -> Path:
    """A new, empty layer of `size` bytes: a sparse file with ext4 in it."""
    spares = _spares(state_dir)
    spares.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Made under a name no reader picks up, then renamed: a failed mkfs leaves nothing.
    fresh = spares / f"new-{secrets.token_hex(6)}"
    try:
        with open(fresh, "wb") as f:
            f.truncate(size)
        # No reserved blocks: the whole quota is the learner's. Nothing zeroed: a sparse
        # file reads as zeros already, and writing them would take 17 MB of the host's
        # disk per layer of 512 MiB (0.4 MB so), and as much writeback I/O.
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-E", MKFS_EXTENDED, str(fresh))
    except BaseException:
        fresh.unlink(missing_ok=True)
        raise
    return fresh


def _take_spare(state_dir: Path, size: int) -> Path | None:
    """Claim a formatted spare of exactly `size` bytes; rename is the claim."""
    for spare in sorted(_spares(state_dir).glob(f"{size}-*.ext4")):
        claimed = spare.with_name(f"claimed-{spare.name}")
        try:
            spare.rename(claimed)
        except FileNotFoundError:
            continue  # another sandbox took it first
        return claimed
    return None


def volume_spares_fill(state_dir: Path, size: int, count: int, ahead: int = 0) -> int:
    """Format spares of `size` bytes until `count` are waiting, and keep `ahead` more
    mounted ahead in this process (sandboxd); return how many were formatted."""
    spares = _spares(state_dir)
    made = 0
    while _AHEAD.count(state_dir, size) < ahead:
        spare = _take_spare(state_dir, size)
        if spare is None:
            spare = _format(state_dir, size)
            made += 1
        token = spare.name.removesuffix(".ext4").rsplit("-", 1)[-1]
        held = spare.with_name(f"{MOUNTED}-{os.getpid()}-{size}-{token}.ext4")
        spare.rename(held)
        try:
            mount = _mount_ahead(held)
        except BaseException:
            held.rename(_held_by(held)[1])  # a plain spare again
            raise
        _AHEAD.put(state_dir, size, held, mount)
    while len(list(spares.glob(f"{size}-*.ext4"))) < count:
        _format(state_dir, size).rename(spares / f"{size}-{secrets.token_hex(6)}.ext4")
        made += 1
    return made


def volume_spares_release(state_dir: Path) -> None:
    """Unmount the spares this process mounted ahead, and make them plain spares again."""
    for held, mount in _AHEAD.take_all(state_dir):
        os.close(mount)
        held.rename(_held_by(held)[1])


class _Ahead:
    """The spares this process has mounted ahead, by state directory and size."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[Path, int], list[tuple[Path, int]]] = {}

    def count(self, state_dir: Path, size: int) -> int:
        with self._lock:
            return len(self._held.get((state_dir, size), []))

    def put(self, state_dir: Path, size: int, image: Path, mount: int) -> None:
        with self._lock:
            self._held.setdefault((state_dir, size), []).append((image, mount))

    def take(self, state_dir: Path, size: int) -> tuple[Path, int] | None:
        with self._lock:
            held = self._held.get((state_dir, size))
            return held.pop() if held else None

    def take_all(self, state_dir: Path) -> list[tuple[Path, int]]:
        with self._lock:
            keys = [key for key in self._held if key[0] == state_dir]
            return [layer for key in keys for layer in self._held.pop(key)]


_AHEAD = _Ahead()


def volume_spares_tidy(state_dir: Path, min_age: float = 60.0) -> list[str]:
    """Remove half-made and claimed-but-unused spares that a crash left, and make the
    spares a process that has ended had mounted ahead plain spares again (reconcile)."""
    spares = _spares(state_dir)
    removed = []
    for leftover in [*spares.glob("new-*"), *spares.glob("claimed-*")]:
        try:
            if time.time() - leftover.stat().st_mtime >= min_age:
                leftover.unlink()
                removed.append(leftover.name)
        except FileNotFoundError:
            continue
    for held in spares.glob(f"{MOUNTED}-*.ext4"):
        holder, plain = _held_by(held)
        # Its mount ended with its holder, but the kernel may finish unmounting it a moment
        # later: until its loop device is gone, it is not a spare to mount again.
        if not _alive(holder) and not loop_devices_of(held):
            held.rename(plain)
    return removed


def loop_devices_of(image: Path) -> list[str]:
    """The loop devices backed by `image` now (their names, as in /sys/block)."""
    found = []
    for device in Path("/sys/block").glob("loop*"):
        try:
            backing = (device / "loop" / "backing_file").read_text().strip()
        except FileNotFoundError:
            continue  # not bound to any file
        if backing == str(image):
            found.append(device.name)
    return found


def _held_by(held: Path) -> tuple[int, Path]:
    """A spare mounted ahead (mounted-<pid>-<size>-<token>.ext4): its holder's pid, and
    its name as a plain spare."""
    pid, size, token = held.name.removesuffix(".ext4").split("-")[1:]
    return int(pid), held.with_name(f"{size}-{token}.ext4")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _mount_ahead(image: Path) -> int:
    """`image` mounted, detached, with the layer's directories made (owned by root, as
    seen inside a sandbox)."""
    mount = _mount_detached(image)
    try:
        for rel in LAYER_DIRS:  # parents first
            with contextlib.suppress(FileExistsError):  # a spare given back has them
                os.mkdir(rel, 0o755, dir_fd=mount)
    except BaseException:
        os.close(mount)
        raise
    return mount


def _mount(image: Path, mountpoint: Path) -> None:
    """Mount the ext4 in `image` on `mountpoint`."""
    mount = _mount_detached(image)
    try:
        sc.move_mount_fd(mount, str(mountpoint))
    finally:
        os.close(mount)


def _mount_detached(image: Path) -> int:
    """Attach `image` to a free loop device and mount its ext4, detached (an fd)."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        number, device = _loop_attach(backing, str(image))
    finally:
        os.close(backing)
    try:
        return sc.fsmount_detached("ext4", f"/dev/loop{number}", MOUNT_OPTIONS, MOUNT_ATTRS)
    finally:
        os.close(device)  # the mount holds the device now; autoclear frees it after


def _loop_attach(backing: int, name: str) -> tuple[int, int]:
    """LOOP_CONFIGURE a free loop device onto `backing`; return its number and an fd."""
    # struct loop_config: fd, block_size, struct loop_info64 (lo_flags, lo_file_name), reserved.
    # loop_info64: five u64 and three u32 left zero, lo_flags, lo_file_name, the rest zero.
    zeros = (0,) * 8
    info = struct.pack(
        "5Q4I64s64s32s2Q", *zeros, LO_FLAGS_AUTOCLEAR, name.encode()[-63:], b"", b"", 0, 0
    )
    config = struct.pack("II", backing, 0) + info + bytes(64)
    for _ in range(16):
        control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
        try:
            number = fcntl.ioctl(control, LOOP_CTL_GET_FREE)
        finally:
            os.close(control)
        device = _loop_open(number)
        try:
            fcntl.ioctl(device, LOOP_CONFIGURE, config)
        except OSError as exc:
            os.close(device)
            if exc.errno == errno.EBUSY:
                continue  # another mount took this free device between the two calls
            raise VolumeError(f"could not set up a loop device: {exc}") from exc
        return number, device
    raise VolumeError("could not set up a loop device: every free one was taken meanwhile")


def _loop_open(number: int) -> int:
    path = f"/dev/loop{number}"
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        # In a container /dev is a copy made at its start: a loop device the kernel adds later
        # (LOOP_CTL_GET_FREE adds one when none is free) has no node there until we make it.
        with contextlib.suppress(FileExistsError):
            os.mknod(path, 0o660 | stat.S_IFBLK, os.makedev(LOOP_MAJOR, number))
        return os.open(path, os.O_RDWR | os.O_CLOEXEC)

"""The sandbox's filesystem, described as a list of operations, then carried out.

Three plans, in the order the child runs them:

* `plan_stage` runs in a spare, while nobody waits, as the sandbox's outer root, in a
  mount namespace of its own: what every sandbox mounts whoever its learner is (/proc
  with its masks, /run with the hidden proc and sysfs, /tmp, /dev), staged on a tmpfs,
  into which it then pivots. The spare holds no copy of the host's mounts while it waits
  (a learner's layer mounted meanwhile would live on in it).
* `plan_root` runs when a sandbox takes the spare: the layers and the overlays on the
  stage, the staged mounts moved under the new root, then pivot_root. The learner's mount
  namespace is created afterwards, owned by their user namespace, so the kernel locks
  every one of these mounts: the learner cannot unmount a mask or look under it.
* `plan_inner` runs inside the learner's namespaces: sysfs for the sandbox's own network
  namespace and the delegated cgroup hierarchies.

Keeping the plan as data lets tests read what a sandbox will mount without mounting it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import syscalls as sc

NOSUID_NODEV = sc.MS_NOSUID | sc.MS_NODEV
NOSUID_NODEV_NOEXEC = NOSUID_NODEV | sc.MS_NOEXEC
READONLY_REMOUNT = sc.MS_REMOUNT | sc.MS_BIND | sc.MS_RDONLY | NOSUID_NODEV_NOEXEC

# As runc's defaults: files under /proc that read or write host-wide kernel state.
MASKED_FILES = (
    "proc/kcore",
    "proc/keys",
    "proc/timer_list",
    "proc/sched_debug",
    "proc/latency_stats",
    "proc/sysrq-trigger",
    "proc/kallsyms",
    "proc/kmsg",
)
MASKED_DIRS = ("proc/acpi", "proc/scsi", "proc/asound")
READONLY_PATHS = ("proc/bus", "proc/fs", "proc/irq", "proc/sys")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

# Where a complete, unmasked proc and sysfs stay mounted under a cover nobody can remove.
# The kernel lets a user namespace mount a new proc or sysfs only if a fully visible one
# is already mounted (mount_too_revealing): the masked /proc is not, these are. Nested
# `unshare --mount-proc` and `ip netns exec` depend on it.
HIDDEN = "run/.contained"
# Where a spare mounts its stage, a tmpfs (over a directory every host has, in the spare's
# own mount namespace: the host's /tmp is not touched), before it pivots into it. The
# stage holds the staged mounts, then the mount points of the take.
STAGE = "/tmp"
STAGED = ("proc", "run", "tmp", "dev")
TAKE_POINTS = ("root", "lower-image", "lower-usr", "volume", "scratch")
# An overlay's upper and work directories on a writable layer, for `/` and for `/usr`,
# parents first.
LAYER_DIRS = ("root", "root/upper", "root/work", "usr", "usr/upper", "usr/work")


@dataclass(frozen=True)
class Mount:
    source: str | None
    target: str
    fstype: str | None = None
    flags: int = 0
    data: str | None = None


@dataclass(frozen=True)
class MoveFd:
    """Attach a detached mount (an idmapped image layer) at `target`."""

    key: str
    target: str


@dataclass(frozen=True)
class Mkdir:
    path: str
    mode: int = 0o755


@dataclass(frozen=True)
class WriteFile:
    """Create a file with `text`, unless something is at `path` already (the learner's own
    edit of it, on their layer)."""

    path: str
    text: str


@dataclass(frozen=True)
class Symlink:
    target: str
    path: str


@dataclass(frozen=True)
class MaskFile:
    path: str


@dataclass(frozen=True)
class MaskDir:
    path: str


@dataclass(frozen=True)
class ReadOnly:
    path: str


@dataclass(frozen=True)
class BindDevice:
    name: str
    root: str


@dataclass(frozen=True)
class Move:
    """Move a mount, and every mount under it, from `source` to `target`."""

    source: str
    target: str


@dataclass(frozen=True)
class PivotRoot:
    path: str


Op = (
    Mount
    | MoveFd
    | Move
    | Mkdir
    | WriteFile
    | Symlink
    | MaskFile
    | MaskDir
    | ReadOnly
    | BindDevice
    | PivotRoot
)


@dataclass(frozen=True)
class Layout:
    """One sandbox's layers, as the stage (the spare's root) has their mount points."""

    volume: bool  # the learner's persistent layer, passed idmapped (False: a throwaway tmpfs)
    disk_bytes: int

    root = "/root"

    @property
    def writable(self) -> str:
        return "/volume" if self.volume else "/scratch"


def plan_stage() -> list[Op]:
    """What every sandbox mounts under its root, on the stage; then into the stage."""
    return [
        Mount("tmpfs", STAGE, "tmpfs", NOSUID_NODEV_NOEXEC, "size=4k,mode=755"),
        *[Mkdir(f"{STAGE}/{name}") for name in (*STAGED, *TAKE_POINTS)],
        *_common(STAGE),
        PivotRoot(STAGE),
    ]


def plan_root(layout: Layout, etc: dict[str, str]) -> list[Op]:
    """`etc`: the files of /etc that are this sandbox's own (its hostname), by name."""
    r, w = layout.root, layout.writable
    ops: list[Op] = []
    if layout.volume:
        ops.append(MoveFd("volume", w))
    else:
        ops.append(Mount("tmpfs", w, "tmpfs", NOSUID_NODEV, f"size={layout.disk_bytes},mode=755"))
        ops += [Mkdir(f"{w}/{d}") for d in LAYER_DIRS]
        # Straight onto the new layer, as the overlay would have copied them up: a write
        # through the overlay first copies /etc up, a third of a millisecond here.
        ops.append(Mkdir(f"{w}/root/upper/etc"))
        ops += [WriteFile(f"{w}/root/upper/etc/{name}", text) for name, text in etc.items()]
    ops += [
        MoveFd("image", "/lower-image"),
        MoveFd("usr", "/lower-usr"),
        _overlay("/lower-image", f"{w}/root", r),
        _overlay("/lower-usr", f"{w}/usr", f"{r}/usr"),
        *[Move(f"/{name}", f"{r}/{name}") for name in STAGED],
        PivotRoot(r),
    ]
    if layout.volume:
        # Through the overlay, on the learner's first start only: they may edit them.
        ops += [WriteFile(f"/etc/{name}", text) for name, text in etc.items()]
    return ops


def _common(r: str) -> list[Op]:
    """/proc, /run, /tmp and /dev of a root at `r`."""
    return [
        Mount("proc", f"{r}/proc", "proc", NOSUID_NODEV_NOEXEC),
        *[MaskFile(f"{r}/{p}") for p in MASKED_FILES],
        *[MaskDir(f"{r}/{p}") for p in MASKED_DIRS],
        *[ReadOnly(f"{r}/{p}") for p in READONLY_PATHS],
        Mount("tmpfs", f"{r}/run", "tmpfs", NOSUID_NODEV, "size=16m,mode=755"),
        Mkdir(f"{r}/{HIDDEN}"),
        Mkdir(f"{r}/{HIDDEN}/proc", 0o555),
        Mount("proc", f"{r}/{HIDDEN}/proc", "proc", NOSUID_NODEV_NOEXEC),
        Mkdir(f"{r}/{HIDDEN}/sys", 0o555),
        # Writable, or `ip netns exec` (which mounts sysfs read-write) would be refused.
        Mount("/sys", f"{r}/{HIDDEN}/sys", None, sc.MS_BIND | sc.MS_REC),
        Mount(
            "tmpfs", f"{r}/{HIDDEN}", "tmpfs", sc.MS_RDONLY | NOSUID_NODEV_NOEXEC, "size=4k,mode=0"
        ),
        Mount("tmpfs", f"{r}/tmp", "tmpfs", NOSUID_NODEV, "size=64m,mode=1777"),
        Mount("tmpfs", f"{r}/dev", "tmpfs", sc.MS_NOSUID | sc.MS_NOEXEC, "size=64k,mode=755"),
        *[BindDevice(name, r) for name in DEVICES],
        Mkdir(f"{r}/dev/pts"),
        Mount(
            "devpts",
            f"{r}/dev/pts",
            "devpts",
            sc.MS_NOSUID | sc.MS_NOEXEC,
            "newinstance,ptmxmode=0666,mode=0620,gid=5",
        ),
        Symlink("pts/ptmx", f"{r}/dev/ptmx"),
        Mkdir(f"{r}/dev/shm", 0o1777),
        Mount("tmpfs", f"{r}/dev/shm", "tmpfs", NOSUID_NODEV_NOEXEC, "size=64m,mode=1777"),
        Mkdir(f"{r}/dev/mqueue", 0o1777),
        Symlink("/proc/self/fd", f"{r}/dev/fd"),
        Symlink("/proc/self/fd/0", f"{r}/dev/stdin"),
        Symlink("/proc/self/fd/1", f"{r}/dev/stdout"),
        Symlink("/proc/self/fd/2", f"{r}/dev/stderr"),
    ]


def _overlay(lower: str, writable: str, target: str) -> Mount:
    # userxattr: overlay keeps its metadata in user.* xattrs, which a user namespace may set.
    data = f"lowerdir={lower},upperdir={writable}/upper,workdir={writable}/work,userxattr"
    return Mount("overlay", target, "overlay", NOSUID_NODEV, data)


def plan_inner(cgroup_mounts: list[tuple[str, str, str | None]]) -> list[Op]:
    """After the learner's namespaces exist: what belongs to them."""
    ops: list[Op] = [
        Mount("sysfs", "/sys", "sysfs", sc.MS_RDONLY | NOSUID_NODEV_NOEXEC),
        Mount("tmpfs", "/sys/fs/cgroup", "tmpfs", NOSUID_NODEV_NOEXEC, "size=4k,mode=755"),
    ]
    for subdir, fstype, options in cgroup_mounts:
        target = f"/sys/fs/cgroup/{subdir}".rstrip("/")
        if subdir:
            ops.append(Mkdir(target))
        ops.append(Mount("cgroup", target, fstype, NOSUID_NODEV_NOEXEC, options))
    return ops


def apply(ops: list[Op], fds: dict[str, int]) -> None:
    """Carry out a plan. Runs in the sandbox's child process; raises OSError on failure.

    Every directory a plan makes is new, on a tmpfs the plan mounted: one mkdir with its
    exact mode (no umask, which is put back for the processes the init starts later), not
    a walk up its parents and a chmod."""
    umask = os.umask(0)
    try:
        for op in ops:
            _apply(op, fds)
    finally:
        os.umask(umask)


def _apply(op: Op, fds: dict[str, int]) -> None:
    if isinstance(op, Mount):
        sc.mount(op.source, op.target, op.fstype, op.flags, op.data)
    elif isinstance(op, MoveFd):
        sc.move_mount_fd(fds[op.key], op.target)
    elif isinstance(op, Move):
        sc.mount(op.source, op.target, None, sc.MS_MOVE)
    elif isinstance(op, Mkdir):
        os.mkdir(op.path, op.mode)
    elif isinstance(op, WriteFile):
        try:
            fd = os.open(op.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return
        try:
            os.write(fd, op.text.encode())
        finally:
            os.close(fd)
    elif isinstance(op, Symlink):
        os.symlink(op.target, op.path)
    elif isinstance(op, MaskFile):
        if os.path.exists(op.path):
            sc.mount("/dev/null", op.path, None, sc.MS_BIND)
    elif isinstance(op, MaskDir):
        if os.path.isdir(op.path):
            sc.mount("tmpfs", op.path, "tmpfs", sc.MS_RDONLY | NOSUID_NODEV_NOEXEC, "size=0")
    elif isinstance(op, ReadOnly):
        if os.path.exists(op.path):
            sc.mount(op.path, op.path, None, sc.MS_BIND | sc.MS_REC)
            sc.mount(None, op.path, None, READONLY_REMOUNT)
    elif isinstance(op, BindDevice):
        path = f"{op.root}/dev/{op.name}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644))
        sc.mount(f"/dev/{op.name}", path, None, sc.MS_BIND)
    elif isinstance(op, PivotRoot):
        os.chdir(op.path)
        # pivot_root(".", ".") stacks the old root under the new one; detaching it
        # leaves no path back to the host's files.
        sc.pivot_root(".", ".")
        sc.umount2(".", sc.MNT_DETACH)
        os.chdir("/")

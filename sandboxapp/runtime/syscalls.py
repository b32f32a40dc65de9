"""Thin ctypes wrappers for the Linux system calls Python 3.11's `os` lacks.

Every wrapper raises OSError with the errno and the arguments, so a failed
setup step says which call failed and on what path (reset_signal_dispositions, which
may meet signals the kernel will not change, is the one that does not).
"""

from __future__ import annotations

import array
import ctypes
import os
import platform
import socket
from collections.abc import Callable

_libc = ctypes.CDLL(None, use_errno=True)
# ctypes looks a function up and wraps it on its first use, a tenth of a millisecond each.
# Looked up now, on import, that is done once in the zygote rather than in every sandbox.
for _name in ("fork", "mount", "prctl", "setns", "syscall", "umount2", "unshare"):
    getattr(_libc, _name)
del _name

# Namespace flags (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Mount flags (linux/mount.h).
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MNT_DETACH = 2

# prctl options (linux/prctl.h).
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "capset": 126, "rt_sigaction": 13},
    "aarch64": {"pivot_root": 41, "capset": 91, "rt_sigaction": 134},
}[platform.machine()]

_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
]
_libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str | Callable[[], str]) -> int:
    """`what` names the call for the error; a callable is formatted only on failure, as
    the set-up of a sandbox makes some hundred calls that succeed."""
    if result < 0:
        err = ctypes.get_errno()
        name = what if isinstance(what, str) else what()
        raise OSError(err, f"{name}: {os.strerror(err)}")
    return result


def _b(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return value.encode()


def unshare(flags: int) -> None:
    _check(_libc.unshare(flags), lambda: f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    _check(_libc.setns(fd, nstype), lambda: f"setns(fd={fd}, {nstype:#x})")


def mount(
    source: str | None,
    target: str,
    fstype: str | None = None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    result = _libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data))
    _check(result, lambda: f"mount({source!r}, {target!r}, {fstype!r}, {flags:#x}, {data!r})")


def umount2(target: str, flags: int = 0) -> None:
    _check(_libc.umount2(_b(target), flags), lambda: f"umount2({target!r}, {flags})")


def pivot_root(new_root: str, put_old: str) -> None:
    result = _libc.syscall(_SYSCALLS["pivot_root"], _b(new_root), _b(put_old))
    _check(result, lambda: f"pivot_root({new_root!r}, {put_old!r})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(_libc.prctl(option, arg2, arg3, arg4, arg5), lambda: f"prctl({option})")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


_LINUX_CAPABILITY_VERSION_3 = 0x20080522
# ctypes makes a class for each array type on its first use, which costs a few hundred
# microseconds. Made here, on import, they are made once in the zygote and shared by every
# sandbox's init, which uses each once, in its set-up.
_CapDataPair = _CapData * 2
_Sigaction = ctypes.c_ulong * 4  # handler, flags, restorer, mask


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks)."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _CapDataPair()
    for i, shift in enumerate((0, 32)):
        data[i].effective = (effective >> shift) & 0xFFFFFFFF
        data[i].permitted = (permitted >> shift) & 0xFFFFFFFF
        data[i].inheritable = (inheritable >> shift) & 0xFFFFFFFF
    result = _libc.syscall(_SYSCALLS["capset"], ctypes.byref(header), data)
    _check(result, "capset")


# The new mount API: syscall numbers are the same on every architecture.
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_FSOPEN = 430
_SYS_FSCONFIG = 431
_SYS_FSMOUNT = 432
_SYS_MOUNT_SETATTR = 442
_SYS_PIDFD_SEND_SIGNAL = 424
AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_IDMAP = 0x00100000
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


def open_tree_clone(path: str) -> int:
    """A detached copy of the mount tree at `path`, as a file descriptor."""
    flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE
    return _check(
        _libc.syscall(_SYS_OPEN_TREE, AT_FDCWD, _b(path), flags), lambda: f"open_tree({path!r})"
    )


def mount_setattr_idmap(fd: int, userns_fd: int, extra: int = 0) -> None:
    """Make the detached tree `fd` show file owners through `userns_fd`'s id map."""
    attr = _MountAttr(MOUNT_ATTR_IDMAP | extra, 0, 0, userns_fd)
    flags = AT_EMPTY_PATH | AT_RECURSIVE
    result = _libc.syscall(
        _SYS_MOUNT_SETATTR, fd, b"", flags, ctypes.byref(attr), ctypes.sizeof(attr)
    )
    _check(result, "mount_setattr(MOUNT_ATTR_IDMAP)")


def fsmount_detached(fstype: str, source: str, flags: tuple[str, ...], attrs: int) -> int:
    """Mount `source` as a new `fstype` without attaching it anywhere: a detached mount, as
    a file descriptor. Closing the last one unmounts it."""
    context = _check(
        _libc.syscall(_SYS_FSOPEN, _b(fstype), FSOPEN_CLOEXEC), lambda: f"fsopen({fstype!r})"
    )
    try:
        result = _libc.syscall(
            _SYS_FSCONFIG, context, FSCONFIG_SET_STRING, b"source", _b(source), 0
        )
        _check(result, lambda: f"fsconfig(source={source!r})")
        for flag in flags:
            result = _libc.syscall(_SYS_FSCONFIG, context, FSCONFIG_SET_FLAG, _b(flag), None, 0)
            _check(result, f"fsconfig({flag})")  # mounting a layer: not on a start-up path
        result = _libc.syscall(_SYS_FSCONFIG, context, FSCONFIG_CMD_CREATE, None, None, 0)
        _check(result, lambda: f"fsconfig(create {fstype} on {source!r})")
        result = _libc.syscall(_SYS_FSMOUNT, context, FSMOUNT_CLOEXEC, attrs)
        return _check(result, lambda: f"fsmount({fstype} on {source!r})")
    finally:
        os.close(context)


def move_mount_fd(fd: int, target: str) -> None:
    result = _libc.syscall(_SYS_MOVE_MOUNT, fd, b"", AT_FDCWD, _b(target), MOVE_MOUNT_F_EMPTY_PATH)
    _check(result, lambda: f"move_mount(fd, {target!r})")


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    result = _libc.syscall(_SYS_PIDFD_SEND_SIGNAL, pidfd, sig, None, 0)
    _check(result, lambda: f"pidfd_send_signal({sig})")


def fork_single_threaded() -> int:
    """fork(2) straight from libc, for a process that has only one thread.

    os.fork() also re-initialises the interpreter in the child (threads, locks, at-fork
    hooks such as random's reseed), which costs a millisecond of copy-on-write faults
    here. A single-threaded process holds no lock another thread could have taken, so
    the child may go on running Python until it execs or exits.
    """
    return _check(_libc.fork(), "fork")


PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_load_bpf(program: bytes) -> None:
    """Install a compiled classic-BPF seccomp filter (8 bytes per instruction)."""
    # The bytes' own buffer, read by the kernel during the call (no array type made).
    prog = _SockFprog(len(program) // 8, ctypes.cast(ctypes.c_char_p(program), ctypes.c_void_p))
    result = _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)
    _check(result, "prctl(PR_SET_SECCOMP)")


def reset_signal_dispositions() -> None:
    """Every signal back to its default action, at the kernel level.

    Ignored signals stay ignored across exec, and whoever started the host-side parent may
    have ignored some (libc's own real-time ones included, which Python's signal module
    cannot reach): a learner's shell must not inherit that.
    """
    default = _Sigaction()  # SIG_DFL, no flags, no restorer, empty mask
    for signum in range(1, 65):
        if signum not in (9, 19):  # SIGKILL and SIGSTOP cannot be changed
            _libc.syscall(_SYSCALLS["rt_sigaction"], signum, ctypes.byref(default), None, 8)


def recv_fds(sock: socket.socket, bufsize: int, maxfds: int) -> tuple[bytes, list[int]]:
    """socket.recv_fds, with the fds close-on-exec from the start (3.11's drops `flags`).

    Every fd a sandbox's init receives must stay out of the learner's processes: Popen
    closes the others in its child, and close-on-exec is the wall behind that.
    """
    fds = array.array("i")
    message, ancillary, _, _ = sock.recvmsg(
        bufsize, socket.CMSG_LEN(maxfds * fds.itemsize), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    return message, list(fds)

"""The child side of a sandbox: everything that runs between fork() and the learner's shell.

One flat, ordered pipeline, the parent side of each step being in sandbox.py:

    C (forked by the parent)   user + pid namespaces; parent writes the id map
    I (pid 1 of the sandbox)   mount namespace, root filesystem, pivot_root
                               learner's user, mount, net, uts, ipc, cgroup namespaces
                               hostname, loopback, sysfs, delegated cgroups
                               then: init (reap orphans, die with the parent)
    E (forked per exec)        join the cgroup and the namespaces, fork F
    F (the learner's process)  credentials, capabilities, no_new_privs, seccomp, exec

Nothing here may import lazily: after the id map is written the child is an unprivileged
host user and cannot read the Python installation's files anymore.
"""

from __future__ import annotations

import fcntl
import gc
import os
import select
import signal
import socket
import termios
import time
import traceback
from dataclasses import dataclass, field

import setproctitle

from . import network, rootfs, security
from . import syscalls as sc

TIOCGPTPEER = 0x5441
TIOCSCTTY = 0x540E

# Namespaces created for the learner inside the sandbox's outer user namespace. The
# outer one holds only the pid namespace, so the learner's root cannot remove the mounts
# made before it existed.
INNER_NAMESPACES = (
    sc.CLONE_NEWUSER
    | sc.CLONE_NEWNS
    | sc.CLONE_NEWNET
    | sc.CLONE_NEWUTS
    | sc.CLONE_NEWIPC
    | sc.CLONE_NEWCGROUP
)
JOIN_NAMESPACES = INNER_NAMESPACES
INIT_TITLE = "init [contained]"


@dataclass
class ChildPlan:
    """Everything the child needs, computed by the parent before fork."""

    hostname: str
    layout: rootfs.Layout
    root_ops: list[rootfs.Op]
    inner_ops: list[rootfs.Op]
    hosts: str
    keep_fds: list[int] = field(default_factory=list)


def _fail(sock: socket.socket, stage: str, exc: BaseException) -> None:
    detail = f"{stage}: {exc}"
    try:
        sock.send(b"error " + detail.encode(errors="replace")[:4000])
    except OSError:
        pass
    if os.environ.get("CONTAINED_DEBUG_CHILD"):
        traceback.print_exc()
    os._exit(1)


def _close_fds_except(keep: list[int]) -> None:
    keep = sorted(set(keep))
    low = 3
    for fd in keep + [None]:
        high = fd if fd is not None else 2**31 - 1
        if high > low:
            os.closerange(low, high)
        if fd is not None:
            low = fd + 1


def run_c(plan: ChildPlan, sock: socket.socket, lifeline: int) -> None:
    """C: create the outer user and pid namespaces, then fork the sandbox's pid 1."""
    stage = "user namespace"
    try:
        _close_fds_except([sock.fileno(), lifeline])
        os.setsid()
        sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWPID)
        sock.send(b"userns")
        msg, fds, _, _ = socket.recv_fds(sock, 64, 4)
        if msg != b"mapped":
            os._exit(1)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        # Keep /proc/PID files owned by the sandbox's root (not host root), so the
        # sandbox's own helper can write the learner's id map below.
        sc.prctl(sc.PR_SET_DUMPABLE, 1)
        stage = "fork pid 1"
        pid = os.fork()
        if pid == 0:
            _run_init(plan, sock, lifeline, dict(zip(("image", "usr"), fds, strict=True)))
        sock.send(b"init %d" % pid)
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent
        _fail(sock, stage, exc)


def _run_init(plan: ChildPlan, sock: socket.socket, lifeline: int, fds: dict[str, int]) -> None:
    stage = "mount namespace"
    try:
        started = time.perf_counter()
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        stage = "root filesystem"
        rootfs.apply(plan.root_ops, fds)
        for fd in fds.values():
            os.close(fd)
        stage = "learner namespaces"
        _enter_inner_namespaces()
        stage = "hostname"
        socket.sethostname(plan.hostname)
        stage = "loopback"
        network.loopback_up()
        stage = "sysfs and cgroups"
        rootfs.apply(plan.inner_ops, {})
        stage = "/etc"
        _write_if_absent("/etc/hostname", plan.hostname + "\n")
        _write_if_absent("/etc/hosts", plan.hosts)
        null = os.open("/dev/null", os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        os.close(null)
        # The init is a copy of the parent's memory: never let the learner read it, and
        # let `ps` inside show what it is rather than the parent's command line.
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        setproctitle.setproctitle(INIT_TITLE)
        sock.send(b"ready %.3f" % ((time.perf_counter() - started) * 1000))
        sock.close()
    except BaseException as exc:  # noqa: BLE001
        _fail(sock, stage, exc)
    _init_loop(lifeline)


def _enter_inner_namespaces() -> None:
    """Unshare the learner's namespaces; a short-lived helper in the outer user
    namespace writes the id map (only its parent user namespace may)."""
    ready_r, ready_w = os.pipe()
    helper = os.fork()
    if helper == 0:
        os.close(ready_w)
        os.read(ready_r, 1)
        # Identity map: the learner's root is the sandbox's root, which the parent
        # mapped to this sandbox's own block of host ids.
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/1/{name}", "w") as f:
                f.write("0 0 65536\n")
        os._exit(0)
    os.close(ready_r)
    try:
        sc.unshare(INNER_NAMESPACES)
    finally:
        os.write(ready_w, b"x")
        os.close(ready_w)
        _, status = os.waitpid(helper, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise OSError("could not write the learner's id map")
    os.setresgid(0, 0, 0)
    os.setresuid(0, 0, 0)


def _write_if_absent(path: str, text: str) -> None:
    # Only on first start: afterwards the file is the learner's (they may edit it).
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _init_loop(lifeline: int) -> None:
    """pid 1: reap every orphan, and exit (taking the sandbox with it) when the
    parent that owns the sandbox goes away and its end of the lifeline closes."""
    gc.disable()

    def reap(_signum: int, _frame: object) -> None:
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return

    signal.signal(signal.SIGCHLD, reap)
    reap(0, None)
    poller = select.poll()
    poller.register(lifeline, select.POLLIN | select.POLLHUP)
    while True:
        if poller.poll():
            os._exit(0)


@dataclass
class ExecPlan:
    """One process to start inside a sandbox, prepared by the parent before fork."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    cgroup_procs: list[str]
    init_pidfd: int
    seccomp: bytes
    pty_master: int | None = None
    stdio: tuple[int, int, int] | None = None
    uid: int = 0
    gid: int = 0


def run_e(plan: ExecPlan, status_w: int) -> None:
    """E: join the sandbox's namespaces, start F inside them, and relay F's exit status.

    E itself stays outside the sandbox's cgroup and pid namespace, out of the learner's
    reach (and of their OOM killer), so it is always there to reap F: the sandbox's init
    can only finish tearing down once every process of its namespace has been reaped.
    """
    try:
        # Opened as host root; F moves itself in with them ("0" is the writer itself).
        cgroup_fds = [os.open(p, os.O_WRONLY | os.O_CLOEXEC) for p in plan.cgroup_procs]
        # The pid namespace belongs to the sandbox's outer user namespace: join it while
        # still host root, then the learner's namespaces in one call.
        sc.setns(plan.init_pidfd, sc.CLONE_NEWPID)
        sc.setns(plan.init_pidfd, JOIN_NAMESPACES)
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        pid = os.fork()
        if pid == 0:
            _run_f(plan, status_w, cgroup_fds)
        os.close(status_w)
        _, status = os.waitpid(pid, 0)
        if os.WIFEXITED(status):
            os._exit(os.WEXITSTATUS(status))
        os._exit(128 + os.WTERMSIG(status))
    except BaseException as exc:  # noqa: BLE001
        os.write(status_w, f"join: {exc}".encode(errors="replace")[:4000])
        os._exit(127)


def _run_f(plan: ExecPlan, status_w: int, cgroup_fds: list[int]) -> None:
    stage = "cgroup"
    try:
        for fd in cgroup_fds:
            os.write(fd, b"0")
            os.close(fd)
        stage = "credentials"
        os.setgroups([plan.gid])
        os.setresgid(plan.gid, plan.gid, plan.gid)
        os.setresuid(0, 0, 0)
        stage = "terminal"
        if plan.pty_master is not None:
            os.setsid()
            slave = fcntl.ioctl(plan.pty_master, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
            fcntl.ioctl(slave, TIOCSCTTY, 0)
            stdio = (slave, slave, slave)
        elif plan.stdio is not None:
            stdio = plan.stdio
        else:
            null = os.open("/dev/null", os.O_RDWR)
            stdio = (null, null, null)
        for target, fd in enumerate(stdio):
            os.dup2(fd, target, inheritable=True)
        stage = "working directory"
        os.chdir(plan.cwd)
        stage = "hardening"
        security.harden_current_process(plan.seccomp)
        if plan.uid:
            os.setresuid(plan.uid, plan.uid, plan.uid)
        stage = "exec"
        fcntl.fcntl(status_w, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
        _close_fds_except([status_w])
        os.execvpe(plan.argv[0], plan.argv, plan.env)
    except BaseException as exc:  # noqa: BLE001
        os.write(status_w, f"{stage}: {exc}".encode(errors="replace")[:4000])
        os._exit(127)


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(
        fd,
        termios.TIOCSWINSZ,
        bytes(8)
        if rows <= 0
        else rows.to_bytes(2, "little") + cols.to_bytes(2, "little") + bytes(4),
    )

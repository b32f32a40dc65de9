"""The child side of a sandbox: everything that runs between fork() and the learner's shell.

One flat, ordered pipeline, the parent side of each step being in sandbox.py. A spare
(zygote.py) goes as far as it can before anyone takes it:

    C (forked ahead by the     user + pid namespaces (the zygote writes their id map),
       zygote)                 then forks I and waits for the take
    I (pid 1 of the sandbox)   the learner's user, net, uts, ipc namespaces, made by a
                               helper (I writes their id map), held as fds; `lo` up
                               mount namespace, staged /proc, /run, /tmp, /dev, pivot
                               into the stage; seccomp; a warm-up; the init's signals
                               and poller; then waits for its plan
      -- taken --              the layers, the overlays (a throwaway layer with its
                               /etc files), the staged mounts moved in, pivot_root;
                               joins the learner's namespaces, makes their mount and
                               cgroup namespaces
                               hostname, sysfs, delegated cgroups
                               capabilities, no_new_privs (inherited, as seccomp is)
                               then: init (reap orphans, start processes on request,
                               exit when the parent's end of the control socket closes)
    each process               started by I with Popen: a vfork as root; on a terminal,
                               through the image's `setsid --ctty`

Every process of a sandbox is forked by its own init, so it starts inside the cgroup and
every namespace already, and orphans always land on that init: no process ever has to
be moved into the sandbox from outside.

Nothing here may import lazily: after the id map is written the child is an unprivileged
host user and cannot read the Python installation's files anymore. C is forked by the
zygote (zygote.py), so this module and its imports are all a sandbox's processes carry.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import termios
import time
import traceback
from dataclasses import dataclass
from typing import NoReturn

import setproctitle

from . import rootfs, security
from . import syscalls as sc

TIOCGPTPEER = 0x5441
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
TIOCSPTLCK = 0x40045431

# The learner's namespaces made ahead, inside the sandbox's outer user namespace (which
# holds only the pid namespace), and joined by the init at the take. Their mount and
# cgroup namespaces are made then: so the learner's root cannot remove the mounts made
# before, and the cgroup namespace is rooted at the sandbox's cgroup.
LEARNER_AHEAD = sc.CLONE_NEWUSER | sc.CLONE_NEWNET | sc.CLONE_NEWUTS | sc.CLONE_NEWIPC
INIT_TITLE = "init [contained]"
# Starts a process on a terminal, as its controlling one: see _popen.
SETSID_CTTY = ("/usr/bin/setsid", "--ctty")
# The parent's message to the init: this prefix, then the pickled plan.
PLAN = b"plan\n"
MAX_PLAN = 1 << 20


@dataclass
class ChildPlan:
    """Everything the child needs, computed by the parent before fork."""

    hostname: str
    root_ops: list[rootfs.Op]
    inner_ops: list[rootfs.Op]
    # What the detached mounts sent with the plan are, in order (rootfs.MoveFd keys).
    layers: tuple[str, ...] = ("image", "usr")


def _fail(sock: socket.socket, stage: str, exc: BaseException) -> NoReturn:
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


@dataclass(frozen=True)
class OuterMap:
    """C's pipes to the zygote, which writes the id map of C's user namespace."""

    unshared: int  # (write) the namespace exists
    mapped: int  # (read) the zygote wrote its map


def run_c(sock: socket.socket, cgroup_ready: int, cgroup_procs: list[int], outer: OuterMap) -> None:
    """C: join the cgroups the zygote made for this spare, if any (the init forked next is
    then born in them), create the outer user and pid namespaces, have the zygote map
    them to the spare's block of host ids, and fork the sandbox's pid 1, which waits for
    its plan. The zygote forks C ahead of need: until the plan comes, C and the init are
    an empty pair of namespaces that nothing else shares."""
    stage = "user namespace"
    try:
        for fd in cgroup_procs:
            # Still host root here. A failure leaves us where we are: the parent checks
            # where the init is before it counts on the move.
            with contextlib.suppress(OSError):
                os.write(fd, b"0")
        _close_fds_except([sock.fileno(), cgroup_ready, outer.unshared, outer.mapped])
        os.setsid()
        sc.unshare(sc.CLONE_NEWUSER | sc.CLONE_NEWPID)
        stage = "id map"
        os.write(outer.unshared, b"u")
        if os.read(outer.mapped, 1) != b"m":
            raise OSError("the zygote did not map the sandbox's ids")
        os.close(outer.unshared)
        os.close(outer.mapped)
        stage = "fork pid 1"
        taken_r, taken_w = os.pipe()
        pid = sc.fork_single_threaded()
        if pid == 0:
            os.close(taken_r)
            _run_init(sock, _Handshake(cgroup_ready, taken_w))
        os.close(cgroup_ready)
        os.close(taken_w)
        sock.send(b"init %d" % pid)
        sock.close()  # from here on the socket is the init's and the parent's alone
        # Until a sandbox takes the spare (or the init dies): gone earlier, we would hand
        # the init to a reaper of orphans before the parent is there to be that.
        os.read(taken_r, 1)
        os._exit(0)
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent
        _fail(sock, stage, exc)


@dataclass(frozen=True)
class _Handshake:
    """The init's pipes to the others of the set-up."""

    cgroup_ready: int  # (read) the parent has moved the init into the sandbox's cgroup
    taken: int  # (write) closed once a sandbox has taken the spare: C may exit


@dataclass(frozen=True)
class _LearnerNamespaces:
    """The learner's user, network, uts and ipc namespaces, made while the spare waits.

    A network namespace is most of a namespace set-up's cost (about a millisecond). The
    learner's namespaces must be children of the sandbox's outer user namespace, which
    the zygote maps before the init exists, so a helper H, forked by the init, makes them
    ahead: the init writes their id map, H brings `lo` up, the init opens them and ends H.
    At the take, the init joins them and makes the learner's mount and cgroup namespaces.
    """

    fds: tuple[int, ...]  # user first: the others are owned by it

    @classmethod
    def make(cls) -> _LearnerNamespaces:
        news_r, news_w = os.pipe()
        pid = sc.fork_single_threaded()
        if pid == 0:
            try:
                os.close(news_r)
                # Becoming the sandbox's root made the init undumpable, and with it our
                # /proc files host root's: the init could neither write our id map nor
                # open our namespaces. Only the init runs as this block of ids yet.
                sc.prctl(sc.PR_SET_DUMPABLE, 1)
                sc.unshare(LEARNER_AHEAD)
                os.write(news_w, b"u")
                _loopback_up()
                os.write(news_w, b"l")
                while True:
                    signal.pause()  # until the init has opened our namespaces
            finally:
                os._exit(1)
        os.close(news_w)
        pidfd = os.pidfd_open(pid)
        try:
            if os.read(news_r, 1) != b"u":
                raise OSError("the learner's namespaces could not be made")
            # /proc is still the host's here: the helper is under its host pid.
            proc = f"/proc/{_host_pid(pidfd)}"
            for name in ("uid_map", "gid_map"):
                fd = os.open(f"{proc}/{name}", os.O_WRONLY)
                try:
                    # Identity: the learner's root is the sandbox's root.
                    os.write(fd, b"0 0 65536\n")
                finally:
                    os.close(fd)
            if os.read(news_r, 1) != b"l":
                raise OSError("the learner's loopback could not be brought up")
            fds = tuple(
                os.open(f"{proc}/ns/{kind}", os.O_RDONLY | os.O_CLOEXEC)
                for kind in ("user", "net", "uts", "ipc")
            )
        finally:
            os.close(news_r)
            sc.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(pidfd)
        return cls(fds)

    def enter(self) -> None:
        """Join them, then make the learner's mount namespace (every mount made so far
        becomes locked: owned by the outer namespace, which the learner is not in) and
        cgroup namespace (rooted at the sandbox's cgroup, which the init is in now)."""
        for fd in self.fds:
            sc.setns(fd, 0)
            os.close(fd)
        sc.unshare(sc.CLONE_NEWNS | sc.CLONE_NEWCGROUP)
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        # Root's own groups only (the zygote's, from the host, would show as nogroup):
        # what every process the init spawns as root starts with.
        os.setgroups([0])


def _host_pid(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}") as f:
        for line in f:
            if line.startswith("Pid:"):
                return int(line.split()[1])
    raise OSError("no pid in the pidfd's fdinfo")


def _run_init(sock: socket.socket, handshake: _Handshake) -> None:
    stage = "learner namespaces"
    try:
        # The sandbox's root: the zygote mapped it to the spare's block of host ids.
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        learner = _LearnerNamespaces.make()
        stage = "staged mounts"
        # What every sandbox mounts, in a mount namespace of our own, while nobody waits.
        # From here on the init sees only the stage, none of the host's files.
        sc.unshare(sc.CLONE_NEWNS)
        sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
        rootfs.apply(rootfs.plan_stage(), {})
        stage = "seccomp"
        # The filter now, while nobody waits (the kernel checks and compiles it as it loads,
        # 0.3 ms here): from here on the init is held to it, and every process it starts
        # inherits it. It survives the joining of the learner's user namespace, which
        # resets the bounding set: that is dropped at the take (harden_current_process).
        sc.seccomp_load_bpf(security.seccomp_program())
        stage = "warm-up"
        # Last, after the fork of the helper above: that fork shared every page of ours
        # again, and each first write to one after it costs a fault.
        _warm_up()
        init = _Init(sock)
        stage = "plan"
        # The plan, pickled by the parent (host root, this same program), and the
        # idmapped layers. Only the parent holds the other end of this socket.
        message, fds = sc.recv_fds(sock, MAX_PLAN, 3)
        if not message.startswith(PLAN):
            os._exit(1)  # the parent or the zygote is gone
        started = time.perf_counter()
        os.close(handshake.taken)  # C may go: the parent reaps us from here on
        plan = pickle.loads(message[len(PLAN) :])
        layers = dict(zip(plan.layers, fds, strict=True))
        stage = "root filesystem"
        rootfs.apply(plan.root_ops, layers)
        for fd in fds:
            os.close(fd)
        stage = "cgroup"
        # The parent moves us into the sandbox's cgroup meanwhile (slow on cgroup v1):
        # the cgroup namespace made next is rooted where we are then.
        if os.read(handshake.cgroup_ready, 1) != b"c":
            os._exit(1)
        os.close(handshake.cgroup_ready)
        stage = "learner namespaces"
        learner.enter()
        stage = "hostname"
        socket.sethostname(plan.hostname)
        stage = "sysfs and cgroups"
        rootfs.apply(plan.inner_ops, {})
        null = os.open("/dev/null", os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        os.close(null)
        # The init is a copy of the zygote's memory: never let the learner read it, and
        # let `ps` inside show what it is rather than the zygote's command line.
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        setproctitle.setproctitle(INIT_TITLE)
        stage = "hardening"
        # Once, here, rather than in each process: everything the init forks inherits the
        # bounding set and no_new_privs (and the seccomp filter, above), and the init is
        # held to them too.
        security.harden_current_process()
        sock.send(b"ready %.3f" % ((time.perf_counter() - started) * 1000))
    except BaseException as exc:  # noqa: BLE001
        _fail(sock, stage, exc)
    init.serve()


def _warm_up() -> None:
    """While a spare: unpickle a plan of the same shape as the one to come, and start a
    process the way the first one will be started.

    The init's memory is the zygote's, copy-on-write: the first write to each page of
    the heap costs a fault and a copy, and a plan's sixty-odd objects meet many such
    pages, as does the first Popen. Taken now, while nobody waits, those faults no
    longer delay the set-up or the learner's first process (about a millisecond here for
    the plan, half of one for the spawn); the pages were to be the init's anyway.
    """
    layout = rootfs.Layout(True, 0)
    sample = ChildPlan("warm-up", rootfs.plan_root(layout, {}), rootfs.plan_inner([]))
    pickle.loads(pickle.dumps(sample))
    # A program that cannot exist (/dev/null is no directory): the whole spawn but the exec
    # itself, and nothing runs.
    request = json.loads(json.dumps({"argv": ["/dev/null/none"], "env": {}, "cwd": "/"}))
    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    try:
        _popen(request, [null, null, null], None)
    except _SpawnError:
        pass
    finally:
        os.close(null)


def _loopback_up() -> None:
    """Bring `lo` up in the new network namespace: an ioctl, no netlink library needed."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


class _Init:
    """pid 1: reap every process of the sandbox and start new ones on request.

    Requests come from the parent on the control socket: a JSON object plus file
    descriptors (the terminal or stdio, and a channel for that process's news: "started
    PID" or "error ...", then "exit CODE"). The socket closing means the parent is gone,
    and the init exits, taking every process of its namespace with it.
    """

    def __init__(self, control: socket.socket) -> None:
        """Made while the spare waits (half a millisecond here), so that the first process
        asked for starts the moment the sandbox is ready. No child of ours ends before
        then: the helper and the warm-up's process are reaped already."""
        self.control = control
        self.channels: dict[int, int] = {}
        self.popens: dict[int, subprocess.Popen[bytes]] = {}
        gc.disable()
        # Every disposition back to the kernel's default, which the processes forked from
        # here inherit: ignored signals would stay ignored across their exec (Python
        # ignores SIGPIPE, and `yes | head` would print "Broken pipe"). The init is safe
        # with them: the kernel drops a default-action signal to a pid 1 unless it comes
        # from an ancestor namespace. Only SIGCHLD is handled (below); a handler of Python's
        # would let `kill -INT 1` end the sandbox.
        sc.reset_signal_dispositions()
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        # A handler (even one doing nothing) makes SIGCHLD write to the wakeup fd.
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.wake = wake_r
        self.poller = select.poll()
        self.poller.register(self.control, select.POLLIN)
        self.poller.register(wake_r, select.POLLIN)

    def serve(self) -> None:
        self._reap()
        while True:
            for fd, _ in self.poller.poll():
                if fd == self.wake:
                    while True:
                        try:
                            os.read(self.wake, 512)
                        except BlockingIOError:
                            break
                    self._reap()
                else:
                    self._request()

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            popen = self.popens.pop(pid, None)
            if popen is not None:
                popen.returncode = code
            channel = self.channels.pop(pid, None)
            if channel is not None:
                _send_quietly(channel, b"exit %d" % (code if code >= 0 else 128 - code))
                os.close(channel)

    def _request(self) -> None:
        try:
            message, fds = sc.recv_fds(self.control, 65536, 8)
        except OSError:
            message, fds = b"", []
        if not message:
            os._exit(0)  # the parent is gone: so is the sandbox
        try:
            request = json.loads(message)
            if request.get("op") == "kill":
                os.kill(int(request["pid"]), int(request["signal"]))
            else:
                self._spawn(request, fds)
        except Exception:  # noqa: BLE001 - pid 1 must outlive any bad request
            pass  # its channel closes below, which the parent reads as a refusal
        finally:
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _spawn(self, request: dict, fds: list[int]) -> None:
        *stdio, channel = fds
        master = None
        try:
            if request.get("terminal"):
                rows, cols = (int(n) for n in request["terminal"])
                master = _terminal_open(rows, cols)
            popen = _popen(request, stdio, master)
            # Held until reaped here, so that it never reaps the process itself.
            self.popens[popen.pid] = popen
            self.channels[popen.pid] = os.dup(channel)
            _send_started(channel, popen.pid, master)
        except _SpawnError as exc:
            _send_quietly(channel, b"error " + str(exc).encode(errors="replace")[:4000])
        finally:
            if master is not None:
                os.close(master)  # the parent has its own: ours would keep the terminal open


class _SpawnError(Exception):
    """Why a process could not start, as "<stage>: <reason>" for the parent."""


def _popen(request: dict, stdio: list[int], terminal: int | None) -> subprocess.Popen[bytes]:
    """Start a process with Python's own spawn.

    As root it is a vfork: the child shares the init's memory until its exec, so no page
    is copied. As another user it is a fork whose child runs only C code, so it touches
    few pages. Either way the child sets up its stdio, the directory and the user, closes
    every other fd, and resets signals to the defaults. (glibc's posix_spawn would leave
    its two internal signals ignored across exec.) A fork of the init running Python
    took 2.4 ms to reach its exec here, a vfork 0.2 ms.

    Without a terminal (lesson setup, checks, `sandbox run`) the child starts a new
    session itself. A terminal must also become the process's controlling one, which
    only the process can take: util-linux's `setsid --ctty`, from the sandbox's own
    /usr, makes the session and takes it, then execs the program. It is the learner's
    copy, as bash and libc are: breaking it breaks only their own new terminals, until
    a reset.
    """
    uid = int(request.get("uid", 0))
    cwd = str(request.get("cwd", "/root"))
    argv = [str(a) for a in request["argv"]]
    slave = None
    if terminal is not None:
        try:
            # Its other end, found from the master, never by a path in the sandbox.
            slave = fcntl.ioctl(terminal, TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY)
        except OSError as exc:
            raise _SpawnError(f"terminal: {exc}") from None
        stdio = [slave, slave, slave]
        argv = [*SETSID_CTTY, *argv]
    try:
        return subprocess.Popen(
            argv,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            cwd=cwd,
            env={str(k): str(v) for k, v in request["env"].items()},
            # setsid(1) would fork if it led a process group already, as a new session's
            # leader does: it makes the session itself.
            start_new_session=slave is None,
            # Root's own groups are the init's already ([0]); unchanged ids keep the vfork.
            user=uid or None,
            group=uid or None,
            extra_groups=[uid] if uid else None,
        )
    except OSError as exc:
        stage = "working directory" if exc.filename == cwd else "exec" if exc.filename else "fork"
        raise _SpawnError(f"{stage}: {exc}") from None
    finally:
        if slave is not None:
            os.close(slave)


def _terminal_open(rows: int, cols: int) -> int:
    """A new terminal on the sandbox's devpts, sized; its master.

    The init opens it, not the host: the learner controls every path in the sandbox (a
    symlink at /dev/pts/ptmx could name a host file if resolved by host root), and the
    init has no more rights than the learner. Non-blocking, and checked to be a ptmx,
    so a FIFO or a device planted there cannot stall or fool it.
    """
    try:
        fd = os.open("/dev/pts/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _SpawnError(f"terminal: {exc}") from None
    try:
        if os.fstat(fd).st_rdev != os.makedev(5, 2):
            raise _SpawnError("terminal: /dev/pts/ptmx is not a terminal multiplexer")
        os.set_blocking(fd, True)
        fcntl.ioctl(fd, TIOCSPTLCK, struct.pack("i", 0))
        set_winsize(fd, rows, cols)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _send_started(channel: int, pid: int, master: int | None) -> None:
    """The news that a process started, with its terminal's master if it has one."""
    news = b"started %d" % pid
    if master is None:
        _send_quietly(channel, news)
        return
    try:
        with socket.socket(fileno=os.dup(channel)) as sock:
            socket.send_fds(sock, [news], [master])
    except OSError:
        pass  # the parent stopped listening for this process


def _send_quietly(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:
        pass  # the parent stopped listening for this process


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

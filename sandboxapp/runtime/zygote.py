"""The zygote: a small, freshly started process that forks every sandbox.

Forking costs a Python process in proportion to what it has touched: its page tables,
then a copy-on-write fault for each page either side writes afterwards, which every
reference count does. sandboxd or a test runner hold 40-100 MB; forked from them, each
sandbox's creator, its init and every process that init forks would pay for all of it
(about 3-4 ms a fork here). The zygote imports only the child side (child.py and what it
needs), so forks from it cost a fraction, and a sandbox's init carries none of the
parent's memory, secrets included.

It keeps one sandbox made ahead, a spare, as Android's zygote keeps unspecialised app
processes. The parent asks for it ("spare UID_BASE [CGROUPS]") with a block of host
ids it has borrowed: its creator C unshares a user and a pid namespace, the zygote maps
them to that block and hands C over at once, and C forks the init, which makes
everything a sandbox has whoever its learner is (child.py), then waits for its plan. The
parent holds the spare until a sandbox takes it, and asks for the next one once that
sandbox is up. No fork, no unshare, no id map and no round trip to the zygote is then on
the path of a learner waiting for their shell.

Its channel is a private SOCK_SEQPACKET pair inherited at start, never a named socket,
so only the process that started it can ask it for anything. "spare" gets "error REASON"
or "forked PID" and three fds: a pidfd for C, the parent's end of the sandbox's control
socket (C holds the other) and the write end of the cgroup-ready pipe. Closing that
control socket ends the spare: its init exits, then C.

The zygote is not a child subreaper: when C exits, the sandbox's init is re-parented to
the process that started the zygote (sandbox.py makes it one), which reaps it, as if it
had forked C itself. The zygote reaps C, after opening its pidfd, so that pid cannot be
reused while the parent may still signal it.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import gc
import itertools
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import setproctitle

from . import child, ids, security
from . import syscalls as sc
from .cgroups import SPARE_PREFIX
from .spec import ID_BLOCK, Limits

log = logging.getLogger("contained.sandboxd")

TITLE = "zygote [contained]"
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What the zygote keeps of the daemon's environment: enough to run and to log.
_ZYGOTE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "CONTAINED_DEBUG_CHILD")


class ZygoteError(RuntimeError):
    pass


@dataclass
class Creator:
    """C, as the parent holds it: to be given its plan on `control`."""

    pid: int
    pidfd: int
    control: socket.socket
    cgroup_ready: int  # write end: the init is in its cgroup
    spare: str  # its name: its id block's owner is ids.spare_owner(spare)
    uid_base: int  # the host id block its namespaces are mapped to
    cgroups: list[Path] | None  # the cgroups C and the init were born in, if given some
    prepared: Limits | None = None  # the limits those are under, if made ready for a take


class SpareCgroups(Protocol):
    """The parent's side of a spare's cgroups: where they are, and, once C is in them,
    what is made of them before a take (`sandbox._SpareCgroups`)."""

    def paths(self, spare: str) -> list[Path] | None: ...

    def prepare(self, spare: str, uid_base: int, creator_pid: int) -> Limits | None: ...


class Zygote:
    """The parent's handle: start on first use, restart if it died, one request at a time.

    It serves one state directory, where it borrows each spare's id block: a spare's
    namespaces are mapped before anyone takes it. The spare it made last is held here,
    so that a take asks the zygote for nothing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._state_dir: Path | None = None
        self._spare: Creator | None = None
        self._failed = ""  # why the last spare could not be made
        self._owner: int | None = None
        self._seq = itertools.count(1)
        # One thread, made at the first refill: asks are sent in the order they were made.
        self._refiller = ThreadPoolExecutor(1, thread_name_prefix="zygote-refill")

    def _at_exit(self) -> None:
        # Not in a forked child, and never stuck behind a thread that holds the lock.
        if os.getpid() == self._owner and self._lock.acquire(timeout=1):
            self._lock.release()
            self.stop()

    def start(self, state_dir: Path) -> None:
        with self._lock:
            self._ensure(state_dir)

    def stop(self) -> None:
        with self._lock:
            self._stop()
            self._spare_drop(wait=2)  # the spare's init ends a moment after its socket

    def fork(self, state_dir: Path) -> Creator:
        """Take the spare C (one is made now if there is none, or it died): its pid, a
        pidfd, its control socket, the cgroup-ready pipe, its id block and its cgroups."""
        with self._lock:
            for _attempt in (1, 2):
                self._ensure(state_dir)
                if self._spare_alive() is None:
                    with contextlib.suppress(OSError):  # a dead zygote fails the ask
                        self._ask(None)
                spare, self._spare = self._spare, None
                if spare is not None:
                    return spare
                if self._failed:
                    raise ZygoteError(self._failed)
                self._stop()  # it died: a fresh one gets the second attempt
        raise ZygoteError("the zygote that forks sandboxes keeps dying")

    def refill(self, cgroups: SpareCgroups) -> None:
        """Ask for the next spare, once the sandbox that took the last one is up: forked
        while it is set up, it would compete with it for the CPU. `cgroups` names the
        spare's cgroups (one new one per hierarchy, their last name the spare's) for the
        zygote to make and the spare to be born in, so that no migration is left on the
        path of the learner's start, and makes them ready for a take once C is in them.

        The asking is done by a thread of ours, so that the sandbox is returned at once:
        borrowing an id block and naming the cgroups took 0.4-1.5 ms here, on the path of the
        learner's first command. A take that comes first waits for it (the lock)."""
        self._refiller.submit(self._refill, cgroups)

    def _refill(self, cgroups: SpareCgroups) -> None:
        with self._lock:
            if self._channel is not None and self._spare is None:
                with contextlib.suppress(OSError, ids.IdsExhausted):
                    self._ask(cgroups)

    def _ask(self, spare_cgroups: SpareCgroups | None) -> None:
        """Borrow an id block, have the zygote fork a spare mapped to it, and hold that
        spare (or why it could not be made). The zygote answers once C is mapped, a
        millisecond or two: the init goes on making itself ready on its own time."""
        assert self._channel is not None and self._state_dir is not None
        name = f"{SPARE_PREFIX}{os.getpid()}-{next(self._seq)}"
        base = ids.ids_borrow(self._state_dir, ids.spare_owner(name))
        cgroups = spare_cgroups.paths(name) if spare_cgroups else None
        message = b"spare %d" % base
        if cgroups:
            message += b" " + b" ".join(os.fsencode(path) for path in cgroups)
        fds: list[int] = []
        try:
            self._channel.send(message)
            reply, fds = sc.recv_fds(self._channel, 4096, 3)
        except OSError:
            reply = b""
        if reply.startswith(b"forked ") and len(fds) == 3:
            pidfd, control, cgroup_ready = fds
            pid = int(reply.split()[1])
            prepared = None
            if spare_cgroups is not None and cgroups:
                prepared = spare_cgroups.prepare(name, base, pid)
            self._spare = Creator(
                pid,
                pidfd,
                socket.socket(fileno=control),
                cgroup_ready,
                name,
                base,
                cgroups,
                prepared,
            )
            self._failed = ""
            return
        for fd in fds:
            os.close(fd)
        self._give_back(name, base, cgroups)
        if not reply:
            # Gone, or too slow: a late answer must never be read as the next one's.
            self._stop()
            raise OSError("the zygote that forks sandboxes did not answer")
        self._failed = reply.removeprefix(b"error ").decode(errors="replace")

    def _spare_alive(self) -> Creator | None:
        """The spare held, unless its creator has ended (killed, or its init failed):
        that one is dropped."""
        if self._spare is not None:
            ended = select.poll()  # a pidfd is readable once its process has ended
            ended.register(self._spare.pidfd, select.POLLIN)
            if ended.poll(0):
                # Rare: its init ends a moment after its socket closes, and then its
                # cgroups can go, rather than be left to reconcile.
                self._spare_drop(wait=1)
        return self._spare

    def _spare_drop(self, wait: float = 0) -> None:
        spare, self._spare = self._spare, None
        if spare is None:
            return
        spare.control.close()  # its init exits, then its creator
        os.close(spare.pidfd)
        os.close(spare.cgroup_ready)
        self._give_back(spare.spare, spare.uid_base, spare.cgroups, wait)

    def _give_back(
        self, spare: str, uid_base: int, cgroups: list[Path] | None, wait: float = 0
    ) -> None:
        """What a spare that no sandbox took held: its cgroups and its id block."""
        _cgroups_remove(cgroups or [], wait)
        if self._state_dir is not None:
            ids.release_ids(self._state_dir, uid_base, ids.spare_owner(spare))

    def _ensure(self, state_dir: Path) -> None:
        if (
            self._channel is not None
            and self._process
            and self._process.poll() is None
            and state_dir == self._state_dir
        ):
            return
        self._stop()
        self._spare_drop(wait=2)
        self._state_dir = state_dir
        if self._owner is None:
            # A one-off sandbox (`manage.py sandbox run`) leaves no spare cgroup behind.
            self._owner = os.getpid()
            atexit.register(self._at_exit)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        boot = (
            f"import sys; sys.path.insert(0, {str(_PROJECT_ROOT)!r}); "
            f"from sandboxapp.runtime.zygote import serve; serve({theirs.fileno()})"
        )
        with theirs:
            # -I: no PYTHON* variables, no user site, nothing from the current directory.
            # A bare environment: the daemon's holds the site's secrets (SECRET_KEY, the
            # database URL), and every sandbox init is a copy of the zygote's memory.
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-c", boot],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env={name: os.environ[name] for name in _ZYGOTE_ENV if name in os.environ},
            )
        ours.settimeout(30)
        self._channel = ours
        try:
            hello = ours.recv(16)  # once its imports are done
        except OSError:
            hello = b""
        if hello != b"ready":
            self._stop()
            raise ZygoteError("the zygote that forks sandboxes did not start")
        try:
            self._ask(None)  # the first spare, while nobody waits for it
        except (OSError, ids.IdsExhausted) as exc:
            self._stop()
            raise ZygoteError(f"could not ask for a spare sandbox: {exc}") from exc

    def _stop(self) -> None:
        if self._channel is not None:
            self._channel.close()  # the zygote exits when it reads the end
            self._channel = None
        if self._process is not None:
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None


def _cgroups_remove(inner: list[Path], wait: float = 0) -> None:
    """Remove spare cgroups (each an inner one and its parent). One still in use is left
    at once, or after `wait` seconds, in its last half second with its processes killed.
    Never fails: what is left is logged with who holds it, and reconcile removes it once
    this process is gone."""
    deadline = time.monotonic() + wait
    for path in inner:
        for level in (path, path.parent):
            if not _rmdir_until(level, path, deadline):
                log.warning(
                    "spare cgroup %s is still in use after %.1f s (%s): left for reconcile",
                    level,
                    wait,
                    _held_by(level),
                )
                break  # its parent cannot go either


def _rmdir_until(level: Path, inner: Path, deadline: float) -> bool:
    while not _rmdir(level):
        if time.monotonic() >= deadline:
            return False
        if deadline - time.monotonic() < 0.5:
            _kill_all(inner)
        time.sleep(0.01)
    return True


def _rmdir(cgroup: Path) -> bool:
    """Remove a cgroup; False while something is still in it."""
    try:
        os.rmdir(cgroup)
    except OSError as exc:
        return exc.errno not in (errno.EBUSY, errno.ENOTEMPTY)
    return True


def _held_by(cgroup: Path) -> str:
    """Who is still in a cgroup, and what each is doing, for the log."""
    held = []
    for procs in cgroup.glob("**/cgroup.procs"):
        with contextlib.suppress(OSError):
            for pid in procs.read_text().split():
                with contextlib.suppress(OSError):
                    stat = Path(f"/proc/{pid}/stat").read_text()
                    state = stat[stat.rindex(")") + 2]  # the name may hold spaces
                    wchan = Path(f"/proc/{pid}/wchan").read_text()
                    held.append(f"{pid} {state} in {wchan or '-'}")
    return ", ".join(held) or "no process: a child cgroup, or one still exiting"


def _kill_all(cgroup: Path) -> None:
    with contextlib.suppress(OSError):
        for pid in (cgroup / "cgroup.procs").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


_ZYGOTE = Zygote()


def zygote_start(state_dir: Path) -> None:
    """Start this process's zygote now rather than at the first sandbox (daemons)."""
    _ZYGOTE.start(state_dir)


def zygote_stop() -> None:
    """End this process's zygote (it also ends by itself when this process dies)."""
    _ZYGOTE.stop()


def zygote_fork(state_dir: Path) -> Creator:
    return _ZYGOTE.fork(state_dir)


def zygote_refill(cgroups: SpareCgroups) -> None:
    _ZYGOTE.refill(cgroups)


def spare_cgroups_remove(inner: list[Path], wait: float = 0) -> None:
    """Remove a spare's cgroups its init has left (moved into a sandbox's elsewhere)."""
    _cgroups_remove(inner, wait)


def serve(fd: int) -> None:
    """The zygote's side: fork a spare C when asked for one and hand it over at once,
    until the parent closes the channel."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    channel = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the parent to handle
    # Each C is reaped as soon as it ends: until then it still counts as in its cgroups,
    # which a take that could not rename them removes once C has gone. (Reaped only when
    # the next message came, or a second later, C kept them for that long.) The signal
    # only wakes the loop below, which reaps: never in the middle of forking a spare.
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    ready = select.poll()
    ready.register(channel, select.POLLIN)
    ready.register(wake_r, select.POLLIN)
    setproctitle.setproctitle(TITLE)
    security.seccomp_program()  # compiled once, here, for every spare
    # What is imported now is shared with every fork: keep the collector off those pages.
    gc.freeze()
    gc.disable()
    channel.send(b"ready")
    while True:
        events = dict(ready.poll())
        if wake_r in events:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
            _reap_finished()
        if channel.fileno() not in events:
            continue
        try:
            message = channel.recv(4096)
        except OSError:
            message = b""
        if not message:
            os._exit(0)
        if not message.startswith(b"spare "):
            continue
        _, base, *cgroups = message.split()
        try:
            pid, fds = _spare(int(base), [Path(os.fsdecode(p)) for p in cgroups])
        except OSError as exc:  # out of pids or memory for now: the parent says so
            channel.send(b"error " + str(exc).encode(errors="replace")[:4000])
            continue
        try:
            socket.send_fds(channel, [b"forked %d" % pid], fds)
        except OSError:
            pass  # the parent is gone: so is the spare, its fds closed below
        finally:
            for handed in fds:
                os.close(handed)


def _spare(uid_base: int, cgroups: list[Path]) -> tuple[int, list[int]]:
    """Fork C ahead of need, in `cgroups` if it can make them, and map its user namespace
    to the block at `uid_base` as soon as C has made it; return C's pid and the three fds
    for the parent."""
    procs = _cgroups_make(cgroups)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ready_r, ready_w = os.pipe()
    unshared_r, unshared_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    try:
        pid = sc.fork_single_threaded()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            os.close(unshared_r)
            os.close(mapped_w)
            child.run_c(theirs, ready_r, procs, child.OuterMap(unshared_w, mapped_r))
        pidfd = os.pidfd_open(pid)
        os.close(unshared_w)
        os.close(mapped_r)
        unshared_w = mapped_r = -1
        if os.read(unshared_r, 1) == b"u":
            _map(pid, uid_base)
            os.write(mapped_w, b"m")
    except BaseException:
        ours.close()
        os.close(ready_w)
        raise
    finally:
        theirs.close()
        for fd in (ready_r, unshared_r, unshared_w, mapped_r, mapped_w, *procs):
            if fd >= 0:
                os.close(fd)
    return pid, [pidfd, ours.detach(), ready_w]


def _map(pid: int, uid_base: int) -> None:
    """Root of C's user namespace is `uid_base` on the host, and so on for the block.
    C, once gone past its unshare, may have failed and exited: it then says why to
    whoever takes it, and nothing was mapped."""
    with contextlib.suppress(OSError):
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{pid}/{name}", "w") as f:
                f.write(f"0 {uid_base} {ID_BLOCK}\n")


def _cgroups_make(cgroups: list[Path]) -> list[int]:
    """Make each cgroup and open its cgroup.procs, for C to join; none if one fails (the
    parent then moves the init itself, as it must for a spare forked without)."""
    procs: list[int] = []
    try:
        for path in cgroups:
            path.mkdir(parents=True)
            procs.append(os.open(path / "cgroup.procs", os.O_WRONLY | os.O_CLOEXEC))
    except OSError:
        for fd in procs:
            os.close(fd)
        return []
    return procs


def _reap_finished() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

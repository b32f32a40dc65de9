"""The zygote: a small, freshly started process that forks every sandbox.

Forking costs a Python process in proportion to what it has touched: its page tables,
then a copy-on-write fault for each page either side writes afterwards, which every
reference count does. sandboxd or a test runner hold 40-100 MB; forked from them, each
sandbox's creator, its init and every process that init forks would pay for all of it
(about 3-4 ms a fork here). The zygote imports only the child side (child.py and what it
needs), so forks from it cost a fraction, and a sandbox's init carries none of the
parent's memory, secrets included.

Its channel is a private SOCK_SEQPACKET pair inherited at start, never a named socket,
so only the process that started it can ask it for anything. A request is a pickled
`ChildPlan` (both ends are this program, as root) with two fds: the child's end of the
sandbox's control socket and the cgroup-ready pipe. The zygote forks C
(`child.run_c`) and answers with C's pid and a pidfd for it.

The zygote is not a child subreaper: when C exits, the sandbox's init is re-parented to
the process that started the zygote (sandbox.py makes it one), which reaps it, as if it
had forked C itself. The zygote reaps C, after opening its pidfd, so that pid cannot be
reused while the parent may still signal it.
"""

from __future__ import annotations

import gc
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import setproctitle

from . import child
from . import syscalls as sc

TITLE = "zygote [contained]"
MAX_REQUEST = 1 << 20
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
# What the zygote keeps of the daemon's environment: enough to run and to log.
_ZYGOTE_ENV = ("PATH", "LANG", "LC_ALL", "TZ", "CONTAINED_DEBUG_CHILD")


class ZygoteError(RuntimeError):
    pass


class Zygote:
    """The parent's handle: start on first use, restart if it died, one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def stop(self) -> None:
        with self._lock:
            self._stop()

    def fork(self, plan: child.ChildPlan, fds: list[int]) -> tuple[int, int]:
        """Fork C from the zygote with `fds`; return C's pid and a pidfd for it."""
        request = pickle.dumps(plan)
        with self._lock:
            for _attempt in (1, 2):
                channel = self._ensure()
                try:
                    socket.send_fds(channel, [request], fds)
                    reply, pidfds, _, _ = socket.recv_fds(channel, 256, 1)
                except OSError:
                    reply, pidfds = b"", []
                if reply.startswith(b"forked ") and pidfds:
                    return int(reply.split()[1]), pidfds[0]
                for fd in pidfds:
                    os.close(fd)
                if reply.startswith(b"error "):
                    raise ZygoteError(reply[6:].decode(errors="replace"))
                self._stop()  # it died: a fresh one gets the second attempt
        raise ZygoteError("the zygote that forks sandboxes keeps dying")

    def _ensure(self) -> socket.socket:
        if self._channel is not None and self._process and self._process.poll() is None:
            return self._channel
        self._stop()
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
        return ours

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


_ZYGOTE = Zygote()


def zygote_start() -> None:
    """Start this process's zygote now rather than at the first sandbox (daemons)."""
    _ZYGOTE.start()


def zygote_stop() -> None:
    """End this process's zygote (it also ends by itself when this process dies)."""
    _ZYGOTE.stop()


def zygote_fork(plan: child.ChildPlan, fds: list[int]) -> tuple[int, int]:
    return _ZYGOTE.fork(plan, fds)


def serve(fd: int) -> None:
    """The zygote's side: fork C for each request until the parent closes the channel."""
    sc.prctl(sc.PR_SET_PDEATHSIG, signal.SIGKILL)
    channel = socket.socket(fileno=fd)
    channel.settimeout(1.0)  # wake up now and then to reap the creators that ended
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is for the parent to handle
    setproctitle.setproctitle(TITLE)
    # What is imported now is shared with every fork: keep the collector off those pages.
    gc.freeze()
    gc.disable()
    channel.send(b"ready")
    while True:
        _reap_finished()
        try:
            message, fds, _, _ = socket.recv_fds(channel, MAX_REQUEST, 2)
        except TimeoutError:
            continue
        except OSError:
            message, fds = b"", []
        if not message:
            os._exit(0)
        try:
            plan = pickle.loads(message)
            child_sock, cgroup_ready = fds
            pid = sc.fork_single_threaded()
            if pid == 0:
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                child.run_c(plan, socket.socket(fileno=child_sock), cgroup_ready)
            pidfd = os.pidfd_open(pid)
            try:
                socket.send_fds(channel, [b"forked %d" % pid], [pidfd])
            finally:
                os.close(pidfd)
        except Exception as exc:  # noqa: BLE001 - a bad request must not end the zygote
            channel.send(b"error " + str(exc).encode(errors="replace")[:4000])
        finally:
            for received in fds:
                os.close(received)


def _reap_finished() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return

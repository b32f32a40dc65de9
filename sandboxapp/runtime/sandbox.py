"""A sandbox's lifecycle, parent side: create, exec, spawn on a terminal, destroy.

The child side of each step is in child.py. The parent is host root; it writes the
sandbox's id map, makes the idmapped image layers, owns the cgroup and the control socket
whose closing ends the sandbox.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pickle
import select
import shutil
import signal
import socket
import stat
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import child, ids, image, network, rootfs, volumes, zygote
from . import syscalls as sc
from .cgroups import CgroupBackend, CgroupError, SandboxCgroup, detect
from .runstate import run_dir
from .spec import Limits, SandboxSpec

DEFAULT_STATE_DIR = Path("/var/lib/contained")
# The two users of the default image: uid and home.
USERS = {"root": (0, "/root"), "learner": (1000, "/home/learner")}
DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SHELL": "/bin/bash",
    "TERM": "xterm-256color",
    "LANG": "C.UTF-8",
}
HOSTS = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{name}\n"


class SandboxError(RuntimeError):
    """Creating or using a sandbox failed; the message is fit for a user."""


class HostFull(SandboxError):
    pass


@dataclass(frozen=True)
class RuntimeConfig:
    state_dir: Path = DEFAULT_STATE_DIR
    # Relative to each cgroup hierarchy's root. Tests point it under a guard cgroup.
    cgroup_parent: str = "contained"
    max_sandboxes: int = 300


_BACKEND: CgroupBackend | None = None


def cgroup_backend() -> CgroupBackend:
    global _BACKEND
    if _BACKEND is None:
        _BACKEND = detect()
    return _BACKEND


@dataclass
class SandboxState:
    """What is on disk about a running sandbox: enough for reconcile after a crash."""

    name: str
    learner: str | None
    volume: str | None
    uid_base: int
    init_pid: int
    init_start_time: int
    owner_pid: int
    owner_start_time: int
    cgroup_parent: str
    created_at: float


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: with the pid, it names one process for good. (Read
    with one `read`: through `Path.read_text` it took three times as long, on the path of
    every start.)"""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        return None
    try:
        stat = os.read(fd, 4096)
    except ProcessLookupError:  # it ended between the open and the read
        return None
    finally:
        os.close(fd)
    return int(stat.rsplit(b")", 1)[1].split()[19])


def rundir_of(config: RuntimeConfig, name: str) -> Path:
    return run_dir(config.state_dir) / "sandboxes" / name


def state_read(config: RuntimeConfig, name: str) -> SandboxState | None:
    try:
        recorded = json.loads((rundir_of(config, name) / "state.json").read_text())
        # Fields an older version wrote and this one dropped do not make a sandbox unknown.
        return SandboxState(**{f.name: recorded[f.name] for f in fields(SandboxState)})
    except (FileNotFoundError, ValueError, TypeError, KeyError):
        return None


@dataclass
class Sandbox:
    spec: SandboxSpec
    config: RuntimeConfig
    # The first host uid (and gid) of the block it runs as: its root is this outside.
    uid_base: int
    init_pid: int
    pidfd: int
    # Our end of the init's control socket; closing it (or dying) ends the sandbox.
    control: socket.socket
    cgroup: SandboxCgroup
    volume_lock: int | None
    startup_ms: float
    destroyed: bool = field(default=False)
    # The process sandbox_create was asked to start as soon as the sandbox was up, until
    # its caller takes it.
    first: Process | None = field(default=None)

    @property
    def name(self) -> str:
        return self.spec.name

    def status(self) -> dict[str, object]:
        """Machine-readable: init pid on the host and the sandbox's namespace ids."""
        namespaces = {}
        for ns in ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup"):
            try:
                st = os.stat(f"/proc/{self.init_pid}/ns/{ns}")
                namespaces[ns] = st.st_ino
            except FileNotFoundError:
                namespaces[ns] = None
        return {
            "name": self.name,
            "learner": self.spec.learner,
            "init_pid": self.init_pid,
            "uid_base": self.uid_base,
            "startup_ms": round(self.startup_ms, 3),
            "namespaces": namespaces,
            "alive": self.alive(),
        }

    def alive(self) -> bool:
        try:
            sc.pidfd_send_signal(self.pidfd, 0)
        except OSError:
            return False
        return True

    def spawn(
        self,
        argv: list[str],
        *,
        terminal: tuple[int, int] | None = None,
        stdio: tuple[int, int, int] | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        user: str = "root",
    ) -> Process:
        """Start argv in the sandbox as its root (or `learner`, uid 1000).

        The sandbox's init starts it, so it starts inside every namespace and the cgroup.
        With `terminal` (rows, cols), the init opens a new terminal of that size on the
        sandbox's own devpts (the learner sees /dev/pts/N), makes it the process's
        controlling terminal, and passes its master back: `Process.terminal`, ours to
        close. We never resolve a path of the sandbox's.
        """
        if self.destroyed:
            raise SandboxError(f"sandbox {self.name} was destroyed")
        options = _SpawnOptions(terminal, stdio, env, cwd, user)
        channel = _spawn_send(self.control, self.name, argv, options)
        process = Process(self, channel)
        process.started(argv[0])
        return process

    def run(
        self,
        argv: list[str],
        timeout: float = 30.0,
        max_output: int | None = None,
        **kwargs: object,
    ) -> tuple[int, bytes]:
        """Run argv to completion with its output captured (lesson setup, probes, tests).

        With `max_output`, output past that many bytes is read and dropped: a program in
        the learner's sandbox cannot make its caller hold more."""
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            proc = self.spawn(argv, stdio=(null, out_w, out_w), **kwargs)  # type: ignore[arg-type]
        except BaseException:
            os.close(out_r)
            raise
        finally:
            os.close(out_w)
            os.close(null)
        deadline = time.monotonic() + timeout
        try:
            output = _read_all(out_r, timeout=timeout, limit=max_output)
            return proc.wait(timeout=max(0.0, deadline - time.monotonic())), output
        except TimeoutError:
            proc.kill()
            raise

    def destroy(self) -> None:
        """Kill everything, unmount, remove cgroups and state: nothing is left behind."""
        if self.destroyed:
            return
        self.destroyed = True
        if self.first is not None:  # never taken
            self.first.channel.close()
            if self.first.terminal is not None:
                os.close(self.first.terminal)
        try:
            with contextlib.suppress(OSError):
                sc.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            # Killing pid 1 kills its whole pid namespace; its exit comes once all are gone.
            if _readable(self.pidfd, 10):
                _reap(self.init_pid)
            self.cgroup.destroy()  # and any survivor with it
        finally:
            os.close(self.pidfd)
            self.control.close()
            _cleanup(
                self.config,
                self.spec.name,
                self.spec.volume,
                self.uid_base,
                self.volume_lock,
            )

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *_: object) -> None:
        self.destroy()


@dataclass(frozen=True)
class FirstProcess:
    """A sandbox's first process, asked for with it (`sandbox_create`): on a new terminal
    of `terminal` (rows, cols), or with `stdio`."""

    argv: list[str]
    terminal: tuple[int, int] | None = None
    stdio: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class _SpawnOptions:
    """Sandbox.spawn's options, as its init's request is made from them."""

    terminal: tuple[int, int] | None = None
    stdio: tuple[int, int, int] | None = None
    env: dict[str, str] | None = None
    cwd: str | None = None
    user: str = "root"


def _spawn_send(
    control: socket.socket, name: str, argv: list[str], options: _SpawnOptions
) -> socket.socket:
    """Ask the init to start a process (see Sandbox.spawn); return the channel on which
    it will say how that went."""
    if options.user not in USERS:
        raise SandboxError(f"unknown user {options.user!r}: use one of {', '.join(USERS)}")
    uid, home = USERS[options.user]
    identity = {"HOME": home, "USER": options.user, "LOGNAME": options.user}
    terminal = options.terminal
    request = {
        "argv": argv,
        "env": {**DEFAULT_ENV, **identity, **(options.env or {})},
        "cwd": options.cwd or home,
        "uid": uid,
        "terminal": list(terminal) if terminal is not None else None,
    }
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    null = None
    if terminal is not None:
        fds = []
    elif options.stdio is not None:
        fds = list(options.stdio)
    else:
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        fds = [null, null, null]
    try:
        socket.send_fds(control, [json.dumps(request).encode()], [*fds, theirs.fileno()])
    except OSError as exc:
        ours.close()
        raise SandboxError(f"sandbox {name} is not running: {exc}") from exc
    finally:
        theirs.close()
        if null is not None:
            os.close(null)
    return ours


class Process:
    """A process started in a sandbox. `pid` is its pid inside the sandbox; `terminal`,
    the master of the terminal it was started on, if any (the caller closes it)."""

    def __init__(self, sandbox: Sandbox, channel: socket.socket) -> None:
        self.sandbox = sandbox
        self.channel = channel
        self.pid = 0
        self.terminal: int | None = None
        self.returncode: int | None = None

    def started(self, what: str) -> None:
        news, fds, gone = b"", [], "the sandbox is gone"
        if _readable(self.channel.fileno(), 30):
            with contextlib.suppress(OSError):
                news, fds = sc.recv_fds(self.channel, 8192, 1)
        else:
            gone = "its init did not answer within 30 s"
        if news.startswith(b"started "):
            self.pid = int(news.split()[1])
            self.terminal = fds[0] if fds else None
            return
        for fd in fds:
            os.close(fd)
        self.channel.close()
        detail = news.removeprefix(b"error ").decode(errors="replace") or gone
        raise SandboxError(f"could not start {what!r} in {self.sandbox.name}: {detail}")

    def _next(self, timeout: float | None) -> bytes:
        if not _readable(self.channel.fileno(), timeout):
            raise TimeoutError(f"process {self.pid} still running after {timeout}s")
        try:
            return self.channel.recv(8192)
        except OSError:
            return b""

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            news = self._next(timeout)
            # No news at all: the sandbox was destroyed under it (SIGKILL).
            self.returncode = int(news.split()[1]) if news.startswith(b"exit ") else 137
            self.channel.close()
        return self.returncode

    def kill(self, sig: int = signal.SIGKILL) -> None:
        request = {"op": "kill", "pid": self.pid, "signal": int(sig)}
        self.sandbox.control.send(json.dumps(request).encode())


def _read_all(fd: int, timeout: float | None = None, limit: int | None = None) -> bytes:
    """Read until EOF (or the deadline, for output of a process that hangs on), keeping
    the first `limit` bytes."""
    deadline = None if timeout is None else time.monotonic() + timeout
    chunks = []
    kept = 0
    try:
        while True:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not _readable(fd, remaining):
                    raise TimeoutError(f"no end of output after {timeout}s")
            data = os.read(fd, 65536)
            if not data:
                break
            if limit is not None:
                data = data[: max(0, limit - kept)]
                kept += len(data)
            chunks.append(data)
    finally:
        os.close(fd)
    return b"".join(chunks)


def _readable(fd: int, timeout: float | None) -> bool:
    """Wait for `fd` to be readable. poll, not select: sandboxd holds fds past 1024."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(None if timeout is None else timeout * 1000))


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _cleanup(
    config: RuntimeConfig,
    name: str,
    volume: str | None,
    uid_base: int | None,
    volume_lock: int | None,
) -> None:
    rundir = rundir_of(config, name)
    if volume is not None:
        volumes.volume_release(config.state_dir, volume, volume_lock)
    if uid_base is not None:
        ids.release_ids(config.state_dir, uid_base, ids.borrower(name))
    _rundir_remove(rundir)


def _rundir_remove(rundir: Path) -> None:
    """What sandbox_create made, by name (a tree walk took a millisecond); a walk still
    removes whatever else is there."""
    try:
        (rundir / "state.json").unlink(missing_ok=True)
        rundir.rmdir()
    except OSError:
        shutil.rmtree(rundir, ignore_errors=True)


def sandbox_names(config: RuntimeConfig) -> list[str]:
    """Every sandbox directory on this host: running, starting, or left by a crash."""
    base = rundir_of(config, "")
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


def _sandbox_count(config: RuntimeConfig) -> int:
    """How many sandbox directories there are: counted at every create, so without making
    and sorting a name for each of the few hundred a full host holds."""
    try:
        return len(os.listdir(rundir_of(config, "")))
    except FileNotFoundError:
        return 0


def is_recorded_process(pid: int, start_time: int) -> bool:
    """Whether `pid` is still the process recorded with `start_time` (not a reused pid)."""
    return pid > 0 and process_start_time(pid) == start_time


_USR: dict[Path, Path] = {}


def sandbox_usr(state_dir: Path) -> Path:
    """Looked up (and copied, if need be) once per process: /usr changes only with an image."""
    if state_dir not in _USR:
        state_dir_check(state_dir)
        _USR[state_dir] = image.usr_ensure(state_dir)
    return _USR[state_dir]


def state_dir_check(state_dir: Path) -> None:
    """A sandbox's root is an unprivileged user on this host, and its mounts are made on its
    behalf through paths under `state_dir`: a directory above it that lets only its owner
    through (a state directory under /root, or a 0700 temporary directory) would fail every
    sandbox with a bare EACCES from the kernel. Said once, and plainly, instead."""
    resolved = state_dir.resolve()  # a symlink into /root is still under /root
    for directory in [resolved, *resolved.parents]:
        try:
            mode = directory.stat().st_mode
        except FileNotFoundError:
            continue  # made later, 0755
        if not mode & stat.S_IXOTH:
            raise SandboxError(
                f"sandboxes cannot reach their files under {state_dir}: {directory} "
                f"(mode {stat.S_IMODE(mode):04o}) lets no other user through, and a "
                f"sandbox's root is an unprivileged user on this host. Run "
                f"`chmod o+x {directory}`, or keep the state directory elsewhere."
            )


def sandbox_create(
    spec: SandboxSpec,
    config: RuntimeConfig | None = None,
    *,
    first: FirstProcess | None = None,
) -> Sandbox:
    """Build a sandbox from its spec and return it running (its init waiting).

    `first`: a process to start as soon as the sandbox is up (a learner's shell, the
    command of `sandbox run`), as `Sandbox.first`. Asked for before the init is ready, it
    starts while we finish ours, rather than after a round trip.
    """
    config = config or RuntimeConfig()
    spec.validate()
    if _sandbox_count(config) >= config.max_sandboxes:
        raise HostFull(
            f"this host is running its maximum of {config.max_sandboxes} sandboxes; "
            "try again in a minute"
        )
    usr_path = sandbox_usr(config.state_dir)  # first: it checks the state directory
    image_path = image.image_ensure(config.state_dir, spec.image)
    rundir = rundir_of(config, spec.name)
    try:
        rundir.mkdir(parents=True)
    except FileExistsError:
        raise SandboxError(f"a sandbox named {spec.name!r} already exists") from None
    volume_lock = None
    cgroup = SandboxCgroup(cgroup_backend(), config.cgroup_parent, spec.name)
    try:
        volume_path = None
        if spec.volume is not None:
            volume_path, volume_lock = volumes.volume_acquire(
                config.state_dir, spec.volume, spec.limits.disk_bytes
            )
        layout = rootfs.Layout(volume_path is not None, spec.limits.disk_bytes)
        plan = child.ChildPlan(
            hostname=spec.effective_hostname,
            root_ops=rootfs.plan_root(layout, _etc_files(spec.effective_hostname)),
            inner_ops=rootfs.plan_inner(_cgroup_mounts(cgroup_backend())),
            layers=("image", "usr", "volume") if volume_path else ("image", "usr"),
        )
        layers = {"image": image_path, "usr": usr_path}
        if volume_path is not None:
            layers["volume"] = Path(volume_path)
        sandbox = _start(spec, config, plan, layers, cgroup, volume_lock, first)
    except BaseException:
        cgroup.destroy()
        _cleanup(config, spec.name, spec.volume, None, volume_lock)
        raise
    if first is not None and sandbox.first is not None:
        try:
            sandbox.first.started(first.argv[0])
        except BaseException:
            sandbox.destroy()
            raise
    return sandbox


def _etc_files(hostname: str) -> dict[str, str]:
    return {"hostname": hostname + "\n", "hosts": HOSTS.format(name=hostname)}


def _cgroup_mounts(backend: CgroupBackend) -> list[tuple[str, str, str | None]]:
    if backend.version == 2:
        return [("", "cgroup2", None)]
    return [
        (",".join(h.controllers), "cgroup", ",".join(h.controllers)) for h in backend.hierarchies
    ]


def _start(
    spec: SandboxSpec,
    config: RuntimeConfig,
    plan: child.ChildPlan,
    layers: dict[str, Path],
    cgroup: SandboxCgroup,
    volume_lock: int | None,
    first: FirstProcess | None,
) -> Sandbox:
    started = time.perf_counter()
    # Each sandbox's init is re-parented to us when its creator exits: we reap it.
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    try:
        creator = zygote.zygote_fork(config.state_dir)
    except zygote.ZygoteError as exc:
        raise SandboxError(f"could not start the sandbox: {exc}") from exc
    except ids.IdsExhausted as exc:
        raise HostFull(f"{exc}: try again in a minute") from None
    # The spare's namespaces are mapped to its id block already: the block is ours now.
    # The learner's layer keeps the ids seen inside, so any block will do.
    uid_base = creator.uid_base
    control = creator.control
    layer_fds: list[int] = []
    userns_fd = -1
    init_pid = 0
    first_channel = None
    try:
        control.settimeout(10)
        init_pid = int(_expect(control, b"init ").split()[1])
        # Every layer is seen through the sandbox's id map: the image and /usr (host
        # root's on disk) appear owned by the sandbox's root, so the learner may change
        # anything in their view (copied up to their layer); the learner's layer keeps
        # the ids as seen inside, so it works with whatever block the sandbox has.
        userns_fd = os.open(f"/proc/{creator.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        for key in plan.layers:
            layer_fds.append(sc.open_tree_clone(str(layers[key])))
            sc.mount_setattr_idmap(
                layer_fds[-1], userns_fd, sc.MOUNT_ATTR_NOSUID | sc.MOUNT_ATTR_NODEV
            )
        socket.send_fds(control, [child.PLAN + pickle.dumps(plan)], layer_fds)
        try:
            # While the init mounts its root: the cgroup it waits for.
            took_over = _cgroup_enter(cgroup, creator, spec.limits, uid_base, init_pid)
        except (OSError, CgroupError) as exc:
            # Never let an init run outside its limits. If it had failed already, its
            # own reason is the better message.
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
            message = control.recv(8192)
            if message.startswith(b"error "):
                _expect_message(message, b"ready ")
            raise SandboxError(f"could not put the sandbox in its cgroup: {exc}") from exc
        with contextlib.suppress(BrokenPipeError):
            # If the init failed already, its reason is waiting to be read below.
            os.write(creator.cgroup_ready, b"c")
        if first is not None:
            # Read by the init once it is ready: the process starts while we finish here.
            options = _SpawnOptions(first.terminal, first.stdio)
            first_channel = _spawn_send(control, spec.name, first.argv, options)
        # The init never waits for this: the block is the sandbox's from here on.
        ids.ids_reown(
            config.state_dir, uid_base, ids.spare_owner(creator.spare), ids.borrower(spec.name)
        )
        # While the init sets itself up: from here a crash of ours leaves a sandbox
        # that reconcile can tell from one still starting.
        _state_write(config, spec, uid_base, init_pid)
        _expect(control, b"ready")
        zygote.zygote_refill(_SpareCgroups(config, spec.limits))
        # The creator exits once the init has its plan, before "ready": from here on
        # the init is our child, for destroy to reap.
        _readable(creator.pidfd, 10)
        if creator.cgroups and not took_over:
            # C was in them until now, and counts until the zygote has reaped it, a moment
            # after it ended: a few milliseconds, not the whole wait.
            zygote.spare_cgroups_remove(creator.cgroups, wait=1)
        cgroup.settle(init_pid, uid_base)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            sc.pidfd_send_signal(creator.pidfd, signal.SIGKILL)
        if init_pid:
            # The init is ours to reap once its creator is gone, and not before.
            _readable(creator.pidfd, 10)
            with contextlib.suppress(ProcessLookupError):
                os.kill(init_pid, signal.SIGKILL)
            _reap(init_pid)
        control.close()
        if first_channel is not None:
            first_channel.close()
        for owner in (ids.borrower(spec.name), ids.spare_owner(creator.spare)):
            ids.release_ids(config.state_dir, uid_base, owner)
        raise
    finally:
        os.close(creator.pidfd)
        os.close(creator.cgroup_ready)
        for fd in [*layer_fds, userns_fd]:
            if fd >= 0:
                os.close(fd)
    pidfd = os.pidfd_open(init_pid)
    startup_ms = (time.perf_counter() - started) * 1000
    control.settimeout(None)
    sandbox = Sandbox(
        spec, config, uid_base, init_pid, pidfd, control, cgroup, volume_lock, startup_ms
    )
    if first_channel is not None:
        sandbox.first = Process(sandbox, first_channel)
    return sandbox


def _cgroup_enter(
    cgroup: SandboxCgroup, creator: zygote.Creator, limits: Limits, uid_base: int, init_pid: int
) -> bool:
    """Put the init in the sandbox's cgroup, under its limits. A spare born in cgroups made
    ready while it waited (v1, see `_SpareCgroups`) has them renamed to the sandbox's, and
    their limits changed if the sandbox's differ; any other init is moved, which waits for
    an RCU grace period (docs/architecture.md). Whether the spare's cgroups were taken."""
    spare = creator.cgroups
    if (
        spare
        and creator.prepared is not None
        and [p.parent.parent for p in spare] == [d.parent for d in cgroup.outer]
    ):
        cgroup.take_over([p.parent for p in spare])
        if creator.prepared != limits:
            cgroup.backend.apply_limits(cgroup.outer, limits)
        return True
    # The spare's were made in the sandboxes' parent cgroup: now it may have to be made.
    cgroup.backend.prepare_parent(cgroup.parent)
    cgroup.create(limits, uid_base)
    cgroup.add(init_pid)
    return False


@dataclass(frozen=True)
class _SpareCgroups:
    """Cgroups for the next spare to be born in, beside the sandboxes' (cgroup v1 only:
    cgroup2 cannot rename them into a sandbox's), made ready for the take while nobody
    waits: delegated to the spare's root (its id block stays the sandbox's), under the
    limits of the sandbox that asked for the spare, which most sandboxes share. On the
    take's path that was 0.7 ms of the cgroups' 1 ms here."""

    config: RuntimeConfig
    limits: Limits

    def paths(self, spare: str) -> list[Path] | None:
        backend = cgroup_backend()
        if backend.version != 1:
            return None
        return SandboxCgroup(backend, self.config.cgroup_parent, spare).inner

    def prepare(self, spare: str, uid_base: int, creator_pid: int) -> Limits | None:
        """Once the zygote has forked C into them: the limits they are now under, or None
        if C is not in them (as the kernel says) or they could not be set up (the take
        then makes the sandbox's cgroups and moves the init, as for a spare without)."""
        cgroup = SandboxCgroup(cgroup_backend(), self.config.cgroup_parent, spare)
        try:
            if not cgroup.holds(creator_pid):
                return None
            cgroup.limit_and_delegate(self.limits, uid_base)
        except (OSError, CgroupError):
            return None
        return self.limits


def _expect(sock: socket.socket, prefix: bytes) -> bytes:
    try:
        message = sock.recv(8192)
    except TimeoutError:
        raise SandboxError("the sandbox did not start within 10 seconds") from None
    except ConnectionResetError:
        message = b""
    return _expect_message(message, prefix)


def _expect_message(message: bytes, prefix: bytes) -> bytes:
    if message.startswith(b"error "):
        raise SandboxError(f"sandbox setup failed at {message[6:].decode(errors='replace')}")
    if not message.startswith(prefix):
        raise SandboxError(f"sandbox setup ended early (expected {prefix.decode().strip()})")
    return message


@functools.lru_cache(maxsize=1)
def _own_start_time(me: int) -> int:
    # Read once per process (a fork has another pid): it never changes.
    return process_start_time(me) or 0


def _state_write(config: RuntimeConfig, spec: SandboxSpec, uid_base: int, init_pid: int) -> None:
    me = os.getpid()
    state = SandboxState(
        name=spec.name,
        learner=spec.learner,
        volume=spec.volume,
        uid_base=uid_base,
        init_pid=init_pid,
        init_start_time=process_start_time(init_pid) or 0,
        owner_pid=me,
        owner_start_time=_own_start_time(me),
        cgroup_parent=config.cgroup_parent,
        created_at=time.time(),
    )
    # Written once, in one write, into the directory this creation made: a reader that
    # came in between would find it half written, which `state_read` takes for "still
    # starting", as it does no file at all. (Through `Path.write_text` and a rename, it
    # was 0.1 ms of every start.)
    path = rundir_of(config, spec.name) / "state.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, json.dumps(asdict(state)).encode())
    finally:
        os.close(fd)


def sandbox_link(a: Sandbox, b: Sandbox, a_end: network.NodeEnd, b_end: network.NodeEnd) -> None:
    """Join two sandboxes of the same learner by a veth pair (the topology lessons)."""
    if a.spec.learner is None or a.spec.learner != b.spec.learner:
        raise SandboxError("only sandboxes of one and the same learner can be linked")
    network.link_nodes(a.init_pid, b.init_pid, a_end, b_end)

"""Fixtures for tests that need real sandboxes or a real sandboxd, as root.

A plugin of the whole suite (tests/conftest.py loads it), so the runtime, web and browser
tests share one guard cgroup and one state directory per run. Every sandbox is created
beneath the guard, which has its own memory and pids limits: a defence that is missing
cannot take the machine down.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandboxapp.runtime import ids
from sandboxapp.runtime import syscalls as sc
from sandboxapp.runtime.cgroups import SPARE_PREFIX, SandboxCgroup, detect
from sandboxapp.runtime.client import (
    Output,
    SandboxdClient,
    SandboxdError,
    Terminal,
    call_sync,
)
from sandboxapp.runtime.daemon import DaemonConfig, daemon_spawn
from sandboxapp.runtime.reconcile import reconcile
from sandboxapp.runtime.sandbox import RuntimeConfig
from sandboxapp.runtime.terminal import FlowLimits
from sandboxapp.runtime.zygote import zygote_stop

REPO = Path(__file__).resolve().parents[1]
GUARD_MEMORY = 6 * 1024**3
GUARD_PIDS = 4096


GUARD_PREFIX = "contained-tests-"
STATE_ROOT = Path("/var/lib/contained-tests")


def guard_make(pid: int) -> tuple[str, list[tuple[Path, str]]]:
    """The guard cgroup of the test session `pid` (limits, a "runner" child), with `pid`
    moved into its runner; returns its name and where `pid` was, to go back to."""
    backend = detect()
    name = f"{GUARD_PREFIX}{pid}"
    original: list[tuple[Path, str]] = []
    if backend.version == 2:
        backend.prepare_parent(f"{name}/sandboxes")
    for h in backend.hierarchies:
        guard_dir = h.mountpoint / name
        guard_dir.mkdir(exist_ok=True)
        original.append((h.mountpoint / _cgroup_of_self(h, backend.version).lstrip("/"), str(pid)))
        limits = {"memory": ("memory.limit_in_bytes", "memory.max"), "pids": ("pids.max",) * 2}
        for controller, files in limits.items():
            if controller in h.controllers:
                (guard_dir / files[backend.version - 1]).write_text(
                    str(GUARD_MEMORY if controller == "memory" else GUARD_PIDS)
                )
        # The runner is a sibling of the sandboxes' parent: reconcile never touches it.
        (guard_dir / "runner").mkdir()
        (guard_dir / "runner" / "cgroup.procs").write_text(str(pid))
    return name, original


def session_config(pid: int) -> RuntimeConfig:
    """The runtime settings of the test session `pid`: its own state and cgroup parent."""
    return RuntimeConfig(
        state_dir=STATE_ROOT / str(pid),
        cgroup_parent=f"{GUARD_PREFIX}{pid}/sandboxes",
        max_sandboxes=50,
    )


def leftovers_remove() -> list[int]:
    """Remove what test sessions killed outright (SIGKILL, a lost terminal) left: their
    sandboxd and zygote, their sandboxes, their guard cgroups and state. Sessions still
    running are left alone. Returns the pids of the sessions cleaned up.

    The sandboxes go through the runtime's own reconcile, as after a crashed sandboxd,
    once the processes that owned them are gone."""
    backend = detect()
    names = [
        p.name[len(GUARD_PREFIX) :]
        for h in backend.hierarchies
        for p in h.mountpoint.glob(f"{GUARD_PREFIX}*")
    ]
    if STATE_ROOT.is_dir():
        names += os.listdir(STATE_ROOT)
    dead = sorted({int(n) for n in names if n.isdigit() and not Path(f"/proc/{n}").exists()})
    for pid in dead:
        guard = SandboxCgroup(backend, "", f"{GUARD_PREFIX}{pid}")
        runners = [g / "runner" for g in guard.outer if (g / "runner").is_dir()]
        if runners:  # the session's sandboxd and zygote, which own its sandboxes
            backend.kill(runners)
        config = session_config(pid)
        if config.state_dir.is_dir():
            reconcile(config)
        # Whatever reconcile left in the guard (a cgroup with no state), then the guard.
        guard.destroy()
        if config.state_dir.is_dir():
            ids.host_claims_release(config.state_dir)
            _unmount_below(config.state_dir)
            shutil.rmtree(config.state_dir)
    return dead


def _unmount_below(path: Path) -> None:
    """Detach whatever is still mounted under `path`, deepest first, so that removing it
    never reaches into a mounted file system."""
    targets = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for target in sorted(
        (t for t in targets if t == str(path) or t.startswith(f"{path}/")), reverse=True
    ):
        with contextlib.suppress(OSError):
            sc.umount2(target, sc.MNT_DETACH)


@pytest.fixture(scope="session")
def guard() -> Iterator[str]:
    """A cgroup around this test process and every sandbox it makes."""
    if os.geteuid() != 0:
        pytest.fail("runtime tests need root: run `make test` as root", pytrace=False)
    try:
        leftovers_remove()
    except (OSError, RuntimeError) as exc:  # theirs, not this session's: say so, go on
        warnings.warn(f"could not remove what a killed test session left: {exc}", stacklevel=1)
    name, original = guard_make(os.getpid())
    try:
        yield name
    finally:
        zygote_stop()  # started in here, it would keep the guard cgroup busy
        for path, pid in original:
            (path / "cgroup.procs").write_text(pid)
        for h in detect().hierarchies:
            for sub, _, _ in os.walk(h.mountpoint / name, topdown=False):
                os.rmdir(sub)


def _cgroup_of_self(hierarchy, version: int) -> str:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        number, names, path = line.split(":", 2)
        if version == 2 and number == "0":
            return path
        if version == 1 and set(hierarchy.controllers) & set(names.split(",")):
            return path
    return "/"


def spare_cgroup_dirs(config: RuntimeConfig) -> list[Path]:
    """The spare sandboxes' cgroups under the sandboxes' parent, in every hierarchy (v1)."""
    return sorted(
        path
        for h in detect().hierarchies
        for path in (h.mountpoint / config.cgroup_parent).glob(f"{SPARE_PREFIX}*")
    )


@pytest.fixture(scope="session")
def config(guard: str) -> Iterator[RuntimeConfig]:
    # Not under /tmp/pytest-of-root (mode 0700): each sandbox's unprivileged root must
    # be able to reach its layers.
    # A parent of their own (`guard`/sandboxes): reconcile removes every cgroup under it
    # that is not a live sandbox, and this test process lives in the guard's "runner".
    session = session_config(os.getpid())
    state = session.state_dir
    state.mkdir(parents=True, mode=0o711)
    os.chmod(state.parent, 0o711)
    try:
        yield session
    finally:
        # The spare gives its id block back (here and on the host) while the state is here.
        zygote_stop()
        # Whatever a failed test left (a mounted layer, a cgroup) goes before its files,
        # then the runtime's tmpfs and any state directory a test made inside.
        reconcile(session)
        ids.host_claims_release(state)  # a sandbox's block reconcile spares (too young)
        _unmount_below(state)
        shutil.rmtree(state, ignore_errors=True)


class RunningDaemon:
    """A real sandboxd process with this session's runtime settings."""

    def __init__(self, config: DaemonConfig, log: Path) -> None:
        self.config = config
        self.log = log
        self.client = SandboxdClient(config.socket_path)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "a") as log:
            try:
                self.process = daemon_spawn(self.config, stdout=log, stderr=log)
            except SandboxdError as exc:
                pytest.fail(f"{exc}:\n{self.log.read_text()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def call(self, op: str, **params: object) -> dict:
        return call_sync(self.config.socket_path, op, reply_timeout=30, **params)


@pytest.fixture
def start_sandboxd(config: RuntimeConfig, tmp_path: Path) -> Iterator:
    """start_sandboxd(**DaemonConfig overrides) -> RunningDaemon, stopped after the test."""
    running: list[RunningDaemon] = []
    # Under /run, not the 0700 pytest directory: one test connects as another user.
    socket_dir = Path(tempfile.mkdtemp(prefix="sandboxd-test-", dir="/run"))
    socket_dir.chmod(0o755)

    def start(**overrides: object) -> RunningDaemon:
        settings = {
            "socket_path": socket_dir / "sock" / "sandboxd.sock",
            "runtime": config,
            "flow": FlowLimits(ring=64 * 1024, high=16 * 1024, low=4 * 1024),
            **overrides,
        }
        daemon = RunningDaemon(DaemonConfig(**settings), tmp_path / "sandboxd.log")  # type: ignore[arg-type]
        daemon.start()
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        daemon.stop()
    shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture
def sandboxd(start_sandboxd, settings) -> RunningDaemon:
    """A real sandboxd that the web tier of this test talks to."""
    daemon = start_sandboxd()
    settings.SANDBOXD_SOCKET = daemon.config.socket_path
    return daemon


class Screen:
    """What one attached client has drawn, read in the background; acks as it draws
    unless told not to (`ack=False`), or, with `ack="sparse"`, as a page does: once the
    attach reply's `ack_every` bytes are drawn since its last ack."""

    def __init__(self, terminal: Terminal, ack: bool | str = True) -> None:
        self.terminal = terminal
        self.ack = ack
        self.every = int(terminal.info["ack_every"]) if ack == "sparse" else 0
        self.start = self.acked = int(terminal.info["offset"])
        self.data = bytearray()
        self.events: list[dict] = []
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    @property
    def end(self) -> int:
        return self.start + len(self.data)

    async def _read(self) -> None:
        try:
            while (item := await self.terminal.receive()) is not None:
                if isinstance(item, Output):
                    if item.offset != self.end:
                        # A resync: the daemon skipped what fell out of its ring.
                        self.data += b"<resync>"
                        self.start = item.offset - len(self.data)
                    self.data += item.data
                    if self.ack and item.end - self.acked >= self.every:
                        self.acked = item.end
                        await self.terminal.ack(item.end)
                else:
                    self.events.append(item.message)
                self._changed.set()
        except SandboxdError:
            pass
        finally:
            self.closed.set()
            self._changed.set()

    async def type(self, text: str | bytes) -> None:
        await self.terminal.send_input(text.encode() if isinstance(text, str) else text)

    async def expect(self, pattern: bytes, since: int = 0, timeout: float = 20) -> int:
        """Wait until `pattern` is drawn after offset `since`; return the offset after it."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            index = self.data.find(pattern, max(0, since - self.start))
            if index >= 0:
                return self.start + index + len(pattern)
            if self.closed.is_set():
                raise AssertionError(f"closed before {pattern!r}; saw {bytes(self.data[-500:])!r}")
            self._changed.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(
                    f"no {pattern!r} in {timeout} s; saw {bytes(self.data[-500:])!r}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def event(self, name: str, timeout: float = 20) -> dict:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            for event in self.events:
                if event.get("event") == name:
                    return event
            remaining = deadline - asyncio.get_running_loop().time()
            if self.closed.is_set() or remaining <= 0:
                raise AssertionError(f"no {name!r} event; events: {self.events}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def close(self) -> None:
        await self.terminal.close()
        await self.closed.wait()


@pytest.fixture
def screen():
    """screen(terminal, ack=True): a Screen reading that attached terminal."""
    return Screen

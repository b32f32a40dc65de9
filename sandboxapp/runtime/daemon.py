"""sandboxd: the one privileged process. It owns every sandbox and every terminal.

Callers (the web tier) connect to a Unix socket; each is checked by SO_PEERCRED against an
allowlist, and every request is validated before it touches anything. The protocol is in
docs/sandboxd-protocol.md. Runtime work that blocks (creating, destroying, exec) runs in
worker threads so that no terminal waits for another learner's sandbox to start.

Run by ``manage.py sandboxd``, which execs ``python -m sandboxapp.runtime.daemon`` so the
daemon, and every sandbox init forked from it, carries no Django.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import fcntl
import gc
import json
import logging
import os
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import uvloop

from . import network, recordings, volumes, wire
from .checks import CheckError, check_problems, check_run
from .client import SandboxdError, Unavailable, call_sync
from .image import image_ensure
from .pacing import Pacer
from .probes import PROBES
from .reconcile import reconcile
from .sandbox import (
    USERS,
    FirstProcess,
    RuntimeConfig,
    Sandbox,
    SandboxError,
    sandbox_create,
    sandbox_link,
    sandbox_usr,
)
from .spec import Limits, SandboxSpec, SpecError
from .terminal import Client, FlowLimits, Recorder, TerminalSession
from .volumes import VolumeError
from .wire import Refused
from .zygote import zygote_start, zygote_stop

log = logging.getLogger("contained.sandboxd")
# Refusals an operator should see in the log: the host or a learner at a limit.
ADMISSION_REFUSALS = {"host_full", "learner_limit", "rate_limited"}

PROTOCOL_VERSION = 1
# Learner ids never hold "--", so "<learner>--<node>" names one sandbox unambiguously.
LEARNER_RE = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
LEARNER_MAX = 40
NODE_RE = re.compile(r"[a-z][a-z0-9]{0,11}")
FIRST_FRAME_TIMEOUT = 10.0
DETACHED_GRACE = 10.0
# How long a connection's last reply waits for the client to read it before it is closed.
FINAL_DRAIN_TIMEOUT = 5.0
EXEC_TIMEOUT_MAX = 300.0
EXEC_OUTPUT_MAX = 1024 * 1024
EXEC_ARGS_MAX = 64
SHELL = ["/bin/bash", "--login"]
# Of the spare layers, how many are kept mounted, so that a new learner's is attached in one
# call (2 ms sooner). Each holds a loop device and a journal thread while it waits.
SPARES_MOUNTED_AHEAD = 2
NOTICE = "\r\n\x1b[33m[contained] {}\x1b[0m\r\n"


def _socket_dir_claim(path: Path) -> None:
    """The socket's directory becomes sandboxd's own, closed to all but the web tier. One that
    holds anything else (`/tmp`, `/run`) is refused rather than closed: others use it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Ours: the socket, and the temporary name it is bound under (`.sandboxd.sock.PID`).
    ours = re.compile(rf"\.?{re.escape(path.name)}(\.\d+)?")
    others = sorted(p.name for p in path.parent.iterdir() if not ours.fullmatch(p.name))
    if others:
        raise SystemExit(
            f"sandboxd: {path.parent} also holds {', '.join(others[:3])}"
            f"{' ...' if len(others) > 3 else ''}; SANDBOXD_SOCKET must be in a directory of"
            " its own (sandboxd closes it to all but the web tier), e.g."
            f" {path.parent / 'contained' / path.name}"
        )


@dataclass(frozen=True)
class DaemonConfig:
    socket_path: Path
    runtime: RuntimeConfig
    # Peer uids that may connect (root and the web app's user).
    allowed_uids: frozenset[int] = frozenset({0})
    # With a group, the socket is 0660 and its directory 0750 for that group; else 0600.
    socket_group: int | None = None
    limits: Limits = field(default_factory=Limits)
    max_limits: Limits = field(default_factory=lambda: Limits(2 * 1024**3, 1024, 2.0, 4 * 1024**3))
    max_nodes_per_learner: int = 4
    idle_timeout: float = 1800.0
    # At most `creates_per_minute` sandboxes started per learner in any minute.
    creates_per_minute: int = 12
    flow: FlowLimits = field(default_factory=FlowLimits)
    recordings_dir: Path | None = None
    recording_max_bytes: int = 64 * 1024 * 1024
    # Formatted layers of the default size kept ready, so a new learner never waits for mkfs.
    spare_volumes: int = 0

    def to_json(self) -> str:
        data = asdict(self)
        data["allowed_uids"] = sorted(self.allowed_uids)
        return json.dumps(data, default=str)

    @classmethod
    def from_json(cls, text: str) -> DaemonConfig:
        data = json.loads(text)
        recordings = data.get("recordings_dir")
        runtime = data["runtime"]
        return cls(
            socket_path=Path(data["socket_path"]),
            runtime=RuntimeConfig(**{**runtime, "state_dir": Path(runtime["state_dir"])}),
            allowed_uids=frozenset(data["allowed_uids"]),
            socket_group=data.get("socket_group"),
            limits=Limits(**data["limits"]),
            max_limits=Limits(**data["max_limits"]),
            max_nodes_per_learner=data["max_nodes_per_learner"],
            idle_timeout=data["idle_timeout"],
            creates_per_minute=data["creates_per_minute"],
            flow=FlowLimits(**data["flow"]),
            recordings_dir=Path(recordings) if recordings else None,
            recording_max_bytes=data["recording_max_bytes"],
            spare_volumes=data["spare_volumes"],
        )


@dataclass(eq=False)
class Node:
    """One running sandbox of a learner (a learner may have several nodes)."""

    learner: str
    node: str | None
    sandbox: Sandbox
    last_active: float = field(default_factory=time.monotonic)
    terminal: TerminalSession | None = None
    # Shown at the top of the next terminal session, once.
    notice: str | None = None
    # Two attaches at once must find one terminal, not open two.
    terminal_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # The learner's other nodes this one has a veth link to (see op_topology).
    linked_to: set[str] = field(default_factory=set)


def sandbox_name(learner: str, node: str | None) -> str:
    return learner if node is None else f"{learner}--{node}"


def _learner(message: dict) -> str:
    learner = message.get("learner")
    if not isinstance(learner, str) or len(learner) > LEARNER_MAX:
        raise Refused("bad_request", f"learner must be a string of at most {LEARNER_MAX} chars")
    if not LEARNER_RE.fullmatch(learner):
        raise Refused("bad_request", "learner: use a-z, 0-9 and single '-' between them")
    return learner


def _node(message: dict) -> str | None:
    node = message.get("node")
    if node is not None and (not isinstance(node, str) or not NODE_RE.fullmatch(node)):
        raise Refused("bad_request", "node: a-z then a-z or 0-9, at most 12 chars")
    return node


def _int(message: dict, key: str, default: int, low: int, high: int) -> int:
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise Refused("bad_request", f"{key} must be an integer from {low} to {high}")
    return value


def _peer_uid(writer: asyncio.StreamWriter) -> int:
    sock = writer.get_extra_info("socket")
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


class Daemon:
    def __init__(self, config: DaemonConfig) -> None:
        self.config = config
        self.nodes: dict[str, Node] = {}
        self.locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(
            asyncio.Lock
        )
        self.creates: collections.defaultdict[str, collections.deque[float]] = (
            collections.defaultdict(collections.deque)
        )
        # Sandboxes whose learner will see why their sandbox is new (by sandbox name).
        self.notices: dict[str, str] = {}
        # One for all terminals: a flood is paced while another learner types.
        self.pacer = Pacer(config.flow.flood_rate)
        self.started = time.monotonic()
        self.counters = collections.Counter[str]()
        self.stopping = asyncio.Event()
        self.refill: asyncio.Task[None] | None = None
        self.refill_wanted = False
        self.ops: dict[str, Callable[[dict], Awaitable[dict]]] = {
            "ping": self.op_ping,
            "ensure": self.op_ensure,
            "exec": self.op_exec,
            "probe": self.op_probe,
            "check": self.op_check,
            "topology": self.op_topology,
            "reset": self.op_reset,
            "destroy": self.op_destroy,
            "list": self.op_list,
            "stats": self.op_stats,
            "recordings": self.op_recordings,
            "recording": self.op_recording,
        }

    # -- start and stop ----------------------------------------------------------------

    async def run(self) -> None:
        _socket_dir_claim(self.config.socket_path)
        lock = self._lock_state_dir()
        try:
            # Before anything is written under the state directory: its check comes first.
            usr = await asyncio.to_thread(sandbox_usr, self.config.runtime.state_dir)
            report = await asyncio.to_thread(reconcile, self.config.runtime)
            # Before the first learner, who would otherwise wait for them.
            await asyncio.to_thread(zygote_start, self.config.runtime.state_dir)
            await asyncio.to_thread(image_ensure, self.config.runtime.state_dir)
        except SandboxError as exc:  # the host cannot run sandboxes as set up: say why
            raise SystemExit(f"sandboxd cannot start: {exc}") from None
        if str(usr) != "/usr":
            log.info("sandboxes see a copy of /usr in %s: this /usr cannot be idmapped", usr)
        for name in report.removed_sandboxes:
            self.notices[name] = "sandboxd restarted: this is a fresh sandbox, your files are kept"
        log.info(
            "reconcile: removed %d sandboxes, %d cgroups, %d links; unmounted %d volumes",
            len(report.removed_sandboxes),
            len(report.removed_cgroups),
            len(report.deleted_links),
            len(report.unmounted_volumes),
        )
        server = await self._listen()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        reaper = asyncio.create_task(self._reap_idle())
        self._refill_spares()
        log.info("sandboxd listening on %s", self.config.socket_path)
        try:
            await self.stopping.wait()
        finally:
            log.info("sandboxd stopping: ending %d sandboxes (files kept)", len(self.nodes))
            reaper.cancel()
            if self.refill is not None:
                await self.refill  # a mkfs cut short would only leave a file to tidy
            server.close()
            # Together, in worker threads: a learner's outage during a restart includes this.
            stopping = list(self.nodes.values())
            ends = [self._stop(node, "sandboxd is stopping") for node in stopping]
            results = await asyncio.gather(*ends, return_exceptions=True)
            for node, failed in zip(stopping, results, strict=True):
                if isinstance(failed, BaseException):
                    log.error("could not end %s: %s", node.sandbox.name, failed)
            zygote_stop()
            volumes.volume_spares_release(self.config.runtime.state_dir)
            self.config.socket_path.unlink(missing_ok=True)
            os.close(lock)

    def _lock_state_dir(self) -> int:
        state_dir = self.config.runtime.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(state_dir / "sandboxd.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SystemExit(f"sandboxd: another sandboxd already uses {state_dir}") from None
        return fd

    async def _listen(self) -> asyncio.Server:
        """Bind under a temporary name, set modes, then rename into place: the socket is
        never reachable with looser permissions than configured."""
        path = self.config.socket_path
        group = self.config.socket_group
        os.chown(path.parent, 0, group if group is not None else 0)
        os.chmod(path.parent, 0o750 if group is not None else 0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.unlink(missing_ok=True)
        server = await asyncio.start_unix_server(self._connection, path=str(tmp))
        os.chown(tmp, 0, group if group is not None else 0)
        os.chmod(tmp, 0o660 if group is not None else 0o600)
        os.rename(tmp, path)
        return server

    # -- connections ---------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            uid = _peer_uid(writer)
            if uid not in self.config.allowed_uids:
                log.warning("refused a connection from uid %d (not in the allowlist)", uid)
                raise Refused("forbidden", f"uid {uid} may not use sandboxd")
            frame = await asyncio.wait_for(wire.read_frame(reader), FIRST_FRAME_TIMEOUT)
            if frame is None:
                return
            message = frame.json()
            op = message.get("op")
            if op == "attach":
                await self.attach(message, reader, writer)
                return
            handler = self.ops.get(op) if isinstance(op, str) else None
            if handler is None:
                raise Refused("bad_request", f"unknown op {op!r}")
            writer.write(wire.encode_json({"ok": True, **await handler(message)}))
        except Refused as refusal:
            self.counters[f"refused_{refusal.code}"] += 1
            if refusal.code in ADMISSION_REFUSALS:
                log.info("refused %s: %s", refusal.code, refusal.message)
            writer.write(wire.encode_json(_error(refusal.code, refusal.message)))
        except wire.ProtocolError as exc:
            log.info("protocol error from a client: %s", exc)
            writer.write(wire.encode_json(_error("bad_request", str(exc))))
        except (TimeoutError, ConnectionError):
            pass
        except Exception:
            log.exception("a request failed")
            writer.write(wire.encode_json(_error("failed", "sandboxd failed; see its log")))
        finally:
            # Bounded: a client that stopped reading would otherwise hold this task, and a
            # stopping sandboxd waits for every task it cancels (one hung on SIGTERM so).
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.drain(), FINAL_DRAIN_TIMEOUT)
            writer.close()

    # -- sandboxes -----------------------------------------------------------------------

    def _limits(self, message: dict) -> Limits:
        given = message.get("limits") or {}
        if not isinstance(given, dict) or set(given) - {"memory", "pids", "cpus", "disk"}:
            raise Refused("bad_request", "limits: an object of memory, pids, cpus, disk")
        default, ceiling = self.config.limits, self.config.max_limits
        try:
            limits = Limits(
                memory_bytes=int(given.get("memory", default.memory_bytes)),
                pids=int(given.get("pids", default.pids)),
                cpus=float(given.get("cpus", default.cpus)),
                disk_bytes=int(given.get("disk", default.disk_bytes)),
            )
            limits.validate()
        except (TypeError, ValueError) as exc:
            raise Refused("bad_request", f"limits: {exc}") from None
        if (
            limits.memory_bytes > ceiling.memory_bytes
            or limits.pids > ceiling.pids
            or limits.cpus > ceiling.cpus
            or limits.disk_bytes > ceiling.disk_bytes
        ):
            raise Refused("bad_request", "limits: above what this host allows per sandbox")
        return limits

    async def ensure(
        self, message: dict, shell: tuple[int, int] | None = None
    ) -> tuple[Node, bool]:
        """The learner's running sandbox (that node), made if absent: (node, created).
        With `shell` (rows, cols), a new sandbox starts the learner's shell on a terminal
        of that size as it comes up, for the attach that asked (`_open_terminal`)."""
        learner, node_name = _learner(message), _node(message)
        limits = self._limits(message)
        name = sandbox_name(learner, node_name)
        async with self.locks[learner]:
            node = self.nodes.get(name)
            if node is not None:
                node.last_active = time.monotonic()
                return node, False
            self._admit(learner)
            # A lesson's node is called by its name (`web`), as the learner thinks of it.
            spec_base = SandboxSpec(
                name=name, learner=learner, node=node_name, hostname=node_name or ""
            )
            try:
                sandbox = await asyncio.to_thread(self._create, spec_base, limits, shell)
            except (SpecError, SandboxError, VolumeError) as exc:
                log.warning("could not start %s: %s", name, exc)
                raise Refused("failed", f"could not start your sandbox: {exc}") from None
            node = Node(learner, node_name, sandbox, notice=self.notices.pop(name, None))
            self.nodes[name] = node
            self.counters["created"] += 1
            asyncio.get_running_loop().add_reader(sandbox.pidfd, self._init_exited, node)
            log.info("started %s in %.1f ms", name, sandbox.startup_ms)
            self._refill_spares()
            return node, True

    def _refill_spares(self) -> None:
        """Format spare layers in a worker thread, one refill at a time; a learner who
        takes a spare while one runs gets another pass, after it."""
        if self.config.spare_volumes <= 0:
            return
        self.refill_wanted = True
        if self.refill is None or self.refill.done():
            self.refill = asyncio.create_task(self._fill_spares())

    async def _fill_spares(self) -> None:
        while self.refill_wanted and not self.stopping.is_set():
            self.refill_wanted = False
            try:
                made = await asyncio.to_thread(
                    volumes.volume_spares_fill,
                    self.config.runtime.state_dir,
                    self.config.limits.disk_bytes,
                    self.config.spare_volumes,
                    min(SPARES_MOUNTED_AHEAD, self.config.spare_volumes),
                )
            except (OSError, VolumeError) as exc:
                # A full disk, say: new learners then wait for mkfs, and nothing else changes.
                log.warning("could not format spare layers: %s", exc)
                return
            if made:
                log.info("formatted %d spare layers", made)

    def _create(self, spec: SandboxSpec, limits: Limits, shell: tuple[int, int] | None) -> Sandbox:
        return sandbox_create(
            replace(spec, limits=limits),
            self.config.runtime,
            first=None if shell is None else FirstProcess(SHELL, terminal=shell),
        )

    def _admit(self, learner: str) -> None:
        if len(self.nodes) >= self.config.runtime.max_sandboxes:
            raise Refused(
                "host_full",
                f"this host is running its maximum of {self.config.runtime.max_sandboxes} "
                "sandboxes; try again in a few minutes",
            )
        mine = [n for n in self.nodes.values() if n.learner == learner]
        if len(mine) >= self.config.max_nodes_per_learner:
            raise Refused(
                "learner_limit",
                f"you already run {len(mine)} sandboxes, the most one learner may",
            )
        recent = self.creates[learner]
        now = time.monotonic()
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.config.creates_per_minute:
            wait = int(60 - (now - recent[0])) + 1
            raise Refused(
                "rate_limited",
                f"too many sandboxes started in the last minute; try again in {wait} s",
            )
        recent.append(now)

    def _init_exited(self, node: Node) -> None:
        """A sandbox's init died by itself (OOM, a bug): clean up, tell the learner."""
        loop = asyncio.get_running_loop()
        loop.remove_reader(node.sandbox.pidfd)
        if self.nodes.get(node.sandbox.name) is node:
            log.warning("sandbox %s stopped by itself", node.sandbox.name)
            self.notices[node.sandbox.name] = "your sandbox stopped; this is a new one"
            loop.create_task(self._stop(node, "your sandbox stopped unexpectedly"))

    async def _stop(self, node: Node, reason: str) -> None:
        """End a sandbox (its files stay): clients are told why, then it is destroyed."""
        name = node.sandbox.name
        if self.nodes.get(name) is not node:
            return
        del self.nodes[name]
        # Its ends of veth links vanish with its network namespace.
        for other in self.nodes.values():
            if other.learner == node.learner:
                other.linked_to.discard(node.node or "")
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(node.sandbox.pidfd)
        if node.terminal is not None:
            for client in list(node.terminal.clients):
                client.event({"event": "stopped", "reason": reason})
            node.terminal.close()
        await asyncio.to_thread(node.sandbox.destroy)
        log.info("stopped %s: %s", name, reason)

    async def _reap_idle(self) -> None:
        interval = max(1.0, min(60.0, self.config.idle_timeout / 4))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for node in list(self.nodes.values()):
                attached = node.terminal is not None and node.terminal.clients
                if not attached and now - node.last_active > self.config.idle_timeout:
                    minutes = max(1, round(self.config.idle_timeout / 60))
                    self.notices[node.sandbox.name] = (
                        f"your sandbox was stopped after {minutes} min idle; files kept"
                    )
                    self.counters["reaped_idle"] += 1
                    await self._stop(node, "stopped after being idle")

    def _running(self, message: dict) -> Node:
        name = sandbox_name(_learner(message), _node(message))
        node = self.nodes.get(name)
        if node is None:
            raise Refused("not_running", f"no running sandbox for {name}")
        node.last_active = time.monotonic()
        return node

    # -- operations ----------------------------------------------------------------------

    async def op_ping(self, message: dict) -> dict:
        return {"version": PROTOCOL_VERSION}

    async def op_ensure(self, message: dict) -> dict:
        node, created = await self.ensure(message)
        return {"created": created, "sandbox": node.sandbox.status()}

    async def op_exec(self, message: dict) -> dict:
        argv = message.get("argv")
        if (
            not isinstance(argv, list)
            or not 0 < len(argv) <= EXEC_ARGS_MAX
            or not all(isinstance(a, str) and "\0" not in a for a in argv)
        ):
            raise Refused("bad_request", f"argv: 1 to {EXEC_ARGS_MAX} strings")
        user = message.get("user", "root")
        if user not in USERS:
            raise Refused("bad_request", f"user: one of {', '.join(USERS)}")
        timeout = message.get("timeout", 30)
        if not isinstance(timeout, int | float) or not 0 < timeout <= EXEC_TIMEOUT_MAX:
            raise Refused("bad_request", f"timeout: seconds, at most {EXEC_TIMEOUT_MAX:.0f}")
        node = self._running(message)
        try:
            code, output = await asyncio.to_thread(
                node.sandbox.run, argv, timeout, EXEC_OUTPUT_MAX + 1, user=user
            )
        except TimeoutError:
            raise Refused("timeout", f"{argv[0]} did not finish within {timeout} s") from None
        except SandboxError as exc:
            raise Refused("failed", str(exc)) from None
        return {
            "code": code,
            "output": base64.b64encode(output[:EXEC_OUTPUT_MAX]).decode(),
            "truncated": len(output) > EXEC_OUTPUT_MAX,
        }

    async def op_probe(self, message: dict) -> dict:
        probe = PROBES.get(message.get("probe"))  # type: ignore[arg-type]
        if probe is None:
            raise Refused("bad_request", f"probe: one of {', '.join(sorted(PROBES))}")
        params = message.get("params") or {}
        if not isinstance(params, dict):
            raise Refused("bad_request", "params must be an object")
        node = self._running(message)
        try:
            result = await asyncio.to_thread(probe, node.sandbox, params)
        except (ValueError, OSError) as exc:
            raise Refused("failed", f"probe {message['probe']}: {exc}") from None
        return {"result": result}

    async def op_check(self, message: dict) -> dict:
        """One exercise's outcome, read from the host side (sandboxapp/runtime/checks.py)."""
        params = message.get("params") or {}
        problems = check_problems(message.get("check"), params, answer=True)
        if problems:
            raise Refused("bad_request", "; ".join(problems))
        node = self._running(message)
        try:
            outcome = await asyncio.to_thread(check_run, node.sandbox, message["check"], params)
        except (CheckError, OSError) as exc:
            raise Refused("failed", f"check {message['check']}: {exc}") from None
        return asdict(outcome)

    async def op_topology(self, message: dict) -> dict:
        """A lesson's nodes, all running, and veth links between them: link i joins
        `to-<b>` (10.77.i.1/24) on a with `to-<a>` (10.77.i.2/24) on b."""
        learner = _learner(message)
        names = message.get("nodes")
        if (
            not isinstance(names, list)
            or not 1 <= len(names) <= self.config.max_nodes_per_learner
            or len(set(map(str, names))) != len(names)
        ):
            raise Refused("bad_request", "nodes: a list of distinct node names")
        for name in names:
            _node({"node": name})
        links = message.get("links") or []
        if not isinstance(links, list) or not all(
            isinstance(pair, list)
            and len(pair) == 2
            and pair[0] != pair[1]
            and set(pair) <= set(names)
            for pair in links
        ):
            raise Refused("bad_request", "links: pairs of two different nodes of the list")
        nodes = {}
        for name in names:
            nodes[name], _ = await self.ensure({**message, "node": name})
        for index, (a, b) in enumerate(links):
            if b in nodes[a].linked_to:
                continue
            ends = (
                network.NodeEnd(f"to-{b}", f"10.77.{index}.1"),
                network.NodeEnd(f"to-{a}", f"10.77.{index}.2"),
            )
            async with self.locks[learner]:
                try:
                    await asyncio.to_thread(sandbox_link, nodes[a].sandbox, nodes[b].sandbox, *ends)
                except (SandboxError, OSError) as exc:
                    raise Refused("failed", f"could not link {a} and {b}: {exc}") from None
            nodes[a].linked_to.add(b)
            nodes[b].linked_to.add(a)
        return {
            "nodes": {name: node.sandbox.status() for name, node in nodes.items()},
            "links": [
                {"a": a, "b": b, "subnet": f"10.77.{i}.0/24"} for i, (a, b) in enumerate(links)
            ],
        }

    async def op_reset(self, message: dict) -> dict:
        """Stop every node of the learner; with keep_files false, delete their files too, and
        with recordings true (a learner forgotten for good), their recorded sessions."""
        learner = _learner(message)
        keep_files = message.get("keep_files", True)
        if not isinstance(keep_files, bool):
            raise Refused("bad_request", "keep_files must be true or false")
        forget_recordings = message.get("recordings", False)
        if not isinstance(forget_recordings, bool):
            raise Refused("bad_request", "recordings must be true or false")
        async with self.locks[learner]:
            mine = [n for n in self.nodes.values() if n.learner == learner]
            for node in mine:
                self.notices[node.sandbox.name] = "your sandbox was reset" + (
                    "; files kept" if keep_files else " to a clean one"
                )
                await self._stop(node, "reset")
            deleted = []
            if not keep_files:
                deleted = await asyncio.to_thread(self._delete_files, learner)
            deleted_recordings = []
            if forget_recordings and self.config.recordings_dir is not None:
                deleted_recordings = await asyncio.to_thread(
                    recordings.recordings_delete, self.config.recordings_dir, learner
                )
        return {
            "stopped": [n.sandbox.name for n in mine],
            "deleted_volumes": deleted,
            "deleted_recordings": deleted_recordings,
        }

    def _delete_files(self, learner: str) -> list[str]:
        state_dir = self.config.runtime.state_dir
        deleted = volumes.volumes_of(state_dir, learner)
        for volume in deleted:
            volumes.volume_delete(state_dir, volume)
        return deleted

    async def op_destroy(self, message: dict) -> dict:
        node = self._running(message)
        async with self.locks[node.learner]:
            await self._stop(node, "stopped")
        return {"stopped": node.sandbox.name}

    async def op_recordings(self, message: dict) -> dict:
        """The learner's recorded sessions (none when this host does not record)."""
        learner = _learner(message)
        if self.config.recordings_dir is None:
            return {"recordings": []}
        found = await asyncio.to_thread(
            recordings.recordings_of, self.config.recordings_dir, learner
        )
        return {"recordings": found}

    async def op_recording(self, message: dict) -> dict:
        """A chunk of one of the learner's recordings, from `offset`."""
        learner = _learner(message)
        offset = _int(message, "offset", 0, 0, 2**40)
        if self.config.recordings_dir is None:
            raise Refused("not_found", "this host does not record sessions")
        try:
            data, size = await asyncio.to_thread(
                recordings.recording_read,
                self.config.recordings_dir,
                learner,
                message.get("name"),
                offset,
            )
        except recordings.RecordingError as exc:
            raise Refused("not_found", str(exc)) from None
        return {"data": base64.b64encode(data).decode(), "size": size, "next": offset + len(data)}

    async def op_list(self, message: dict) -> dict:
        now = time.monotonic()
        return {
            "sandboxes": [
                {
                    "name": name,
                    "learner": node.learner,
                    "node": node.node,
                    "init_pid": node.sandbox.init_pid,
                    "startup_ms": round(node.sandbox.startup_ms, 3),
                    "idle_seconds": round(now - node.last_active, 1),
                    "terminal": node.terminal.id if node.terminal else None,
                    "writers": _count(node, "writer"),
                    "viewers": _count(node, "viewer"),
                }
                for name, node in sorted(self.nodes.items())
            ]
        }

    async def op_stats(self, message: dict) -> dict:
        terminals = [n.terminal for n in self.nodes.values() if n.terminal is not None]
        return {
            "sandboxes": len(self.nodes),
            "max_sandboxes": self.config.runtime.max_sandboxes,
            "terminals": len(terminals),
            "clients": sum(len(t.clients) for t in terminals),
            "ring_bytes": sum(len(t.ring) for t in terminals),
            "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "rss_bytes": _rss(),
            "uptime_seconds": round(time.monotonic() - self.started, 1),
            "counters": dict(self.counters),
        }

    # -- terminals -----------------------------------------------------------------------

    async def attach(
        self, message: dict, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        role = message.get("role", "writer")
        if role not in ("writer", "viewer"):
            raise Refused("bad_request", "role: writer or viewer")
        offset = _int(message, "offset", 0, 0, 2**63 - 1)
        rows = _int(message, "rows", 24, 1, 1000)
        cols = _int(message, "cols", 80, 1, 1000)
        session = message.get("session")
        if session is not None and not isinstance(session, str):
            raise Refused("bad_request", "session: the id from an earlier attach, or null")
        record = message.get("record", True)
        if not isinstance(record, bool):
            raise Refused("bad_request", "record: true or false")
        pty = message.get("pty", False)
        if not isinstance(pty, bool):
            raise Refused("bad_request", "pty: true or false")
        if role == "viewer":
            # A viewer never starts anything: it watches a learner who is there.
            node, created = self._running(message), False
            if node.terminal is None:
                raise Refused("not_running", "this learner has no terminal open")
        else:
            node, created = await self.ensure(message, shell=(rows, cols))
        async with node.terminal_lock:
            terminal = node.terminal or await self._open_terminal(node, rows, cols, record)
        same = session == terminal.id
        start = terminal.tail_from(offset if same else terminal.start)
        client = Client(writer, role, sent=start)
        reply = wire.encode_json(
            {
                "ok": True,
                "session": terminal.id,
                "offset": start,
                # The client clears its screen: what follows is not what it had drawn.
                "reset": not same or start != offset,
                "created": created,
                "ack_every": self.config.flow.ack_every,
                "sandbox": node.sandbox.status(),
            }
        )
        if pty and role == "writer":
            # The writer's keystrokes then go straight to the PTY, one process hop and a
            # third of the relay's CPU less per key (bench/README.md); the output, its ring
            # and its pacing stay here. Nothing is buffered on a new connection yet, so
            # the reply and the fd leave together, the fd on the reply's first byte.
            _send_with_fd(writer, reply, terminal.master)
        else:
            writer.write(reply)
        terminal.attach(client)
        if role == "writer":
            terminal.resize(rows, cols)
        pump = asyncio.create_task(terminal.pump(client))
        try:
            await self._terminal_input(node, terminal, client, reader)
        finally:
            terminal.detach(client)
            client.writer.close()
            pump.cancel()
            node.last_active = time.monotonic()

    async def _open_terminal(
        self, node: Node, rows: int, cols: int, record: bool
    ) -> TerminalSession:
        sandbox = node.sandbox
        # The shell a new sandbox started as it came up, or else one started now.
        process, sandbox.first = sandbox.first, None
        if process is None:
            process = await asyncio.to_thread(sandbox.spawn, SHELL, terminal=(rows, cols))
        master = process.terminal
        recorder = None
        if record and self.config.recordings_dir is not None:
            self.config.recordings_dir.mkdir(parents=True, exist_ok=True)
            path = recordings.recording_path(self.config.recordings_dir, sandbox.name)
            recorder = Recorder(path, rows, cols, self.config.recording_max_bytes)

        def ended(terminal: TerminalSession) -> None:
            process.channel.close()
            if node.terminal is terminal:
                node.terminal = None

        terminal = TerminalSession(
            master, flow=self.config.flow, on_end=ended, recorder=recorder, pacer=self.pacer
        )
        if node.notice:
            terminal.append(NOTICE.format(node.notice).encode())
            node.notice = None
        node.terminal = terminal
        return terminal

    async def _terminal_input(
        self,
        node: Node,
        terminal: TerminalSession,
        client: Client,
        reader: asyncio.StreamReader,
    ) -> None:
        refused_input = False
        while True:
            try:
                # Detached: what it still sends is read (and dropped) until it closes too,
                # for a while; one that never closes is let go.
                wait = DETACHED_GRACE if client.closed else None
                frame = await asyncio.wait_for(wire.read_frame(reader), wait)
            except TimeoutError:
                return
            except wire.ProtocolError as exc:
                client.event({"event": "error", "code": "bad_request", "message": str(exc)})
                terminal.detach(client)
                await _discard_until_closed(reader)
                return
            except ConnectionError:
                return
            if frame is None:
                return
            if client.closed:
                continue
            if frame.kind == wire.ACK:
                if client.role == "writer":
                    terminal.ack(frame.offset())
                continue
            if frame.kind == wire.TYPED:
                if client.role == "writer":
                    node.last_active = time.monotonic()
                    terminal.typed()
                continue
            if frame.kind not in (wire.INPUT, wire.RESIZE):
                client.event({"event": "error", "code": "bad_request", "message": "unexpected"})
                continue
            if client.role != "writer":
                if not refused_input:
                    refused_input = True
                    client.event(
                        {"event": "error", "code": "read_only", "message": "viewers cannot type"}
                    )
                continue
            node.last_active = time.monotonic()
            if frame.kind == wire.RESIZE:
                terminal.resize(*frame.size())
            else:
                terminal.write(frame.payload)
                # Backpressure: a huge paste waits here, in the client's socket.
                await terminal.input.room.wait()


def _send_with_fd(writer: asyncio.StreamWriter, data: bytes, fd: int) -> None:
    """Send `data` with `fd` attached (SCM_RIGHTS) on a connection with nothing buffered;
    if the socket takes nothing now, `data` alone (the client then types through us).
    The transport's own socket object cannot sendmsg under uvloop: a duplicate of its fd
    shares the connection."""
    sent = 0
    transport = writer.get_extra_info("socket")  # None once the client has gone
    if transport is not None:
        with socket.socket(fileno=os.dup(transport.fileno())) as sock:
            with contextlib.suppress(BlockingIOError):
                sent = socket.send_fds(sock, [data], [fd])
    if sent < len(data):
        writer.write(data[sent:])


async def _discard_until_closed(reader: asyncio.StreamReader) -> None:
    """Read and drop what a client still sends once its frames make no sense, until it
    closes, for a while. Closing on bytes left unread would reset the connection, and a
    client that sees the reset may never read our last frame, the error."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(DETACHED_GRACE):
            while await reader.read(65536):
                pass


def _count(node: Node, role: str) -> int:
    if node.terminal is None:
        return 0
    return sum(1 for c in node.terminal.clients if c.role == role)


def _error(code: str, message: str) -> dict:
    return {"ok": False, "error": code, "message": message}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# Where `python -m sandboxapp.runtime.daemon` finds its package.
PROJECT = Path(__file__).resolve().parents[2]


def daemon_argv(config: DaemonConfig, log_level: str = "INFO") -> list[str]:
    """The command line of sandboxd: this module, given its whole configuration."""
    return [
        sys.executable,
        "-m",
        "sandboxapp.runtime.daemon",
        "--config",
        config.to_json(),
        "--log-level",
        log_level,
    ]


def daemon_spawn(
    config: DaemonConfig, log_level: str = "INFO", timeout: float = 30.0, **popen: object
) -> subprocess.Popen:
    """Start sandboxd as a child process (tests, benchmarks) and return once it answers."""
    process = subprocess.Popen(daemon_argv(config, log_level), cwd=PROJECT, **popen)  # type: ignore[call-overload]
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise SandboxdError(f"sandboxd exited at start with status {process.returncode}")
        try:
            call_sync(config.socket_path, "ping")
            return process
        except Unavailable:
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise
            time.sleep(0.05)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sandboxd", description=__doc__)
    parser.add_argument("--config", required=True, help="DaemonConfig as JSON")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s sandboxd %(levelname)s %(message)s",
    )
    if os.geteuid() != 0:
        raise SystemExit("sandboxd needs root: it creates namespaces, cgroups and mounts")
    # Each sandbox holds a few fds here (pidfd, control socket, PTY, clients): 1024 is ~200.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # What the imports made lives as long as the daemon: out of every cycle collection
    # (35,000 objects, 15 ms of each full one here). See sandboxapp/daphne_on_uvloop.py.
    gc.freeze()
    # uvloop for the daemon's own loop (one echo's round trip through it is 20-35 % less
    # at the 99th percentile with 200 terminals, bench-sandboxd). Only this loop: pyroute2
    # makes loops of its own for netlink sockets, which uvloop cannot open.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(Daemon(DaemonConfig.from_json(args.config)).run())


if __name__ == "__main__":
    main()

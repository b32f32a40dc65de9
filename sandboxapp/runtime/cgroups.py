"""One cgroup interface, with cgroup v1 and v2 behind it.

Each sandbox gets two levels (see docs/security-model.md):

    <parent>/<name>            limits live here; the learner can neither see nor write it
    <parent>/<name>/learner    the sandbox's cgroup-namespace root, delegated to its root
                               user, so learners create and limit child cgroups of their own

A child can never loosen what an ancestor enforces, so the learner's own cgroups
are always bounded by the limits on <name>.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from .spec import Limits

V1_CONTROLLERS = ("memory", "pids", "cpu")
CPU_PERIOD_US = 100_000
INNER = "learner"
# On v2, the cgroup (below INNER) that holds the sandbox's own processes.
SETTLED = "sandbox"
# A spare sandbox's cgroups until a sandbox takes them over: "_spare-<owner pid>-<n>", a
# name no sandbox can have.
SPARE_PREFIX = "_spare-"


def spare_owner_alive(name: str) -> bool:
    """Whether the process that asked for this spare cgroup still runs (pid reuse aside)."""
    owner = name[len(SPARE_PREFIX) :].split("-")[0]
    return owner.isdigit() and Path(f"/proc/{owner}").exists()


class CgroupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Hierarchy:
    """A mounted cgroup hierarchy: its mount point and the controllers it carries."""

    mountpoint: Path
    controllers: tuple[str, ...]


def _write(path: Path, value: str) -> None:
    with open(path, "w") as f:
        f.write(value)


def _read_kv(path: Path) -> dict[str, int]:
    """Parse the 'key value' lines of memory.events, pids.events, cpu.stat, oom_control."""
    values: dict[str, int] = {}
    try:
        text = path.read_text()
    except FileNotFoundError:
        return values
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


class CgroupBackend:
    """What differs between v1 and v2; `SandboxCgroup` holds what is the same."""

    version: int
    hierarchies: tuple[Hierarchy, ...]

    def __init__(self, hierarchies: tuple[Hierarchy, ...]) -> None:
        self.hierarchies = hierarchies

    def prepare_parent(self, parent: str) -> None:
        for h in self.hierarchies:
            (h.mountpoint / parent.strip("/")).mkdir(parents=True, exist_ok=True)

    def apply_limits(self, outer: list[Path], limits: Limits) -> None:
        raise NotImplementedError

    def delegated_files(self) -> tuple[str, ...]:
        raise NotImplementedError

    def kill(self, dirs: list[Path]) -> None:
        raise NotImplementedError

    def counters(self, outer: list[Path]) -> dict[str, int]:
        raise NotImplementedError

    def limits(self, dirs: list[Path]) -> dict[str, int | None]:
        raise NotImplementedError

    def child_cgroups(self, inner: list[Path]) -> list[ChildCgroup]:
        """Each cgroup the learner made below `inner`, with its limits and the kernel's
        enforcement counters (what the checks of the cgroup lessons read)."""
        raise NotImplementedError

    def settle(self, inner: list[Path], pid: int, owner_uid: int) -> None:
        """After the init has made its cgroup namespace (rooted at `inner`): let the
        learner make limited cgroups of their own below it. Nothing to do on v1."""


@dataclass(frozen=True)
class ChildCgroup:
    path: str  # relative to the learner's own cgroup, as the learner sees it
    memory_limit: int | None = None
    oom_kills: int = 0
    cpu_quota_us: int | None = None
    nr_throttled: int = 0
    pids_max: int | None = None
    pids_max_hit: int = 0


def _children(top: Path) -> list[Path]:
    return [Path(sub) for sub, _, _ in os.walk(top) if Path(sub) != top]


class V1Backend(CgroupBackend):
    version = 1

    def _find(self, dirs: list[Path], controller: str) -> Path:
        for h, d in zip(self.hierarchies, dirs, strict=True):
            if controller in h.controllers:
                return d
        raise CgroupError(f"cgroup v1 controller {controller!r} is not mounted")

    def apply_limits(self, outer: list[Path], limits: Limits) -> None:
        mem = self._find(outer, "memory")
        # memory+swap equal to memory: no escape into swap.
        files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]
        if not (mem / files[1]).exists():
            files.pop()
        # memory+swap may never be below memory: lowered, memory goes first; raised (a
        # spare's limits to a bigger sandbox's), memory+swap does.
        if limits.memory_bytes > int((mem / files[0]).read_text()):
            files.reverse()
        for name in files:
            _write(mem / name, str(limits.memory_bytes))
        _write(self._find(outer, "pids") / "pids.max", str(limits.pids))
        cpu = self._find(outer, "cpu")
        _write(cpu / "cpu.cfs_period_us", str(CPU_PERIOD_US))
        _write(cpu / "cpu.cfs_quota_us", str(round(limits.cpus * CPU_PERIOD_US)))

    def delegated_files(self) -> tuple[str, ...]:
        return ("cgroup.procs", "tasks")

    def kill(self, dirs: list[Path]) -> None:
        # v1 has no cgroup.kill: signal every member until none is left. Members
        # cannot escape meanwhile, and new forks land in the same cgroup.
        for _ in range(200):
            pids = procs(dirs)
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.005)
        raise CgroupError(f"processes survived SIGKILL in {dirs[0]}")

    def counters(self, outer: list[Path]) -> dict[str, int]:
        # v1 counts events in the cgroup of the task that hit the limit, not where the
        # limit is: add up the whole subtree, learner-made cgroups included.
        totals = {"oom_kill": 0, "memory_max_hit": 0, "pids_max_hit": 0, "nr_throttled": 0}
        sources = (
            ("memory", "memory.oom_control", "oom_kill", "oom_kill"),
            ("memory", "memory.failcnt", None, "memory_max_hit"),
            ("pids", "pids.events", "max", "pids_max_hit"),
            ("cpu", "cpu.stat", "nr_throttled", "nr_throttled"),
        )
        for controller, filename, key, total in sources:
            for sub, _, _ in os.walk(self._find(outer, controller)):
                path = Path(sub, filename)
                if key is None:
                    totals[total] += int(path.read_text()) if path.exists() else 0
                else:
                    totals[total] += _read_kv(path).get(key, 0)
        return totals

    def limits(self, dirs: list[Path]) -> dict[str, int | None]:
        mem = int((self._find(dirs, "memory") / "memory.limit_in_bytes").read_text())
        pids = (self._find(dirs, "pids") / "pids.max").read_text().strip()
        quota = int((self._find(dirs, "cpu") / "cpu.cfs_quota_us").read_text())
        return {
            "memory_bytes": None if mem >= 2**62 else mem,
            "pids": None if pids == "max" else int(pids),
            "cpu_quota_us": None if quota < 0 else quota,
        }

    def child_cgroups(self, inner: list[Path]) -> list[ChildCgroup]:
        # One tree per controller: a learner's cgroup is the same relative path in each.
        found: dict[str, dict] = {}
        memory = self._find(inner, "memory")
        for d in _children(memory):
            limit = int((d / "memory.limit_in_bytes").read_text())
            found.setdefault(str(d.relative_to(memory)), {}).update(
                memory_limit=None if limit >= 2**62 else limit,
                oom_kills=_read_kv(d / "memory.oom_control").get("oom_kill", 0),
            )
        cpu = self._find(inner, "cpu")
        for d in _children(cpu):
            quota = int((d / "cpu.cfs_quota_us").read_text())
            found.setdefault(str(d.relative_to(cpu)), {}).update(
                cpu_quota_us=None if quota < 0 else quota,
                nr_throttled=_read_kv(d / "cpu.stat").get("nr_throttled", 0),
            )
        pids = self._find(inner, "pids")
        for d in _children(pids):
            limit = (d / "pids.max").read_text().strip()
            found.setdefault(str(d.relative_to(pids)), {}).update(
                pids_max=None if limit == "max" else int(limit),
                pids_max_hit=_read_kv(d / "pids.events").get("max", 0),
            )
        return [ChildCgroup(path, **values) for path, values in sorted(found.items())]


class V2Backend(CgroupBackend):
    version = 2

    def prepare_parent(self, parent: str) -> None:
        # Controllers must be enabled on every level from the root down to our sandboxes.
        (root,) = self.hierarchies
        path = root.mountpoint
        for part in [p for p in parent.strip("/").split("/") if p]:
            _write(path / "cgroup.subtree_control", "+memory +pids +cpu")
            path = path / part
            path.mkdir(exist_ok=True)
        _write(path / "cgroup.subtree_control", "+memory +pids +cpu")

    def apply_limits(self, outer: list[Path], limits: Limits) -> None:
        (d,) = outer
        _write(d / "memory.max", str(limits.memory_bytes))
        # memory+swap capped at memory: no escape into swap (absent without swap support).
        if (d / "memory.swap.max").exists():
            _write(d / "memory.swap.max", "0")
        _write(d / "pids.max", str(limits.pids))
        _write(d / "cpu.max", f"{round(limits.cpus * CPU_PERIOD_US)} {CPU_PERIOD_US}")
        _write(d / "cgroup.subtree_control", "+memory +pids +cpu")

    def delegated_files(self) -> tuple[str, ...]:
        return ("cgroup.procs", "cgroup.threads", "cgroup.subtree_control")

    def settle(self, inner: list[Path], pid: int, owner_uid: int) -> None:
        # v2 enables a controller for children only in a cgroup with no processes of its own
        # ("no internal processes"): the sandbox's processes move to a leaf, and the
        # learner's cgroup then offers memory, pids and cpu to the cgroups they make.
        (d,) = inner
        leaf = d / SETTLED
        leaf.mkdir()
        os.chown(leaf, owner_uid, owner_uid)
        for name in self.delegated_files():
            os.chown(leaf / name, owner_uid, owner_uid)
        _write(leaf / "cgroup.procs", str(pid))
        _write(d / "cgroup.subtree_control", "+memory +pids +cpu")

    def kill(self, dirs: list[Path]) -> None:
        (d,) = dirs
        _write(d / "cgroup.kill", "1")
        for _ in range(200):
            if not procs(dirs):
                return
            time.sleep(0.005)
        raise CgroupError(f"processes survived cgroup.kill in {d}")

    def counters(self, outer: list[Path]) -> dict[str, int]:
        (d,) = outer
        mem = _read_kv(d / "memory.events")
        return {
            "oom_kill": mem.get("oom_kill", 0),
            "memory_max_hit": mem.get("max", 0),
            "pids_max_hit": _read_kv(d / "pids.events").get("max", 0),
            "nr_throttled": _read_kv(d / "cpu.stat").get("nr_throttled", 0),
        }

    def limits(self, dirs: list[Path]) -> dict[str, int | None]:
        (d,) = dirs

        def number(name: str) -> int | None:
            text = (d / name).read_text().split()[0]
            return None if text == "max" else int(text)

        return {
            "memory_bytes": number("memory.max"),
            "pids": number("pids.max"),
            "cpu_quota_us": number("cpu.max"),
        }

    def child_cgroups(self, inner: list[Path]) -> list[ChildCgroup]:
        (top,) = inner
        found = []
        for d in _children(top):
            if d == top / SETTLED:
                continue  # the sandbox's own processes, not a cgroup the learner made
            values: dict = {}
            # A controller's files exist only where the parent enabled it for children.
            if (d / "memory.max").exists():
                text = (d / "memory.max").read_text().strip()
                values["memory_limit"] = None if text == "max" else int(text)
                values["oom_kills"] = _read_kv(d / "memory.events").get("oom_kill", 0)
            if (d / "cpu.max").exists():
                quota = (d / "cpu.max").read_text().split()[0]
                values["cpu_quota_us"] = None if quota == "max" else int(quota)
                values["nr_throttled"] = _read_kv(d / "cpu.stat").get("nr_throttled", 0)
            if (d / "pids.max").exists():
                limit = (d / "pids.max").read_text().strip()
                values["pids_max"] = None if limit == "max" else int(limit)
                values["pids_max_hit"] = _read_kv(d / "pids.events").get("max", 0)
            found.append(ChildCgroup(str(d.relative_to(top)), **values))
        return found


def procs(dirs: list[Path]) -> list[int]:
    """Every pid in these cgroups and all their descendants (the learner may nest)."""
    found: set[int] = set()
    for d in dirs:
        for sub, _, _ in os.walk(d):
            try:
                text = Path(sub, "cgroup.procs").read_text()
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.ENODEV):
                    continue  # removed while we walked: ENODEV is a cgroup being torn down
                raise
            found.update(int(p) for p in text.split())
    return sorted(found)


def detect(mountinfo: str | None = None) -> CgroupBackend:
    """Pick v1 or v2 from the host's mounts: v2 when it carries our controllers."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_text()
    v1: dict[str, Hierarchy] = {}
    v2: Path | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[sep + 3].split(",")
        mountpoint = Path(fields[4])
        if fstype == "cgroup2":
            v2 = mountpoint
        elif fstype == "cgroup":
            controllers = tuple(o for o in options if o in V1_CONTROLLERS or o == "cpuacct")
            for c in controllers:
                v1.setdefault(c, Hierarchy(mountpoint, controllers))
    if v2 is not None:
        available = set((v2 / "cgroup.controllers").read_text().split())
        if {"memory", "pids", "cpu"} <= available:
            return V2Backend((Hierarchy(v2, ("memory", "pids", "cpu")),))
    missing = [c for c in V1_CONTROLLERS if c not in v1]
    if missing:
        raise CgroupError(f"no usable cgroup hierarchy: v1 lacks {', '.join(missing)}")
    unique = {h.mountpoint: h for h in (v1[c] for c in V1_CONTROLLERS)}
    return V1Backend(tuple(unique.values()))


class SandboxCgroup:
    """The two-level cgroup of one sandbox, in every hierarchy the backend uses."""

    def __init__(self, backend: CgroupBackend, parent: str, name: str) -> None:
        self.backend = backend
        self.parent = parent
        self.rel = f"{parent.strip('/')}/{name}".strip("/")
        self.outer = [h.mountpoint / self.rel for h in backend.hierarchies]
        self.inner = [d / INNER for d in self.outer]

    def create(self, limits: Limits, owner_uid: int) -> None:
        for d in self.outer:
            d.mkdir()
        self.limit_and_delegate(limits, owner_uid)

    def take_over(self, spare_outer: list[Path]) -> None:
        """Become the cgroups a spare init was born in, limited and delegated already,
        renamed to ours (v1 only: cgroup2 refuses renames). Moving a process costs an RCU
        grace period (5-11 ms here, with the cgroup mutex held); a rename costs none."""
        for old, new in zip(spare_outer, self.outer, strict=True):
            os.rename(old, new)

    def limit_and_delegate(self, limits: Limits, owner_uid: int) -> None:
        self.backend.apply_limits(self.outer, limits)
        for d in self.inner:
            d.mkdir(exist_ok=True)
            # Hand the learner's root its subtree: the directory (to create children)
            # and the files that move processes. Never the limits of either level.
            os.chown(d, owner_uid, owner_uid)
            for name in self.backend.delegated_files():
                os.chown(d / name, owner_uid, owner_uid)

    def holds(self, pid: int) -> bool:
        """Whether `pid` is in our inner cgroup in every hierarchy, as the kernel says."""
        # The end of the path: /proc shows it from the root of our cgroup namespace, which
        # may lie above the hierarchy's mount (in a container).
        want = f"/{self.rel}/{INNER}"
        paths: list[tuple[set[str], str]] = []
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
                _, controllers, path = line.split(":", 2)
                paths.append((set(controllers.split(",")) - {""}, path))

        def path_in(h: Hierarchy) -> str | None:
            # v1: the line whose hierarchy carries these controllers; v2: the one without any.
            wanted = set(h.controllers) if self.backend.version == 1 else set()
            matches = (p for found, p in paths if (wanted <= found if wanted else not found))
            return next(matches, None)

        return bool(paths) and all(
            (path_in(h) or "").endswith(want) for h in self.backend.hierarchies
        )

    def add(self, pid: int) -> None:
        for d in self.inner:
            _write(d / "cgroup.procs", str(pid))

    def procs(self) -> list[int]:
        return procs(self.outer)

    def exists(self) -> bool:
        return any(d.exists() for d in self.outer)

    def counters(self) -> dict[str, int]:
        return self.backend.counters(self.outer)

    def limits(self) -> dict[str, int | None]:
        return self.backend.limits(self.outer)

    def child_cgroups(self) -> list[ChildCgroup]:
        return self.backend.child_cgroups(self.inner)

    def settle(self, pid: int, owner_uid: int) -> None:
        self.backend.settle(self.inner, pid, owner_uid)

    def destroy(self) -> None:
        existing = [d for d in self.outer if d.exists()]
        if not existing or _remove_empty(existing):
            return
        self.backend.kill(existing)
        for d in existing:
            # Bottom-up: the learner may have made cgroups of their own.
            for sub, _, _ in os.walk(d, topdown=False):
                try:
                    os.rmdir(sub)
                except FileNotFoundError:
                    pass


def _remove_empty(outer: list[Path]) -> bool:
    """Remove the sandbox's cgroups if nothing is left in them and the learner made no
    cgroups of their own (the usual end: the init and its namespace are gone), without
    listing any directory. False as soon as one is still in use."""
    for d in outer:
        for level in (d / INNER / SETTLED, d / INNER, d):
            try:
                os.rmdir(level)
            except FileNotFoundError:
                continue
            except OSError as exc:
                if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                    return False
                raise
    return True

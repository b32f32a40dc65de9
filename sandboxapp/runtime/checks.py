"""The checker's outcomes: did the learner's sandbox reach the state an exercise asks for?

Each check reads kernel state from the host side through probes.py, following the rules of
the curriculum: processes are found through the sandbox's cgroup, never by name; each is
read through its pinned /proc directory; namespaces are compared by (st_dev, st_ino);
state that exists only inside a namespace is read by a helper that enters it. Nothing the
learner prints or names can make a check pass.

A check returns what it observed and what it expected, in words a learner can act on.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
import stat
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from . import probes
from . import syscalls as sc
from .nsexec import in_namespace
from .probes import ProcessFacts
from .sandbox import Sandbox, process_start_time


@dataclass(frozen=True)
class Outcome:
    passed: bool
    observed: str
    expected: str


@dataclass(frozen=True)
class CheckKind:
    """One kind of check: its parameters (name -> type) and how it reads the sandbox.

    A quiz check (`answered`) also receives the learner's answer as the parameter
    `answer` when it runs; a lesson file never sets it."""

    params: dict[str, type]
    run: Callable[[Sandbox, dict], Outcome]
    optional: tuple[str, ...] = ()
    answered: bool = False
    # Problems with the parameters' values, once their types are right.
    values: Callable[[dict], list[str]] | None = None


class CheckError(ValueError):
    """A check asked for in a way that cannot work (unknown kind, bad parameters)."""


def _processes(sandbox: Sandbox) -> tuple[ProcessFacts, list[ProcessFacts]]:
    """The sandbox's init and every other process of it."""
    processes = probes.sandbox_processes(sandbox)
    init = next((p for p in processes if p.pid == sandbox.init_pid), None)
    if init is None:
        raise CheckError("the sandbox is not running")
    return init, [p for p in processes if p.pid != sandbox.init_pid]


def _who(p: ProcessFacts) -> str:
    inner = " → ".join(str(n) for n in p.nspid[1:])
    return f"{p.comm} (pid {inner} in your sandbox, {p.pid} on the host)"


def _age_seconds(pid: int) -> float | None:
    """Seconds since `pid` started: its start time is in clock ticks since boot."""
    start = process_start_time(pid)
    if start is None:
        return None
    return time.clock_gettime(time.CLOCK_BOOTTIME) - start / os.sysconf("SC_CLK_TCK")


def long_running_process(sandbox: Sandbox, params: dict) -> Outcome:
    """A process the learner started (not the init, not a terminal's shell) that has been
    alive at least `min_seconds`. Shells are the init's direct children; a learner's
    process is started from one of them."""
    min_seconds = float(params.get("min_seconds", 5))
    init, others = _processes(sandbox)
    expected = f"a process you started, running for at least {min_seconds:g} s"
    candidates = []
    for p in others:
        age = _age_seconds(p.pid)
        if p.ppid != init.pid and age is not None:
            candidates.append((age, p))
    if not candidates:
        return Outcome(False, "no process of yours besides your shell", expected)
    age, oldest = max(candidates, key=lambda c: c[0])
    observed = f"{_who(oldest)} has run for {age:.0f} s"
    return Outcome(age >= min_seconds, observed, expected)


def _nested_pid_inits(
    init: ProcessFacts, others: list[ProcessFacts], depth: int = 1
) -> list[ProcessFacts]:
    return [p for p in others if p.depth_below(init) >= depth and p.nspid[-1] == 1]


def nested_pid_namespace(sandbox: Sandbox, params: dict) -> Outcome:
    """A process that is PID 1 of a pid namespace `depth` levels below the sandbox's."""
    depth = int(params.get("depth", 1))
    init, others = _processes(sandbox)
    levels = "a new pid namespace" if depth == 1 else f"a pid namespace {depth} levels down"
    expected = f"a process that is PID 1 of {levels} inside your sandbox"
    found = _nested_pid_inits(init, others, depth)
    if not found:
        deepest = max((p.depth_below(init) for p in others), default=0)
        observed = (
            "every process is in your sandbox's own pid namespace"
            if deepest == 0
            else f"the deepest process is {deepest} level(s) down, not PID 1 {depth} down"
        )
        return Outcome(False, observed, expected)
    return Outcome(True, f"{_who(found[0])} is PID 1 of its own pid namespace", expected)


def nested_pid_namespace_with_own_proc(sandbox: Sandbox, params: dict) -> Outcome:
    """PID 1 of a nested pid namespace, in a mount namespace of its own with a proc mounted
    on /proc that shows that pid namespace (so `ps` there sees only its own processes)."""
    init, others = _processes(sandbox)
    expected = "PID 1 of a new pid namespace whose /proc is a proc of that namespace"
    found = _nested_pid_inits(init, others)
    if not found:
        return Outcome(False, "no process is PID 1 of a new pid namespace", expected)
    for p in found:
        if p.namespaces["mnt"] == init.namespaces["mnt"]:
            continue
        mounts = [m for m in probes.mountinfo_of(p.pid) if m.mountpoint == "/proc"]
        if mounts and mounts[-1].fstype == "proc" and _proc_shows_own_pid(p):
            return Outcome(True, f"{_who(p)} has its own /proc", expected)
    return Outcome(
        False,
        f"{_who(found[0])} still sees the /proc of your sandbox's pid namespace",
        expected,
    )


def _stat_proc_1_pid_ns() -> list[int]:
    st = os.stat("/proc/1/ns/pid")
    return [st.st_dev, st.st_ino]


def _proc_shows_own_pid(p: ProcessFacts) -> bool:
    """Whether /proc, as `p` sees it, is a proc of p's pid namespace (there, p is pid 1).
    Read by a helper inside p's mount namespace: no path of the learner's is ever
    resolved from the host's root."""
    try:
        seen = in_namespace(p.pid, sc.CLONE_NEWNS, _stat_proc_1_pid_ns)
    except OSError:
        return False
    return tuple(seen) == p.namespaces["pid"]  # type: ignore[arg-type]


def hostname_in_own_uts(sandbox: Sandbox, params: dict) -> Outcome:
    """A process in a UTS namespace of its own whose hostname is `hostname`, while the
    sandbox's hostname is unchanged."""
    wanted = str(params["hostname"])
    init, others = _processes(sandbox)
    mine = sandbox.spec.effective_hostname
    expected = f"hostname {wanted!r} in a new UTS namespace, yours still {mine!r}"
    own = probes.hostname_of(init.pid)
    if own != mine:
        return Outcome(False, f"your sandbox's own hostname was changed to {own!r}", expected)
    seen = []
    for p in others:
        if p.namespaces["uts"] != init.namespaces["uts"]:
            name = probes.hostname_of(p.pid)
            if name == wanted:
                return Outcome(True, f"{_who(p)} sees hostname {name!r}", expected)
            seen.append(name)
    if seen:
        return Outcome(False, f"a new UTS namespace with hostname {seen[0]!r}", expected)
    return Outcome(False, "no process in a UTS namespace of its own", expected)


def tmpfs_in_own_mount_namespace(sandbox: Sandbox, params: dict) -> Outcome:
    """A tmpfs on `path` in a mount namespace of its own, which the sandbox's does not see."""
    path = str(params["path"])
    init, others = _processes(sandbox)
    expected = f"a tmpfs on {path} in a new mount namespace, invisible to your sandbox's"

    def tmpfs_at(pid: int) -> bool:
        return any(m.mountpoint == path and m.fstype == "tmpfs" for m in probes.mountinfo_of(pid))

    if tmpfs_at(init.pid):
        return Outcome(
            False, f"a tmpfs on {path} in your sandbox's own mount namespace: all see it", expected
        )
    private = [p for p in others if p.namespaces["mnt"] != init.namespaces["mnt"]]
    for p in private:
        if tmpfs_at(p.pid):
            return Outcome(
                True, f"{_who(p)} sees a tmpfs on {path}; your sandbox does not", expected
            )
    if private:
        return Outcome(
            False, f"{_who(private[0])} has its own mounts, but no tmpfs on {path}", expected
        )
    return Outcome(False, "every process shares your sandbox's mount namespace", expected)


def root_in_own_user_namespace(sandbox: Sandbox, params: dict) -> Outcome:
    """A process in a user namespace below the sandbox's, where it is uid 0 mapped to one
    id outside, with capabilities there."""
    init, others = _processes(sandbox)
    expected = "a process that is root (uid 0, one id mapped) in a new user namespace"
    nested = [p for p in others if p.namespaces["user"] != init.namespaces["user"]]
    for p in nested:
        fields = p.uid_map.split()
        if len(fields) == 3 and fields[0] == "0" and fields[2] == "1" and p.cap_eff:
            outside = int(fields[1]) - sandbox.uid_base
            return Outcome(
                True,
                f"{_who(p)} is root in a new user namespace; outside it is uid {outside} "
                f"of your sandbox ({fields[1]} on the host)",
                expected,
            )
    if nested:
        p = nested[0]
        shown = p.uid_map or "nothing"
        return Outcome(
            False, f"{_who(p)} is in a new user namespace whose uid_map is {shown}", expected
        )
    return Outcome(False, "every process shares your sandbox's user namespace", expected)


def _network_namespaces(sandbox: Sandbox) -> tuple[ProcessFacts, dict[tuple, ProcessFacts]]:
    """The sandbox's init, and one process for each network namespace of the sandbox."""
    init, others = _processes(sandbox)
    spaces = {init.namespaces["net"]: init}
    for p in others:
        spaces.setdefault(p.namespaces["net"], p)
    return init, spaces


def loopback_only_namespace(sandbox: Sandbox, params: dict) -> Outcome:
    """A network namespace of its own with nothing but `lo`, and `lo` up."""
    init, spaces = _network_namespaces(sandbox)
    expected = "a new network namespace with only lo, and lo up"
    new = [p for ident, p in spaces.items() if ident != init.namespaces["net"]]
    if not new:
        return Outcome(False, "every process shares your sandbox's network namespace", expected)
    seen = ""
    for p in new:
        links = probes.links_of(p.pid)
        names = ", ".join(f"{link['name']} ({'up' if link['up'] else 'down'})" for link in links)
        if len(links) == 1 and links[0]["name"] == "lo" and links[0]["up"]:
            return Outcome(True, f"{_who(p)} has a network namespace with {names}", expected)
        seen = seen or f"{_who(p)} has a network namespace with {names}"
    return Outcome(False, seen, expected)


def _ipv4(link: dict) -> list[str]:
    return [a for a in link["addresses"] if ":" not in a]


def veth_between_namespaces(sandbox: Sandbox, params: dict) -> Outcome:
    """Two network namespaces of the sandbox joined by a veth pair, both ends up with IPv4
    addresses in one subnet, and a packet really crossing: the checker connects from one
    namespace to the other's address (a refused TCP connection proves the route)."""
    init, spaces = _network_namespaces(sandbox)
    expected = "two network namespaces joined by a veth pair, both ends up, addresses in one subnet"
    ends = []
    for p in spaces.values():
        for link in probes.links_of(p.pid):
            if link["kind"] == "veth" and link["up"] and _ipv4(link):
                ends.append((p, link))
    if len(ends) < 2:
        found = ", ".join(f"{link['name']} in {_who(p)}" for p, link in ends) or "none"
        return Outcome(False, f"veth ends that are up with an address: {found}", expected)
    for (pa, a), (pb, b) in itertools.combinations(ends, 2):
        if pa.namespaces["net"] == pb.namespaces["net"]:
            continue
        net_a = ipaddress.ip_interface(_ipv4(a)[0]).network
        b_addr = ipaddress.ip_interface(_ipv4(b)[0])
        # Any answer, even "refused", proves a packet crossed the link.
        if b_addr.ip in net_a and _connect_from(pa.pid, str(b_addr.ip), 9) != "timeout":
            return Outcome(
                True,
                f"{a['name']} ({_ipv4(a)[0]}) and {b['name']} ({_ipv4(b)[0]}) in two "
                "namespaces; the checker reached one from the other",
                expected,
            )
    return Outcome(
        False, "veth ends are up, but no two in different namespaces reach each other", expected
    )


def _connect_outcome(address: str, port: int) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect((address, port))
        except ConnectionRefusedError:
            return "refused"
        except OSError:
            return "timeout"
        return "connected"


def _connect_from(pid: int, address: str, port: int) -> str:
    """The checker's own TCP connection, made inside the network namespace of `pid`:
    connected, refused, or timeout (silence: no route or no link)."""
    return str(in_namespace(pid, sc.CLONE_NEWNET, lambda: _connect_outcome(address, port)))


def oom_kill_in_child_cgroup(sandbox: Sandbox, params: dict) -> Outcome:
    """A cgroup the learner made under their own, with a memory limit, in which the kernel
    OOM-killed a process; the sandbox's own limit untouched. Evidence of enforcement (the
    kill counter), not of configuration."""
    expected = "a cgroup of yours with a memory limit, where the kernel OOM-killed a process"
    own = sandbox.cgroup.limits()["memory_bytes"]
    if own != sandbox.spec.limits.memory_bytes:
        return Outcome(False, f"your sandbox's own memory limit is {own}, not its own", expected)
    children = sandbox.cgroup.child_cgroups()
    for child in children:
        if child.memory_limit is not None and child.oom_kills:
            mib = child.memory_limit / 2**20
            return Outcome(
                True,
                f"cgroup {child.path} (limit {mib:g} MiB): {child.oom_kills} process(es) "
                "OOM-killed by the kernel",
                expected,
            )
    limited = [c for c in children if c.memory_limit is not None]
    if limited:
        c = limited[0]
        return Outcome(
            False,
            f"cgroup {c.path} has a limit of {c.memory_limit / 2**20:g} MiB, and nothing in it "
            "was OOM-killed yet",
            expected,
        )
    if children:
        return Outcome(False, f"cgroup {children[0].path} has no memory limit", expected)
    return Outcome(False, "no cgroup of your own under your sandbox's", expected)


def cpu_throttled_in_child_cgroup(sandbox: Sandbox, params: dict) -> Outcome:
    """A cgroup the learner made with a CPU quota, which the kernel has throttled."""
    expected = "a cgroup of yours with a CPU quota, throttled by the kernel"
    children = sandbox.cgroup.child_cgroups()
    for child in children:
        if child.cpu_quota_us is not None and child.nr_throttled:
            return Outcome(
                True,
                f"cgroup {child.path} (quota {child.cpu_quota_us} µs per period): throttled "
                f"{child.nr_throttled} time(s)",
                expected,
            )
    quota = [c for c in children if c.cpu_quota_us is not None]
    if quota:
        return Outcome(
            False, f"cgroup {quota[0].path} has a CPU quota but was never throttled", expected
        )
    if children:
        return Outcome(False, f"cgroup {children[0].path} has no CPU quota", expected)
    return Outcome(False, "no cgroup of your own under your sandbox's", expected)


def _root_mount(pid: int) -> probes.Mount | None:
    """The mount `pid` sees as its /, or None if it is gone."""
    try:
        roots = [m for m in probes.mountinfo_of(pid) if m.mountpoint == "/"]
    except OSError:
        return None
    return roots[-1] if roots else None


def _learners_overlay(mount: probes.Mount | None, own_root: probes.Mount | None) -> bool:
    """An overlay the learner mounted, not the sandbox's own overlay root. Mount ids differ
    in every copy of a mount namespace; the filesystem's device number does not."""
    return (
        mount is not None
        and mount.fstype == "overlay"
        and (own_root is None or mount.device != own_root.device)
    )


def root_is_new_overlay(sandbox: Sandbox, params: dict) -> Outcome:
    """A process whose root directory is an overlay the learner mounted: an image of
    layers, entered with chroot or pivot_root (not the sandbox's own overlay root)."""
    init, others = _processes(sandbox)
    expected = "a process whose / is an overlay you mounted (not your sandbox's own)"
    own_root = _root_mount(init.pid)
    for p in others:
        if _learners_overlay(_root_mount(p.pid), own_root):
            return Outcome(True, f"{_who(p)} has an overlay of your own as its /", expected)
    return Outcome(False, "every process still has your sandbox's own / as its root", expected)


def _whiteouts(upper: str, limit: int = 2000) -> list[str]:
    """Whiteouts (character devices 0,0) in an overlay's upper layer, as paths below it."""
    found, seen = [], 0
    for directory, dirs, files in os.walk(upper):
        for name in dirs + files:
            seen += 1
            if seen > limit:
                return found
            st = os.lstat(os.path.join(directory, name))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                found.append(os.path.relpath(os.path.join(directory, name), upper))
    return found


def whiteout_in_overlay(sandbox: Sandbox, params: dict) -> Outcome:
    """A file of a lower layer deleted in an overlay the learner mounted: its upper layer
    holds a whiteout. Read by a helper inside that process's mount namespace."""
    init, others = _processes(sandbox)
    expected = "a lower-layer file deleted in your overlay: a whiteout in its upper layer"
    own_root = _root_mount(init.pid)
    overlays = 0
    for p in others:
        if p.namespaces["mnt"] == init.namespaces["mnt"]:
            continue
        mounts = [m for m in probes.mountinfo_of(p.pid) if _learners_overlay(m, own_root)]
        for mount in mounts:
            overlays += 1
            options = dict(o.split("=", 1) for o in mount.super_options.split(",") if "=" in o)
            upper = options.get("upperdir")
            if upper is None:
                continue
            try:
                found = in_namespace(p.pid, sc.CLONE_NEWNS, lambda u=upper: _whiteouts(u))
            except OSError:
                continue
            if found:
                return Outcome(
                    True, f"your overlay's upper layer hides {found[0]} with a whiteout", expected
                )
    if overlays:
        return Outcome(
            False, "an overlay of yours, with no file deleted from its lower layers", expected
        )
    return Outcome(False, "no overlay of yours is mounted in a new mount namespace", expected)


def sidecar_shares_network(sandbox: Sandbox, params: dict) -> Outcome:
    """Two processes in different pid namespaces that share one network namespace of their
    own (not the sandbox's): a pod's "sidecar", joined to its app's network only."""
    init, others = _processes(sandbox)
    expected = "two processes in different pid namespaces sharing one new network namespace"
    for a, b in itertools.combinations(others, 2):
        if (
            a.namespaces["net"] == b.namespaces["net"] != init.namespaces["net"]
            and a.namespaces["pid"] != b.namespaces["pid"]
        ):
            return Outcome(
                True, f"{_who(a)} and {_who(b)} share a network namespace, not pids", expected
            )
    return Outcome(
        False, "no two processes share a new network namespace across pid namespaces", expected
    )


NEW_NAMESPACES = ("user", "pid", "mnt", "net", "uts", "ipc")


def own_container(sandbox: Sandbox, params: dict) -> Outcome:
    """The capstone: one process in a new namespace of every kind, whose / is an overlay of
    the learner's, with a bounding set smaller than the sandbox's."""
    init, others = _processes(sandbox)
    expected = (
        "one process with new user, pid, mount, net, uts and ipc namespaces, an overlay root "
        "of yours and fewer capabilities"
    )
    own_root = _root_mount(init.pid)
    best, best_missing = None, list(NEW_NAMESPACES) + ["overlay root", "dropped capability"]
    for p in others:
        missing = [ns for ns in NEW_NAMESPACES if p.namespaces[ns] == init.namespaces[ns]]
        if not _learners_overlay(_root_mount(p.pid), own_root):
            missing.append("overlay root")
        # Fewer than the sandbox gives every process (its init's set) is a drop of theirs.
        if not (init.cap_bnd & ~p.cap_bnd):
            missing.append("dropped capability")
        if len(missing) < len(best_missing):
            best, best_missing = p, missing
    if best is None:
        return Outcome(False, "no process of yours besides your shell", expected)
    if not best_missing:
        return Outcome(True, f"{_who(best)} is a container you built yourself", expected)
    return Outcome(
        False, f"closest: {_who(best)}, still missing {', '.join(best_missing)}", expected
    )


def _answer(params: dict) -> str:
    return str(params.get("answer", "")).strip()


def namespace_inode_answer(sandbox: Sandbox, params: dict) -> Outcome:
    """A quiz: the inode of the sandbox's own `namespace`, different for every sandbox."""
    ns = str(params["namespace"])
    init, _ = _processes(sandbox)
    expected = f"the inode number of your sandbox's {ns} namespace"
    given = _answer(params).strip("[]").removeprefix(f"{ns}:[").strip("[]")
    if not given:
        return Outcome(False, "no answer given", expected)
    if given == str(init.namespaces[ns][1]):
        return Outcome(True, f"{given} is your sandbox's {ns} namespace", expected)
    # Never the right number: the learner finds it in their own sandbox.
    return Outcome(False, f"{given} is not the inode of your sandbox's {ns} namespace", expected)


def unshared_namespaces_answer(sandbox: Sandbox, params: dict) -> Outcome:
    """A quiz: which namespaces the learner's shell does not share with the host, computed
    from this sandbox's namespaces and the host's."""
    init, _ = _processes(sandbox)
    host = probes.host_namespaces()
    right = {ns for ns in probes.NAMESPACES if init.namespaces[ns] != host[ns]}
    given = {a.strip() for a in _answer(params).split(",") if a.strip()}
    expected = "every namespace your shell does not share with the host, and no other"
    if not given:
        return Outcome(False, "no answer given", expected)
    if given == right:
        return Outcome(True, f"{', '.join(sorted(given))}: all of them, and only them", expected)
    wrong = given - right
    if wrong:
        return Outcome(False, f"you share {', '.join(sorted(wrong))} with the host", expected)
    return Outcome(False, f"{len(right - given)} more namespace(s) are your own", expected)


def fork_bomb_stopped_in_child_cgroup(sandbox: Sandbox, params: dict) -> Outcome:
    """A cgroup the learner made with a pids limit, where the kernel refused a fork."""
    expected = "a cgroup of yours with a pids limit, where the kernel refused to fork"
    children = sandbox.cgroup.child_cgroups()
    for child in children:
        if child.pids_max is not None and child.pids_max_hit:
            return Outcome(
                True,
                f"cgroup {child.path} (pids.max {child.pids_max}): the kernel refused "
                f"{child.pids_max_hit} fork(s)",
                expected,
            )
    limited = [c for c in children if c.pids_max is not None]
    if limited:
        return Outcome(
            False,
            f"cgroup {limited[0].path} has pids.max {limited[0].pids_max}, never hit",
            expected,
        )
    return Outcome(False, "no cgroup of your own with a pids limit", expected)


LIMIT_COUNTERS = {
    "pids_max_hit": "your sandbox's pids limit refused a fork",
    "oom_kill": "the kernel OOM-killed a process at your sandbox's memory limit",
}


def sandbox_limit_fired(sandbox: Sandbox, params: dict) -> Outcome:
    """One of the host's own defences around the whole sandbox fired: `counter` is
    `pids_max_hit` (a fork bomb hit the sandbox's pids limit) or `oom_kill` (a memory bomb
    was killed at the sandbox's memory limit). The sandbox lives on."""
    counter = str(params["counter"])
    what = LIMIT_COUNTERS[counter]
    expected = f"evidence that {what}"
    count = sandbox.cgroup.counters().get(counter, 0)
    if count:
        return Outcome(True, f"{what} {count} time(s), and your sandbox is still here", expected)
    return Outcome(False, "the host's limits around your sandbox have not fired yet", expected)


def _shm_segments() -> int:
    with open("/proc/sysvipc/shm") as f:
        return max(0, len(f.read().splitlines()) - 1)


def shm_in_own_ipc_namespace(sandbox: Sandbox, params: dict) -> Outcome:
    """A System V shared-memory segment in an IPC namespace of its own, while the
    sandbox's IPC namespace has none: each read by a helper inside that namespace."""
    init, others = _processes(sandbox)
    expected = "a shared-memory segment in a new IPC namespace, none in your sandbox's"
    own = in_namespace(init.pid, sc.CLONE_NEWIPC, _shm_segments)
    if own:
        return Outcome(False, f"{own} segment(s) in your sandbox's own IPC namespace", expected)
    seen: set = set()
    for p in others:
        ident = p.namespaces["ipc"]
        if ident == init.namespaces["ipc"] or ident in seen:
            continue
        seen.add(ident)
        count = in_namespace(p.pid, sc.CLONE_NEWIPC, _shm_segments)
        if count:
            return Outcome(
                True, f"{_who(p)} sees {count} segment(s) that your sandbox does not", expected
            )
    if seen:
        return Outcome(False, "a new IPC namespace, with no shared-memory segment in it", expected)
    return Outcome(False, "every process shares your sandbox's IPC namespace", expected)


def _listening_ports() -> list[int]:
    ports = []
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(name) as f:
            for line in f.read().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # TCP_LISTEN
                    ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def server_reached_across_namespaces(sandbox: Sandbox, params: dict) -> Outcome:
    """A server listening on `port` in one network namespace of the sandbox, which the
    checker itself reaches from another: a full TCP handshake across the learner's link."""
    port = int(params["port"])
    _, spaces = _network_namespaces(sandbox)
    expected = f"a server on port {port} in one network namespace, reached from another"
    servers = [
        p for p in spaces.values() if port in in_namespace(p.pid, sc.CLONE_NEWNET, _listening_ports)
    ]
    if not servers:
        return Outcome(False, f"nothing listens on port {port} in any of your namespaces", expected)
    for server in servers:
        addresses = [
            a.split("/")[0]
            for link in probes.links_of(server.pid)
            if link["name"] != "lo"
            for a in _ipv4(link)
        ]
        for client in spaces.values():
            if client.namespaces["net"] == server.namespaces["net"]:
                continue
            for address in addresses:
                if _connect_from(client.pid, address, port) == "connected":
                    return Outcome(
                        True,
                        f"the checker connected from another namespace to {address}:{port}, "
                        "where your server listens",
                        expected,
                    )
    return Outcome(False, f"a server on port {port}, but no other namespace reaches it", expected)


def user_ns_maps_root_to(sandbox: Sandbox, params: dict) -> Outcome:
    """A new user namespace whose root is the sandbox's uid `outside`, written by hand."""
    outside = int(params["outside"])
    init, others = _processes(sandbox)
    want = f"0 {sandbox.uid_base + outside} 1"
    expected = f"a new user namespace whose uid_map maps 0 to uid {outside} of your sandbox, one id"
    nested = [p for p in others if p.namespaces["user"] != init.namespaces["user"]]
    for p in nested:
        if p.uid_map == want:
            return Outcome(
                True, f"{_who(p)}: root inside is uid {outside} of your sandbox", expected
            )
    if nested:
        shown = nested[0].uid_map or "empty"
        return Outcome(
            False, f"a new user namespace whose uid_map (from the host) is {shown}", expected
        )
    return Outcome(False, "every process shares your sandbox's user namespace", expected)


def new_namespace(sandbox: Sandbox, params: dict) -> Outcome:
    """A process in a `namespace` of its own kind, other than the sandbox's."""
    ns = str(params["namespace"])
    init, others = _processes(sandbox)
    expected = f"a process in a new {ns} namespace"
    for p in others:
        if p.namespaces[ns] != init.namespaces[ns]:
            return Outcome(True, f"{_who(p)} is in a {ns} namespace of its own", expected)
    return Outcome(False, f"every process shares your sandbox's {ns} namespace", expected)


def extra_seccomp_filter(sandbox: Sandbox, params: dict) -> Outcome:
    """A process running under a seccomp filter of the learner's, on top of the one the
    runtime gives the sandbox's init and so every process of the sandbox."""
    init, others = _processes(sandbox)
    baseline = init.seccomp_filters
    expected = f"a process with more than your sandbox's {baseline} seccomp filter(s)"
    for p in others:
        if p.seccomp_filters > baseline:
            return Outcome(
                True, f"{_who(p)} runs under {p.seccomp_filters} seccomp filters", expected
            )
    return Outcome(False, "every process has only your sandbox's own filter", expected)


def loopback_probe_answer(sandbox: Sandbox, params: dict) -> Outcome:
    """A quiz: what happens when the sandbox connects to 127.0.0.1:`port`, where the host's
    web app listens on the host's loopback? The checker tries it from inside the sandbox's
    network namespace and compares with the learner's answer."""
    port = int(params["port"])
    init, _ = _processes(sandbox)
    seen = _connect_from(init.pid, "127.0.0.1", port)
    expected = f"what a connection to 127.0.0.1:{port} from your sandbox really does"
    given = _answer(params).lower()
    if given == seen:
        return Outcome(True, f"the checker's own connection was {seen} too", expected)
    return Outcome(False, f"{given or 'no answer'} is not what happens", expected)


CLONE_HEADER = "/usr/include/linux/sched.h"


def clone_flags_answer(sandbox: Sandbox, params: dict) -> Outcome:
    """A quiz: how many CLONE_NEW* flags the kernel headers define (read on the host)."""
    with open(CLONE_HEADER) as f:
        count = sum(
            1
            for line in f
            if line.split()[:2][1:2]
            and line.split()[1].startswith("CLONE_NEW")
            and line.startswith("#define")
        )
    expected = f"the number of CLONE_NEW flags in {CLONE_HEADER}"
    given = _answer(params)
    if given == str(count):
        return Outcome(True, f"{count} flags, one per kind of namespace", expected)
    return Outcome(False, f"{given or 'no answer'} is not the number the header defines", expected)


def missing_capabilities_answer(sandbox: Sandbox, params: dict) -> Outcome:
    """A quiz: which of the capabilities `among` the sandbox's root does not have."""
    init, others = _processes(sandbox)
    bounding = init.cap_bnd
    among = [c.strip() for c in str(params["among"]).split(",")]
    right = {c for c in among if not bounding & (1 << CAPABILITY_BITS[c])}
    given = {_capability(a.strip()) for a in _answer(params).split(",") if a.strip()}
    expected = "each listed capability your sandbox's root lacks, and no other"
    if given == right:
        return Outcome(True, f"your root lacks {', '.join(sorted(right))}", expected)
    if given - right:
        return Outcome(False, f"your root does have {', '.join(sorted(given - right))}", expected)
    return Outcome(False, f"{len(right - given)} more of them are missing", expected)


def mount_propagated_into_child(sandbox: Sandbox, params: dict) -> Outcome:
    """A tmpfs mounted on `path` in the sandbox's mount namespace that also appears in a
    child mount namespace through propagation (its copy there is a slave or shared)."""
    path = str(params["path"])
    init, others = _processes(sandbox)
    expected = f"a tmpfs on {path} in your sandbox that propagated into a new mount namespace"
    mine = [
        m for m in probes.mountinfo_of(init.pid) if m.mountpoint == path and m.fstype == "tmpfs"
    ]
    if not mine:
        return Outcome(False, f"no tmpfs on {path} in your sandbox's own mount namespace", expected)
    children = [p for p in others if p.namespaces["mnt"] != init.namespaces["mnt"]]
    for p in children:
        theirs = [
            m for m in probes.mountinfo_of(p.pid) if m.mountpoint == path and m.fstype == "tmpfs"
        ]
        if (
            theirs
            and theirs[-1].device == mine[-1].device
            and ("master:" in theirs[-1].propagation or "shared:" in theirs[-1].propagation)
        ):
            return Outcome(
                True, f"{_who(p)} received your tmpfs on {path} by propagation", expected
            )
    if children:
        return Outcome(False, f"no new mount namespace received the tmpfs on {path}", expected)
    return Outcome(False, "every process shares your sandbox's mount namespace", expected)


# The capabilities a lesson may ask to drop, by the name capsh and capabilities(7) use.
CAPABILITY_BITS = {
    "chown": 0,
    "dac_override": 1,
    "kill": 5,
    "setuid": 7,
    "net_bind_service": 10,
    "net_admin": 12,
    "net_raw": 13,
    "sys_module": 16,
    "sys_rawio": 17,
    "sys_chroot": 18,
    "sys_ptrace": 19,
    "sys_admin": 21,
    "sys_boot": 22,
    "sys_time": 25,
    "mknod": 27,
}


def capability_dropped(sandbox: Sandbox, params: dict) -> Outcome:
    """A running process of the sandbox whose bounding set has lost `capability`, which the
    sandbox's root still holds: dropped for good, for it and all it starts."""
    name = _capability(str(params["capability"]))
    bit = 1 << CAPABILITY_BITS[name]
    init, others = _processes(sandbox)
    expected = f"a process of yours without cap_{name}, even in its bounding set"
    if not init.cap_bnd & bit:
        return Outcome(False, f"your sandbox itself has no cap_{name} to drop", expected)
    for p in others:
        if not p.cap_bnd & bit and not p.cap_eff & bit:
            return Outcome(True, f"{_who(p)} has dropped cap_{name} for good", expected)
    return Outcome(
        False, f"every process of yours still has cap_{name} in its bounding set", expected
    )


def _one_of(key: str, allowed: Collection[str], normal: Callable[[str], str] = str) -> Callable:
    """A `values` rule: parameter `key`, when given, is one of `allowed`."""

    def problems(params: dict) -> list[str]:
        if key in params and normal(params[key]) not in allowed:
            return [f"{key}: one of {', '.join(sorted(allowed))}"]
        return []

    return problems


def _capability(name: str) -> str:
    return name.lower().removeprefix("cap_")


def _capabilities_among(params: dict) -> list[str]:
    unknown = [c for c in params["among"].split(",") if c.strip() not in CAPABILITY_BITS]
    return [f"among: capabilities from {', '.join(sorted(CAPABILITY_BITS))}"] if unknown else []


CHECKS: dict[str, CheckKind] = {
    "long_running_process": CheckKind(
        {"min_seconds": float}, long_running_process, optional=("min_seconds",)
    ),
    "nested_pid_namespace": CheckKind({"depth": int}, nested_pid_namespace, optional=("depth",)),
    "nested_pid_namespace_with_own_proc": CheckKind({}, nested_pid_namespace_with_own_proc),
    "hostname_in_own_uts": CheckKind({"hostname": str}, hostname_in_own_uts),
    "tmpfs_in_own_mount_namespace": CheckKind({"path": str}, tmpfs_in_own_mount_namespace),
    "root_in_own_user_namespace": CheckKind({}, root_in_own_user_namespace),
    "loopback_only_namespace": CheckKind({}, loopback_only_namespace),
    "veth_between_namespaces": CheckKind({}, veth_between_namespaces),
    "oom_kill_in_child_cgroup": CheckKind({}, oom_kill_in_child_cgroup),
    "capability_dropped": CheckKind(
        {"capability": str},
        capability_dropped,
        values=_one_of("capability", CAPABILITY_BITS, _capability),
    ),
    "cpu_throttled_in_child_cgroup": CheckKind({}, cpu_throttled_in_child_cgroup),
    "root_is_new_overlay": CheckKind({}, root_is_new_overlay),
    "sidecar_shares_network": CheckKind({}, sidecar_shares_network),
    "whiteout_in_overlay": CheckKind({}, whiteout_in_overlay),
    "own_container": CheckKind({}, own_container),
    "fork_bomb_stopped_in_child_cgroup": CheckKind({}, fork_bomb_stopped_in_child_cgroup),
    "sandbox_limit_fired": CheckKind(
        {"counter": str}, sandbox_limit_fired, values=_one_of("counter", LIMIT_COUNTERS)
    ),
    "shm_in_own_ipc_namespace": CheckKind({}, shm_in_own_ipc_namespace),
    "server_reached_across_namespaces": CheckKind({"port": int}, server_reached_across_namespaces),
    "user_ns_maps_root_to": CheckKind({"outside": int}, user_ns_maps_root_to),
    "new_namespace": CheckKind(
        {"namespace": str}, new_namespace, values=_one_of("namespace", probes.NAMESPACES)
    ),
    "extra_seccomp_filter": CheckKind({}, extra_seccomp_filter),
    "mount_propagated_into_child": CheckKind({"path": str}, mount_propagated_into_child),
    "loopback_probe_answer": CheckKind({"port": int}, loopback_probe_answer, answered=True),
    "clone_flags_answer": CheckKind({}, clone_flags_answer, answered=True),
    "missing_capabilities_answer": CheckKind(
        {"among": str}, missing_capabilities_answer, answered=True, values=_capabilities_among
    ),
    "namespace_inode_answer": CheckKind({"namespace": str}, namespace_inode_answer, answered=True),
    "unshared_namespaces_answer": CheckKind({}, unshared_namespaces_answer, answered=True),
}


def check_problems(name: object, params: object, answer: bool = False) -> list[str]:
    """What is wrong with asking for check `name` with `params` (empty when nothing).
    With `answer`, params may carry the learner's answer for a quiz check."""
    kind = CHECKS.get(name) if isinstance(name, str) else None
    if kind is None:
        return [f"unknown check {name!r}; known: {', '.join(sorted(CHECKS))}"]
    if not isinstance(params, dict):
        return ["params must be a mapping"]
    if kind.answered and answer and "answer" in params:
        if not isinstance(params["answer"], str) or len(params["answer"]) > 200:
            return ["answer must be text of at most 200 characters"]
        params = {k: v for k, v in params.items() if k != "answer"}
    problems = [f"unknown parameter {key!r}" for key in params if key not in kind.params]
    for key, kind_type in kind.params.items():
        if key not in params:
            if key not in kind.optional:
                problems.append(f"missing parameter {key!r} ({kind_type.__name__})")
        elif not isinstance(params[key], kind_type) and not (
            kind_type is float and isinstance(params[key], int)
        ):
            problems.append(f"parameter {key!r} must be a {kind_type.__name__}")
    if not problems and kind.values is not None:
        problems = kind.values(params)
    return problems


def check_run(sandbox: Sandbox, name: str, params: dict) -> Outcome:
    problems = check_problems(name, params, answer=True)
    if problems:
        raise CheckError("; ".join(problems))
    return CHECKS[name].run(sandbox, params)

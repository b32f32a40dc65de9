"""Host-side facts about a sandbox, for the checker. Nothing here trusts the learner.

The rules (../shared/CURRICULUM.md): find processes through the sandbox's cgroup, never by
name; pin a process (a directory fd of /proc/PID) before reading it, so a reused pid cannot
mislead; compare namespaces by (st_dev, st_ino); read state that exists only inside a
namespace (hostname, links, addresses) from a short-lived helper that enters it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass

from . import network
from . import syscalls as sc
from .nsexec import in_namespace
from .sandbox import Sandbox

NAMESPACES = ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup")
NsId = tuple[int, int]


@dataclass(frozen=True)
class ProcessFacts:
    """One process of a sandbox as the host sees it, read through its pinned /proc dir."""

    pid: int  # host pid
    ppid: int  # host pid of the parent (for the init: its creator on the host)
    nspid: tuple[int, ...]  # pid in each pid namespace, outermost first
    comm: str
    namespaces: dict[str, NsId]
    uid_map: str
    gid_map: str
    cap_eff: int
    cap_bnd: int
    no_new_privs: bool
    seccomp_mode: int
    cgroup: str
    seccomp_filters: int = 0

    def depth_below(self, other: ProcessFacts) -> int:
        """How many pid namespaces deeper than `other` this process lives."""
        return len(self.nspid) - len(other.nspid)


# What a read through /proc/PID fails with once the process has ended. EINVAL: uid_map and
# gid_map, or mountinfo, of a process that ended after it was pinned (no task behind it).
GONE = (errno.ENOENT, errno.ESRCH, errno.EINVAL)


@contextmanager
def pinned(pid: int) -> Iterator[int]:
    """A directory fd of /proc/PID: reads through it fail rather than reach a new process."""
    fd = os.open(f"/proc/{pid}", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _read(dirfd: int, name: str) -> str:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dirfd)
    with os.fdopen(fd) as f:
        return f.read()


def process_facts(pid: int) -> ProcessFacts | None:
    """Facts of one process, or None if it is gone (or went while being read)."""
    try:
        with pinned(pid) as d:
            status = dict(
                line.split(":", 1) for line in _read(d, "status").splitlines() if ":" in line
            )
            namespaces = {}
            for ns in NAMESPACES:
                st = os.stat(f"ns/{ns}", dir_fd=d)
                namespaces[ns] = (st.st_dev, st.st_ino)
            return ProcessFacts(
                pid=pid,
                ppid=int(status["PPid"]),
                nspid=tuple(int(p) for p in status["NSpid"].split()),
                comm=_read(d, "comm").strip(),
                namespaces=namespaces,
                uid_map=" ".join(_read(d, "uid_map").split()),
                gid_map=" ".join(_read(d, "gid_map").split()),
                cap_eff=int(status["CapEff"], 16),
                cap_bnd=int(status["CapBnd"], 16),
                no_new_privs=status["NoNewPrivs"].strip() == "1",
                seccomp_mode=int(status["Seccomp"]),
                cgroup=_read(d, "cgroup"),
                seccomp_filters=int(status.get("Seccomp_filters", "0")),
            )
    except KeyError:
        return None
    except OSError as exc:
        # Gone, or going, while being read; the checker reads again anyway. EACCES/EPERM: a
        # namespace link refused for a moment as a process was changing (seen once in many
        # thousand reads).
        if exc.errno in (*GONE, errno.EACCES, errno.EPERM):
            return None
        raise


def sandbox_processes(sandbox: Sandbox) -> list[ProcessFacts]:
    """Every live process of the sandbox, found through its host-owned cgroup."""
    facts = (process_facts(pid) for pid in sandbox.cgroup.procs())
    return [f for f in facts if f is not None]


def snapshot(sandbox: Sandbox) -> dict[str, object]:
    """The sandbox's process tree with each process's namespaces, id map and cgroup, as
    plain data (for the namespace explorer). Namespaces are named relative to the
    sandbox's own: "sandbox", "host", or "new N" for ones the learner made."""
    processes = sandbox_processes(sandbox)
    init = next((p for p in processes if p.pid == sandbox.init_pid), None)
    host = host_namespaces()
    names: dict[NsId, str] = {}
    for p in processes:
        for ns, ident in sorted(p.namespaces.items()):
            if ident not in names:
                if init is not None and ident == init.namespaces[ns]:
                    names[ident] = "sandbox"
                elif ident == host[ns]:
                    names[ident] = "host"
                else:
                    names[ident] = (
                        f"new {len([n for n in names.values() if n.startswith('new')]) + 1}"
                    )
    return {
        "sandbox": sandbox.name,
        "processes": [
            {
                "pid": p.nspid[1] if len(p.nspid) > 1 else p.nspid[0],
                "nspid": list(p.nspid[1:]),
                "parent": p.ppid,
                "host_pid": p.pid,
                "command": p.comm,
                "namespaces": {
                    ns: {"inode": ident[1], "is": names[ident]}
                    for ns, ident in p.namespaces.items()
                },
                "uid_map": p.uid_map,
                "cgroup": _cgroup_path(p.cgroup),
            }
            for p in processes
        ],
    }


def _cgroup_path(text: str) -> str:
    # The memory (v1) or unified (v2) line: the sandbox's own cgroup tree as seen from the host.
    for line in text.splitlines():
        number, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(",") or (number == "0" and controllers == ""):
            return path
    return ""


@dataclass(frozen=True)
class Mount:
    mount_id: int
    parent_id: int
    device: str  # major:minor of the filesystem: the same in every copy of a mount
    root: str
    mountpoint: str
    options: str
    propagation: str
    fstype: str
    source: str
    super_options: str = ""


def mountinfo_of(pid: int) -> list[Mount]:
    """The mounts `pid` sees, read through its pinned /proc directory; none once it has
    ended. Checks read the mounts of processes listed a moment before: a learner's
    short-lived command may be gone by then, and is no evidence either way."""
    try:
        with pinned(pid) as d:
            text = _read(d, "mountinfo")
    except OSError as exc:
        if exc.errno in GONE:
            return []
        raise
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        sep = fields.index("-")
        mounts.append(
            Mount(
                mount_id=int(fields[0]),
                parent_id=int(fields[1]),
                device=fields[2],
                root=fields[3],
                mountpoint=fields[4],
                options=fields[5],
                propagation=" ".join(fields[6:sep]),
                fstype=fields[sep + 1],
                source=fields[sep + 2],
                super_options=fields[sep + 3] if len(fields) > sep + 3 else "",
            )
        )
    return mounts


def host_namespaces() -> dict[str, NsId]:
    """The host's namespaces, as seen from this (host-side) process."""
    ids = {}
    for ns in NAMESPACES:
        st = os.stat(f"/proc/self/ns/{ns}")
        ids[ns] = (st.st_dev, st.st_ino)
    return ids


def hostname_of(pid: int) -> str:
    """The hostname in the UTS namespace of `pid`."""
    return str(in_namespace(pid, sc.CLONE_NEWUTS, lambda: os.uname().nodename))


def _links_here() -> list[dict[str, object]]:
    with network.netlink() as ip:
        addresses: dict[int, list[str]] = {}
        for addr in ip.get_addr():
            addresses.setdefault(addr["index"], []).append(
                f"{addr.get('address')}/{addr['prefixlen']}"
            )
        return [
            {
                "name": link.get("ifname"),
                "kind": link.get(("linkinfo", "kind")),
                "up": bool(link["flags"] & 1),
                "addresses": addresses.get(link["index"], []),
            }
            for link in ip.get_links()
        ]


def links_of(pid: int) -> list[dict[str, object]]:
    """Links, their kinds, state and addresses, read by netlink in the netns of `pid`."""
    network.netlink_loaded()
    return list(in_namespace(pid, sc.CLONE_NEWNET, _links_here))  # type: ignore[arg-type]


def _facts_data(facts: ProcessFacts) -> dict[str, object]:
    data = asdict(facts)
    data["namespaces"] = {ns: list(ident) for ns, ident in facts.namespaces.items()}
    return data


def _member(sandbox: Sandbox, params: dict[str, object]) -> int:
    """The host pid named by params["pid"] (default: the init), if it is the sandbox's."""
    pid = params.get("pid", sandbox.init_pid)
    if not isinstance(pid, int) or pid not in sandbox.cgroup.procs():
        raise ValueError(f"process {pid!r} is not in this sandbox")
    return pid


# What sandboxd's `probe` operation can read, by name. Each takes the sandbox and the
# request's parameters and returns plain data; the checker compares it with what a step
# expects.
PROBES: dict[str, Callable[[Sandbox, dict[str, object]], object]] = {
    "processes": lambda sandbox, _: [_facts_data(f) for f in sandbox_processes(sandbox)],
    "host_namespaces": lambda _, __: {ns: list(i) for ns, i in host_namespaces().items()},
    "hostname": lambda sandbox, params: hostname_of(_member(sandbox, params)),
    "links": lambda sandbox, params: links_of(_member(sandbox, params)),
    "mounts": lambda sandbox, params: [asdict(m) for m in mountinfo_of(_member(sandbox, params))],
    "snapshot": lambda sandbox, _: snapshot(sandbox),
}

"""Links between one learner's sandboxes (pyroute2), for the topology lessons.

Each sandbox has its own network namespace with only loopback, up (child.py). A fresh
network namespace has no route anywhere, so the host's loopback services, other
learners and the outside world are all unreachable by construction. The only links ever
made are veth pairs between one learner's own nodes.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .nsexec import in_namespace
from .syscalls import CLONE_NEWNET

if TYPE_CHECKING:
    from pyroute2 import IPRoute

# Host-side names of a veth pair while it is being handed to two sandboxes. Reconcile
# deletes any left in the host's namespace by a crash in between.
VETH_PREFIX = "cntd"


def netlink() -> IPRoute:
    """A netlink socket (pyroute2's) in the calling process's network namespace.

    pyroute2 is imported by the first call, not with this module: it adds about 10 MiB to
    every process that imports it and 0.3 s to its start, and each web worker imports the
    runtime (for the checks' names) but never makes a link. A helper forked into a
    namespace imports it again unless its parent has: see `netlink_loaded`.
    """
    from pyroute2 import IPRoute

    return IPRoute()


def netlink_loaded() -> None:
    """Import pyroute2 here, so that helpers forked from this process find it loaded."""
    import pyroute2  # noqa: F401


def link_nodes(a_pid: int, b_pid: int, a_end: NodeEnd, b_end: NodeEnd) -> None:
    """Join two sandboxes (inits `a_pid`, `b_pid`) of one learner by a veth pair.

    Made in the host's namespace under throwaway names, each end moved into its sandbox's
    network namespace, then named, addressed and brought up in there.
    """
    tag = os.urandom(4).hex()
    host_a, host_b = f"{VETH_PREFIX}{tag}a", f"{VETH_PREFIX}{tag}b"
    with netlink() as ip:
        ip.link("add", ifname=host_a, kind="veth", peer=host_b)
        try:
            for name, pid in ((host_a, a_pid), (host_b, b_pid)):
                (index,) = ip.link_lookup(ifname=name)
                ip.link("set", index=index, net_ns_pid=pid)
        except BaseException:
            # Whichever end is still here: deleting one end deletes the pair.
            for name in (host_a, host_b):
                for index in ip.link_lookup(ifname=name):
                    ip.link("del", index=index)
            raise
    for pid, host_name, end in ((a_pid, host_a, a_end), (b_pid, host_b, b_end)):
        in_namespace(pid, CLONE_NEWNET, lambda h=host_name, e=end: _configure(h, e))


@dataclass(frozen=True)
class NodeEnd:
    """One end of a link, as the learner will see it: `eth1` with 10.0.0.1/24."""

    ifname: str
    address: str
    prefixlen: int = 24


def _configure(host_name: str, end: NodeEnd) -> None:
    with netlink() as ip:
        (index,) = ip.link_lookup(ifname=host_name)
        ip.link("set", index=index, ifname=end.ifname)
        ip.addr("add", index=index, address=end.address, prefixlen=end.prefixlen)
        ip.link("set", index=index, state="up")


def leftover_veths() -> list[str]:
    # The C library's list of this namespace's interfaces: sandboxd reconciles at every
    # start, and most hosts never make a link, so pyroute2 stays unloaded.
    return [name for _, name in socket.if_nameindex() if name.startswith(VETH_PREFIX)]


def delete_links(names: list[str]) -> None:
    if not names:
        return
    with netlink() as ip:
        for name in names:
            for index in ip.link_lookup(ifname=name):
                ip.link("del", index=index)

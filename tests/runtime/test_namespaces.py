"""Each namespace is the sandbox's own, and nested namespaces keep working inside."""

from __future__ import annotations

import os
import re

import pytest

from sandboxapp.runtime import cgroups
from sandboxapp.runtime.sandbox import SandboxError

NAMESPACES = ("user", "mnt", "pid", "net", "uts", "ipc", "cgroup")


def _ns(pid: int | str, ns: str) -> tuple[int, int]:
    st = os.stat(f"/proc/{pid}/ns/{ns}")
    return st.st_dev, st.st_ino


def test_every_namespace_differs_from_the_host(sandbox, sh):
    proc = sandbox.spawn(["/bin/sleep", "30"])
    try:
        # Find the learner's process through the sandbox's cgroup, never by name.
        pids = [p for p in sandbox.cgroup.procs() if p != sandbox.init_pid]
        assert pids, "the sleeping process is in the sandbox's cgroup"
        for ns in NAMESPACES:
            assert _ns(pids[-1], ns) != _ns("self", ns), f"{ns} namespace is the host's"
            assert _ns(pids[-1], ns) == _ns(sandbox.init_pid, ns), f"{ns} is not the sandbox's"
    finally:
        proc.kill()
        proc.wait()


def test_root_inside_is_an_unprivileged_host_user(sandbox, sh):
    uid_map = open(f"/proc/{sandbox.init_pid}/uid_map").read().split()
    assert uid_map == ["0", str(sandbox.uid_base), "65536"]
    code, out = sh(sandbox, "id -u; cat /proc/self/status | grep ^Uid")
    assert code == 0 and out.splitlines()[0] == "0"


def test_two_sandboxes_get_different_host_ids(make_sandbox):
    a, b = make_sandbox(), make_sandbox()
    assert a.uid_base != b.uid_base
    assert {a.uid_base, b.uid_base}.isdisjoint(range(0, 65536))


def test_hostname_is_the_sandbox_name(sandbox, sh):
    code, out = sh(sandbox, "hostname; cat /etc/hostname")
    assert out.split() == [sandbox.name, sandbox.name]


def test_only_loopback_is_there_and_up(sandbox, sh):
    code, out = sh(sandbox, "ip -o link")
    links = [line.split(":")[1].strip() for line in out.splitlines() if re.match(r"^\d+:", line)]
    assert links == ["lo"] and "<LOOPBACK,UP" in out
    code, out = sh(sandbox, "ip route; ip -6 route")
    # No route off this loopback: not to the host, not to other learners, not beyond.
    assert code == 0 and {line.split()[0] for line in out.splitlines()} <= {"::1"}


def test_nested_pid_and_user_namespaces(sandbox, sh):
    code, out = sh(sandbox, "unshare -Urpf --mount-proc ps -o pid,comm")
    assert code == 0, out
    assert out.split() == ["PID", "COMMAND", "1", "ps"]


def test_nested_network_namespaces(sandbox, sh):
    code, out = sh(sandbox, "unshare -n ip -o link")
    assert code == 0 and out.count(": lo:") == 1
    code, out = sh(sandbox, "ip netns add lab && ip netns exec lab ip -o link && ip netns list")
    assert code == 0, out
    assert ": lo:" in out and "lab" in out


def test_mounting_tmpfs_and_overlay_inside(sandbox, sh):
    script = (
        "mkdir -p /tmp/t /tmp/lo /tmp/up /tmp/wk /tmp/m && mount -t tmpfs t /tmp/t "
        "&& echo base > /tmp/lo/f && mount -t overlay o -o lowerdir=/tmp/lo,upperdir=/tmp/up,"
        "workdir=/tmp/wk /tmp/m && echo changed > /tmp/m/f && cat /tmp/lo/f /tmp/up/f"
    )
    code, out = sh(sandbox, script)
    assert code == 0, out
    assert out.split() == ["base", "changed"]


def test_learner_cgroup_subtree_is_delegated(sandbox, sh):
    if cgroups.detect().version != 1:
        pytest.skip("written against the cgroup v1 file names")
    script = (
        "mkdir /sys/fs/cgroup/memory/lab && echo 33554432 > "
        "/sys/fs/cgroup/memory/lab/memory.limit_in_bytes && "
        "cat /sys/fs/cgroup/memory/lab/memory.limit_in_bytes"
    )
    code, out = sh(sandbox, script)
    assert code == 0, out
    assert out.strip() == "33554432"
    # The learner's own level keeps the limit the host set; they cannot raise it.
    code, out = sh(sandbox, "echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes")
    assert code != 0
    assert sandbox.cgroup.limits()["memory_bytes"] == sandbox.spec.limits.memory_bytes


def test_the_learner_user_has_a_home_of_its_own(sandbox, sh):
    code, out = sh(sandbox, "id -u; echo $HOME $USER; pwd; touch notes && ls", user="learner")
    assert out.split() == ["1000", "/home/learner", "learner", "/home/learner", "notes"], out
    with pytest.raises(SandboxError, match="unknown user"):
        sandbox.spawn(["/bin/true"], user="admin")

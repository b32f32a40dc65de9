"""Probes read kernel state from the host side; what the learner prints changes nothing."""

from __future__ import annotations

import errno
import os
import subprocess
import time

from sandboxapp.runtime import probes


def _wait_for(predicate, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.02)
    return None


def _init(sandbox) -> probes.ProcessFacts:
    facts = probes.process_facts(sandbox.init_pid)
    assert facts is not None
    return facts


def test_sandbox_processes_differ_from_the_host_in_every_namespace(sandbox):
    sandbox.spawn(["/bin/sleep", "30"])
    found = _wait_for(lambda: [p for p in probes.sandbox_processes(sandbox) if p.comm == "sleep"])
    assert found
    host = probes.host_namespaces()
    for ns, ident in found[0].namespaces.items():
        assert ident != host[ns], ns
    assert found[0].uid_map == f"0 {sandbox.uid_base} 65536"
    assert found[0].no_new_privs and found[0].seccomp_mode == 2
    assert found[0].depth_below(_init(sandbox)) == 0


def test_a_nested_pid_namespace_is_seen_one_level_deeper(sandbox):
    sandbox.spawn(["/bin/sh", "-c", "unshare -pf --mount-proc sleep 30"])

    def deeper():
        init = _init(sandbox)
        return [p for p in probes.sandbox_processes(sandbox) if p.depth_below(init) == 1]

    found = _wait_for(deeper)
    assert found and found[0].nspid[-1] == 1, "sleep is pid 1 of its own namespace"
    assert found[0].namespaces["pid"] != _init(sandbox).namespaces["pid"]


def test_echo_pass_is_not_a_nested_namespace(sandbox):
    sandbox.run(["/bin/bash", "-c", "echo PASS; echo 'PID 1'; exec -a unshare sleep 0.3"])
    init = _init(sandbox)
    assert not [p for p in probes.sandbox_processes(sandbox) if p.depth_below(init) > 0]


def test_hostname_is_read_inside_each_uts_namespace(sandbox):
    sandbox.spawn(["/bin/sh", "-c", "unshare -u sh -c 'hostname inner && exec sleep 30'"])

    def inner():
        return [p for p in probes.sandbox_processes(sandbox) if p.comm == "sleep"]

    found = _wait_for(inner)
    assert found
    assert probes.hostname_of(found[0].pid) == "inner"
    assert probes.hostname_of(sandbox.init_pid) == sandbox.name


def test_links_are_read_by_netlink_in_the_sandbox_netns(sandbox):
    code, out = sandbox.run(
        ["/bin/sh", "-c", "ip link add v0 type veth peer name v1 && ip addr add 10.9.0.1/24 dev v0"]
    )
    assert code == 0, out
    links = {link["name"]: link for link in probes.links_of(sandbox.init_pid)}
    assert links["v0"]["kind"] == "veth" and "10.9.0.1/24" in links["v0"]["addresses"]
    assert links["lo"]["up"] is True
    # The host's own links are not the sandbox's.
    assert "v0" not in {link["name"] for link in probes.links_of(os.getpid())}


def test_a_process_that_is_gone_gives_no_facts():
    assert probes.process_facts(2**22 + 7) is None


def test_a_process_that_ends_while_being_read_gives_no_facts(monkeypatch):
    # A process that ends between the lookup of its uid_map and the file's open makes the
    # kernel answer EINVAL (no task behind the directory). That window is too narrow to hit
    # on purpose: the answer is given here, for a real process, at that read.
    real_read = probes._read

    def ended_meanwhile(dirfd: int, name: str) -> str:
        if name == "uid_map":
            raise OSError(errno.EINVAL, "Invalid argument", name)
        return real_read(dirfd, name)

    monkeypatch.setattr(probes, "_read", ended_meanwhile)
    assert probes.process_facts(os.getpid()) is None


def test_mountinfo_is_read_from_the_host_side(sandbox):
    sandbox.spawn(["/bin/sh", "-c", "unshare -m sh -c 'mount -t tmpfs lab /mnt && exec sleep 30'"])
    found = _wait_for(lambda: [p for p in probes.sandbox_processes(sandbox) if p.comm == "sleep"])
    assert found
    theirs = {m.mountpoint: m for m in probes.mountinfo_of(found[0].pid)}
    sandbox_view = {m.mountpoint for m in probes.mountinfo_of(sandbox.init_pid)}
    assert theirs["/mnt"].fstype == "tmpfs" and theirs["/mnt"].source == "lab"
    assert "/mnt" not in sandbox_view, "the tmpfs exists only in the learner's mount namespace"
    assert {"/", "/usr", "/proc"} <= sandbox_view


def test_snapshot_names_namespaces_relative_to_the_sandbox(sandbox):
    sandbox.spawn(["/bin/sh", "-c", "unshare -n sleep 30"])
    assert _wait_for(lambda: len(probes.sandbox_processes(sandbox)) >= 2)
    tree = probes.snapshot(sandbox)
    (init,) = [p for p in tree["processes"] if p["host_pid"] == sandbox.init_pid]
    assert init["pid"] == 1 and init["namespaces"]["net"]["is"] == "sandbox"
    sleeper = _wait_for(
        lambda: {p["command"]: p for p in probes.snapshot(sandbox)["processes"]}.get("sleep")
    )
    assert sleeper["namespaces"]["net"]["is"] == "new 1"
    assert sleeper["namespaces"]["pid"]["is"] == "sandbox"
    assert sleeper["uid_map"] == f"0 {sandbox.uid_base} 65536"
    assert all(p["namespaces"]["user"]["is"] != "host" for p in tree["processes"])


def test_the_mounts_of_a_process_that_has_ended_are_none_not_an_error(sandbox):
    # A check lists the learner's processes, then reads each one's mounts: a short-lived
    # command may end in between (lesson 10's self-test met one).
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert probes.mountinfo_of(ended.pid) == []
    assert probes.mountinfo_of(sandbox.init_pid)  # a live one's are read as ever

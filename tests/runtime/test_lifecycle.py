"""Create, destroy, restart, reset and reconcile: nothing leaks, the learner's files stay."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sandboxapp.runtime import ids, volumes, zygote
from sandboxapp.runtime.reconcile import reconcile
from sandboxapp.runtime.sandbox import (
    FirstProcess,
    HostFull,
    RuntimeConfig,
    Sandbox,
    SandboxError,
    rundir_of,
    sandbox_create,
)
from sandboxapp.runtime.spec import ID_BLOCK, SandboxSpec


def _mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


@pytest.mark.parametrize("own_cgroup", [False, True])
def test_destroy_leaves_nothing_behind(make_sandbox, config, own_cgroup):
    sandbox = make_sandbox(learner="leaver")
    # With a cgroup of the learner's own, holding a process: removed all the same.
    into = "mkdir -p /sys/fs/cgroup/pids/mine && echo $$ > /sys/fs/cgroup/pids/mine/cgroup.procs;"
    sandbox.spawn(["/bin/sh", "-c", (into if own_cgroup else "") + "sleep 1000 & sleep 1000"])
    time.sleep(0.1)
    pids = sandbox.cgroup.procs()
    assert len(pids) >= 3
    assert bool(sandbox.cgroup.child_cgroups()) == own_cgroup
    rundir = rundir_of(config, sandbox.name)
    # Its block is claimed for the whole host too, in this state directory's name.
    host_claim = ids.host_dir() / f"block-{sandbox.uid_base // ID_BLOCK}"
    assert os.readlink(host_claim) == os.path.realpath(config.state_dir)
    sandbox.destroy()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie_of_us(pid)
    assert not sandbox.cgroup.exists()
    assert not rundir.exists()
    assert not os.path.lexists(host_claim)
    assert str(config.state_dir / "volumes" / "leaver") not in _mounts()


def _is_zombie_of_us(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_files_persist_across_restart_and_reset_wipes_them(make_sandbox, sh, config):
    first = make_sandbox(learner="keeper")
    sh(
        first,
        "echo kept > /root/note && echo 10.0.0.9 web >> /etc/hosts && "
        "mkdir -p /usr/local/bin && echo tool > /usr/local/bin/mytool",
    )
    first.destroy()
    second = make_sandbox(learner="keeper")
    code, out = sh(second, "cat /root/note /usr/local/bin/mytool; grep web /etc/hosts")
    assert out.split() == ["kept", "tool", "10.0.0.9", "web"]
    # The host's /usr is untouched by the learner's install.
    assert not Path("/usr/local/bin/mytool").exists()
    second.destroy()
    volumes.volume_delete(config.state_dir, "keeper")
    third = make_sandbox(learner="keeper")
    code, out = sh(third, "cat /root/note")
    assert code != 0 and "kept" not in out


def test_a_learners_files_serve_one_sandbox_at_a_time(make_sandbox):
    make_sandbox(learner="solo")
    with pytest.raises(volumes.VolumeBusy, match="in use"):
        make_sandbox(learner="solo")


def test_host_at_capacity_refuses_with_a_clear_message(config, make_sandbox):
    full = RuntimeConfig(config.state_dir, config.cgroup_parent, max_sandboxes=1)
    make_sandbox()
    with pytest.raises(HostFull, match="maximum of 1 sandboxes"):
        sandbox_create(SandboxSpec(name="one-too-many"), full)
    assert "one-too-many" not in ids.borrowed_blocks(config.state_dir)


def test_duplicate_name_is_refused(config, sandbox):
    with pytest.raises(SandboxError, match="already exists"):
        sandbox_create(SandboxSpec(name=sandbox.name), config)


def test_creator_killed_leaves_nothing_after_reconcile(config, manage):
    """SIGKILL the process that made a sandbox: its init follows, reconcile does the rest."""
    creator = manage(
        "sandbox",
        "run",
        "--learner",
        "crasher",
        "--name",
        "crash-me",
        "--json-status",
        "--",
        "sleep",
        "1000",
        popen=True,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        status = json.loads(creator.stderr.readline())
    finally:
        creator.kill()
        creator.wait()
    init_pid = status["init_pid"]
    for _ in range(200):
        if _is_zombie_of_us(init_pid):
            break
        time.sleep(0.01)
    assert _is_zombie_of_us(init_pid), "the init died with its owner"
    with contextlib.suppress(ChildProcessError):
        os.waitpid(init_pid, 0)  # this test process may be its subreaper
    report = reconcile(config)
    assert "crash-me" in report.removed_sandboxes
    assert "crasher" in report.unmounted_volumes
    assert not rundir_of(config, "crash-me").exists()
    assert str(config.state_dir / "volumes" / "crasher") not in _mounts()
    # The learner's files survived the crash.
    assert (config.state_dir / "volumes" / "crasher.ext4").exists()


def test_reconcile_spares_live_sandboxes(config, sandbox):
    report = reconcile(config)
    assert sandbox.name in report.live
    assert sandbox.alive() and sandbox.cgroup.exists()


def test_sandbox_reports_a_failed_setup_clearly(config, monkeypatch):
    from sandboxapp.runtime import rootfs

    broken = rootfs.Mount("tmpfs", "/nonexistent/target", "tmpfs")
    original = rootfs.plan_root
    monkeypatch.setattr(rootfs, "plan_root", lambda layout, etc: [broken, *original(layout, etc)])
    with pytest.raises(SandboxError, match="root filesystem.*nonexistent"):
        sandbox_create(SandboxSpec(name="broken"), config)
    assert not rundir_of(config, "broken").exists()
    assert "broken" not in ids.borrowed_blocks(config.state_dir)


@pytest.mark.parametrize("user", ["root", "learner"])  # a spawn, and a fork then exec
def test_a_process_that_cannot_start_says_why_and_the_sandbox_goes_on(sandbox, sh, user):
    with pytest.raises(SandboxError, match=r"could not start 'no-such-tool'.*exec: .*No such file"):
        sandbox.spawn(["no-such-tool"], user=user)
    with pytest.raises(SandboxError, match=r"working directory: .*/nowhere"):
        sandbox.spawn(["/bin/true"], cwd="/nowhere", user=user)
    # Found on the request's PATH, not the init's.
    code, out = sh(
        sandbox,
        "mkdir -p /opt/tools && printf '#!/bin/sh\\necho found\\n' > /opt/tools/mine"
        " && chmod 755 /opt/tools/mine",
    )
    assert code == 0, out
    process = sandbox.spawn(["mine"], env={"PATH": "/opt/tools"}, user=user)
    assert process.wait(timeout=10) == 0
    assert sh(sandbox, "pwd", user=user) == (
        0,
        ("/root" if user == "root" else "/home/learner") + "\n",
    )


def _terminal_output(master: int, until: bytes, timeout: float = 10.0) -> bytes:
    output = b""
    deadline = time.monotonic() + timeout
    while until not in output and time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            try:
                output += os.read(master, 4096)
            except OSError:  # EIO: the terminal's last process is gone
                break
    return output


@pytest.mark.parametrize("user", ["root", "learner"])
def test_a_terminal_is_its_process_controlling_terminal(sandbox, sh, user):
    script = "stty size; ps -o sid=,pgid=,tpgid=,tty= -p $$; exec sleep 30"
    process = sandbox.spawn(["/bin/sh", "-c", script], terminal=(33, 101), user=user)
    master = process.terminal
    try:
        output = _terminal_output(master, b"pts/0")
        assert output.startswith(b"33 101\r\n")  # sized before the program started
        sid, pgid, tpgid, tty = output.split()[-4:]
        # Its own session, in the foreground of the terminal it controls.
        assert (int(sid), int(pgid), int(tpgid), tty) == (process.pid,) * 3 + (b"pts/0",)
        deadline = time.monotonic() + 10
        while sh(sandbox, f"cat /proc/{process.pid}/comm")[1] != "sleep\n":
            assert time.monotonic() < deadline, "sleep never started"
            time.sleep(0.02)
        os.write(master, b"\x03")  # Ctrl-C reaches the foreground only through the terminal
        assert process.wait(timeout=10) == 128 + signal.SIGINT
    finally:
        os.close(master)


def test_a_terminal_program_that_cannot_start_says_so_on_its_terminal(sandbox, sh):
    process = sandbox.spawn(["no-such-tool"], terminal=(24, 80))
    master = process.terminal
    try:
        assert process.wait(timeout=10) != 0
        assert b"no-such-tool" in _terminal_output(master, b"No such file")
    finally:
        os.close(master)
    assert sh(sandbox, "echo on") == (0, "on\n")


def test_a_sandbox_can_start_its_first_process_as_it_comes_up(config, make_sandbox):
    make_sandbox().destroy()  # the zygote's own fds are open from here on

    def first_started(name: str) -> Sandbox:
        spec = SandboxSpec(name=name)
        script = ["/bin/sh", "-c", "stty size; echo first $$; sleep 30"]
        return sandbox_create(spec, config, first=FirstProcess(script, terminal=(30, 90)))

    with first_started("first-taken") as sandbox:
        first, sandbox.first = sandbox.first, None
        assert first is not None and first.terminal is not None
        output = _terminal_output(first.terminal, b"first")
        assert b"30 90" in output and f"first {first.pid}".encode() in output
        os.close(first.terminal)
        first.channel.close()
    # Destroyed with its first process never taken: nothing of it stays open here. (The
    # next spare, held here with three fds, is asked for once a sandbox is up.)
    zygote._ZYGOTE._refiller.submit(lambda: None).result(10)
    before = len(os.listdir("/proc/self/fd"))
    with first_started("first-untaken") as sandbox:
        assert sandbox.first is not None and sandbox.first.terminal is not None
    zygote._ZYGOTE._refiller.submit(lambda: None).result(10)
    assert len(os.listdir("/proc/self/fd")) == before


def test_init_reaps_orphans(sandbox, sh):
    # Orphans re-parent to the sandbox's init, which must reap them (no zombies pile up).
    sh(sandbox, "for i in 1 2 3 4 5; do (sleep 0.05 &) ; done; sleep 0.3")
    code, out = sh(sandbox, "ps -eo stat= | grep -c '^Z' || true")
    assert out.strip() == "0"


def test_signals_from_inside_cannot_kill_init(sandbox, sh):
    sh(sandbox, "kill -9 1; kill -TERM 1")
    time.sleep(0.05)
    assert sandbox.alive()
    os.kill(sandbox.init_pid, 0)
    assert signal.SIGKILL  # the host still can: destroy() uses it


def test_a_sandbox_works_when_its_fds_are_numbered_past_1024(make_sandbox, sh):
    # sandboxd holds several fds per sandbox: with 200 up, new ones are numbered past 1024,
    # where select() cannot go.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), max(hard, 1200)))
    low = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
    try:
        # A fresh zygote and spare, with every fd of theirs past 1024 too.
        zygote.zygote_stop()
        while (fd := os.open("/dev/null", os.O_RDONLY)) < 1100:
            low.append(fd)
        os.close(fd)
        sandbox = make_sandbox()
        assert sandbox.pidfd > 1024 and sandbox.control.fileno() > 1024
        assert sh(sandbox, "echo high") == (0, "high\n")
        process = sandbox.spawn(["/bin/true"], terminal=(24, 80))
        assert process.wait(timeout=10) == 0
        os.close(process.terminal)
        sandbox.destroy()
        assert not sandbox.alive()
    finally:
        for fd in low:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

"""The host protects itself: memory, pids, CPU and disk stop at the sandbox's limits.

Every bomb here runs under the session's guard cgroup as well, so a missing limit would
be stopped there rather than by the machine falling over.
"""

from __future__ import annotations

import os
import shutil

import pytest

MiB = 1024 * 1024


def test_fork_bomb_stops_at_pids_max(make_sandbox, sh):
    sandbox = make_sandbox(pids=64)
    # Fork until refused, then report; everything it made is killed by the script itself.
    script = (
        "import os, time\n"
        "kids = []\n"
        "try:\n"
        "    while len(kids) < 5000:\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30); os._exit(0)\n"
        "        kids.append(pid)\n"
        "except OSError as e:\n"
        "    print('refused', e.errno, len(kids))\n"
        "for k in kids: os.kill(k, 9)\n"
    )
    code, out = sandbox.run(["/usr/bin/python3", "-c", script], timeout=60)
    words = out.decode().split()
    assert words[:2] == ["refused", "11"], out  # EAGAIN
    assert int(words[2]) < 64
    assert sandbox.cgroup.counters()["pids_max_hit"] >= 1
    # The host is fine: we can still fork.
    assert os.system("true") == 0


def test_memory_bomb_is_oom_killed_inside(make_sandbox):
    sandbox = make_sandbox(memory_bytes=64 * MiB)
    code, out = sandbox.run(
        ["/usr/bin/python3", "-c", "b = []\nwhile True: b.append(bytearray(8 << 20))"], timeout=60
    )
    assert code == 137, out  # SIGKILL from the OOM killer
    assert sandbox.cgroup.counters()["oom_kill"] >= 1


def test_sandbox_survives_a_learner_oom_in_a_child_cgroup(make_sandbox, sh):
    sandbox = make_sandbox(memory_bytes=128 * MiB)
    from sandboxapp.runtime import cgroups

    if cgroups.detect().version != 1:
        pytest.skip("written against the cgroup v1 file names")
    script = (
        "mkdir /sys/fs/cgroup/memory/bomb && echo 33554432 > "
        "/sys/fs/cgroup/memory/bomb/memory.limit_in_bytes && "
        "sh -c 'echo $$ > /sys/fs/cgroup/memory/bomb/cgroup.procs && exec python3 -c "
        '"b = []\nwhile True: b.append(bytearray(4 << 20))"\'; echo status=$?; '
        "grep oom_kill /sys/fs/cgroup/memory/bomb/memory.oom_control"
    )
    code, out = sh(sandbox, script)
    assert "status=137" in out, out
    assert "oom_kill 1" in out
    assert sandbox.alive()


def test_disk_fill_stops_at_the_quota(make_sandbox, sh):
    sandbox = make_sandbox(learner="filler", disk_bytes=16 * MiB)
    before = shutil.disk_usage("/").free
    code, out = sh(sandbox, "dd if=/dev/zero of=/root/fill bs=1M count=64 2>&1; rm -f /root/fill")
    assert "No space left on device" in out
    # The host lost no more than the learner's quota.
    assert before - shutil.disk_usage("/").free < 32 * MiB


def test_a_throwaway_layer_fills_up_at_the_quota(make_sandbox, sh):
    # A sandbox with no learner writes to a tmpfs of the sandbox's size, not to the host.
    sandbox = make_sandbox(disk_bytes=16 * MiB)
    code, out = sh(sandbox, "dd if=/dev/zero of=/root/fill bs=1M count=64 2>&1; df -k /root")
    assert "No space left on device" in out, out
    # The writes stopped at its size: the quota, not the host's memory.
    size_kib = int(out.split()[-5])
    assert 15 * 1024 <= size_kib <= 16 * 1024, out
    sh(sandbox, "rm -f /root/fill")


def test_cpu_quota_throttles(make_sandbox):
    sandbox = make_sandbox(cpus=0.1)
    code, _ = sandbox.run(["/bin/sh", "-c", "timeout 1 sh -c 'while :; do :; done'"], timeout=30)
    assert sandbox.cgroup.counters()["nr_throttled"] > 0
    assert sandbox.cgroup.limits()["cpu_quota_us"] == 10_000

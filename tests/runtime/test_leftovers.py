"""A test session killed outright (SIGKILL: nothing of it runs its clean-up) leaves its
guard cgroup, its sandboxd or zygote and its sandboxes; the next session removes them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from sandboxapp.runtime.cgroups import detect
from tests.sandboxes import GUARD_PREFIX, REPO, leftovers_remove, session_config

# A session as tests/sandboxes.py makes one, in a process of its own: its guard, then one
# sandbox whose shell runs on, then it waits to be killed.
SESSION = """
import os, sys, time
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sandboxapp.settings")
from sandboxapp.runtime.sandbox import sandbox_create
from sandboxapp.runtime.spec import SandboxSpec
from tests.sandboxes import guard_make, session_config
guard_make(os.getpid())
config = session_config(os.getpid())
config.state_dir.mkdir(parents=True, mode=0o711)
sandbox = sandbox_create(SandboxSpec(name="left"), config)
print(sandbox.init_pid, flush=True)
time.sleep(600)
"""


def _guards(pid: int) -> list[Path]:
    return [h.mountpoint / f"{GUARD_PREFIX}{pid}" for h in detect().hierarchies]


def test_a_session_killed_outright_is_cleaned_up_by_the_next(guard):
    session = subprocess.Popen(
        [sys.executable, "-c", SESSION], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        init_pid = int(session.stdout.readline())
        assert all(g.is_dir() for g in _guards(session.pid))
        assert Path(f"/proc/{init_pid}").exists()
    finally:
        session.send_signal(signal.SIGKILL)
        session.wait()
    # Killed: its guard, its sandbox (and the zygote it started) are still there.
    assert all(g.is_dir() for g in _guards(session.pid))
    assert Path(f"/proc/{init_pid}").exists()

    cleaned = leftovers_remove()

    assert session.pid in cleaned
    assert os.getpid() not in cleaned  # a session still running is left alone
    assert all(d.is_dir() for d in _guards(os.getpid()))
    assert not any(g.exists() for g in _guards(session.pid))
    assert not session_config(session.pid).state_dir.exists()
    assert not Path(f"/proc/{init_pid}").exists() or _is_zombie(init_pid)
    assert (
        str(session_config(session.pid).state_dir) not in Path("/proc/self/mountinfo").read_text()
    )


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True

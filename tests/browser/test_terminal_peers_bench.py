"""bench/terminal_peers.py's side of Contained, small, so the bench keeps working: the peers
(terminado, wetty) are installed only by `make bench-peers`, and measured only there."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from bench import terminal_peers

pytestmark = pytest.mark.asyncio


async def test_the_peer_bench_measures_our_terminal_and_a_click_in_chromium(live_site, site_daemon):
    args = argparse.Namespace(sessions=3, seconds=2, bulk_mb=2, repeat=1)
    servers = {"contained": (live_site, [site_daemon.process.pid])}
    report = (await terminal_peers.measure(servers, args))["contained"]
    assert report["echo"]["samples"] > 10
    assert report["bulk_mb_s"] > 0
    # The bare PTY took its turn: the ceiling is a rate, and our share of it follows.
    assert report["bare_pty_mb_s"] > 0
    assert report["bulk_of_bare_pty"] == pytest.approx(
        report["bulk_mb_s"] / report["bare_pty_mb_s"], abs=0.02
    )
    assert report["ctrl_c_to_prompt"]["samples"] == 1
    assert report["server_mib"] > 0
    assert report["server_cpu_ms_per_key"] > 0  # Daphne and sandboxd: every key and its echo
    assert report["host_steal_ms_during_echo"] >= 0
    clicks = await terminal_peers.browser_clicks(live_site, runs=1)
    assert clicks["new_guest"]["samples"] == clicks["lesson_link"]["samples"] == 1
    text = terminal_peers.table({"sessions": 3, "peers": {"contained": report}, "browser": clicks})
    assert "bulk MB/s" in text and "bare PTY" in text and "click to prompt" in text


@pytest.fixture
def bench_dir():
    # As the bench's own: not under pytest's 0700 tmp, which a sandbox's root cannot cross.
    workdir = Path(tempfile.mkdtemp(prefix="contained-peers-test-"))
    workdir.chmod(0o711)
    yield workdir
    shutil.rmtree(workdir, ignore_errors=True)


async def test_against_serves_ours_as_of_a_revision_from_a_worktree_of_its_own(bench_dir):
    # The paired comparison of a change: a second site and sandboxd, from another checkout.
    head = subprocess.run(
        ["git", "-C", str(terminal_peers.REPO), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    name = terminal_peers.AGAINST + head
    with terminal_peers.serving(name, bench_dir, sessions=1) as (url, pids):
        tree = bench_dir / "against" / "tree"
        assert (tree / "manage.py").exists()
        # The servers run that checkout's code, not this one's.
        for pid in pids:
            assert Path(f"/proc/{pid}/cwd").resolve() == tree.resolve()
        (session,) = await terminal_peers.open_sessions(name, url, 1)
        since = len(session.shell.seen)
        await session.shell.send(b"echo $((6*7))\r")
        await session.shell.wait_for(b"42", since, timeout=30)
        await session.close()
    assert not tree.exists(), "the worktree goes with the run"

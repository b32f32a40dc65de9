"""``manage.py runlab`` serves the app through Daphne and stops its children on a signal."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.workers import free_port
from sandboxapp.management.commands.runlab import Child

REPO = Path(__file__).resolve().parents[2]


def read_until(process: subprocess.Popen, pattern: str, timeout: float = 30) -> str:
    """Read runlab's output line by line until a line matches, or fail showing what came."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    pytest.fail(f"runlab never printed {pattern!r}; it printed:\n{''.join(seen)}")


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


@pytest.mark.root
@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_runlab_serves_and_stops_sandboxd_and_daphne_cleanly(fresh_env, config, stop_signal):
    port = free_port()
    # Its own state, which the daemon reconciles (empty) at start: in the session's, whose
    # parents a sandbox's root can walk through (sandboxd refuses to start otherwise).
    state = config.state_dir / f"runlab-{stop_signal.name}"
    env = fresh_env(
        CONTAINED_DEBUG="1",
        HOST="127.0.0.1",
        PORT=str(port),
        CONTAINED_STATE_DIR=str(state),
        CONTAINED_CGROUP_PARENT=f"contained-runlab-test-{os.getpid()}",
    )
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runlab"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = read_until(process, r"Press Ctrl-C")
        daphne_pid = int(re.search(r"Started daphne \(pid (\d+)\)", output)[1])
        sandboxd_pid = int(re.search(r"Started sandboxd \(pid (\d+)\)", output)[1])
        assert f"Contained is running at http://127.0.0.1:{port}/" in output
        # Its own process group: a terminal's Ctrl-C reaches runlab alone, which stops it.
        assert os.getpgid(daphne_pid) == daphne_pid

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
            assert response.status == 200
            body = json.loads(response.read())
        assert body["status"] == "ok"
        assert body["checks"]["sandboxd"]["ok"] is True

        process.send_signal(stop_signal)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        shutil.rmtree(state, ignore_errors=True)

    assert process.returncode == 0, output + rest
    assert rest.index("Stopping daphne") < rest.index("Stopping sandboxd")
    assert gone(daphne_pid) and gone(sandboxd_pid)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_runlab_refuses_a_port_in_use_before_starting_anything(fresh_env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "runlab", "--port", str(port)],
            cwd=REPO,
            env=fresh_env(CONTAINED_DEBUG="1"),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "Started daphne" not in result.stdout


def test_runlab_stops_and_fails_when_daphne_dies(fresh_env):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "manage.py", "runlab", "--port", str(port)],
        cwd=REPO,
        env=fresh_env(CONTAINED_DEBUG="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        output = read_until(process, r"Press Ctrl-C")
        daphne_pid = int(re.search(r"Started daphne \(pid (\d+)\)", output)[1])

        os.kill(daphne_pid, signal.SIGKILL)
        rest, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode != 0
    assert "daphne exited with -9" in rest


def test_a_child_that_ignores_sigterm_is_killed_after_the_timeout():
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert stubborn.stdout.readline() == "ready\n"

    started = time.monotonic()
    Child("stubborn", stubborn).stop(timeout=0.5)

    assert stubborn.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 5

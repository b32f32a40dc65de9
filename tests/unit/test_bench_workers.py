"""The bench's servers: stopped, whatever state they are in."""

from __future__ import annotations

import subprocess
import sys

from bench.workers import process_stop


def test_a_server_that_ignores_terminate_is_killed_after_its_time():
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
            " print('ready', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert stubborn.stdout.readline() == b"ready\n"  # SIGTERM is ignored from here on
        process_stop(stubborn, timeout=0.5)
        assert stubborn.returncode == -9
    finally:
        if stubborn.poll() is None:
            stubborn.kill()
            stubborn.wait()
        stubborn.stdout.close()

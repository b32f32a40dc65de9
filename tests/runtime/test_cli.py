"""`manage.py sandbox run`: a learner's sandbox from the command line, terminal and status."""

from __future__ import annotations

import os
import select
import time

from sandboxapp.runtime.cgroups import SPARE_PREFIX
from sandboxapp.runtime.sandbox import rundir_of
from tests.sandboxes import spare_cgroup_dirs


def _others_spare_cgroups(config) -> list[str]:
    ours = f"{SPARE_PREFIX}{os.getpid()}-"
    return [str(path) for path in spare_cgroup_dirs(config) if not path.name.startswith(ours)]


def test_run_passes_output_and_exit_status_through(config, manage):
    result = manage("sandbox", "run", "--", "sh", "-c", "hostname; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("run-")
    assert not list(rundir_of(config, "").iterdir()), "destroyed after the run"
    # Nor the cgroups of the spare its zygote kept ready for a next sandbox (cgroup v1).
    assert _others_spare_cgroups(config) == []


def test_run_gives_an_interactive_terminal_of_the_sandboxes_own(manage):
    master, slave = os.openpty()
    proc = manage(
        "sandbox",
        "run",
        popen=True,
        env={"TERM": "dumb"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    os.write(master, b"tty; echo $((6*7)); exit 5\n")
    output = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not select.select([master], [], [], 1)[0]:
            continue
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.close(master)
    assert proc.wait(timeout=30) == 5
    text = output.decode(errors="replace")
    assert "/dev/pts/0" in text, text  # its own devpts instance, not the host's
    assert "42" in text


def test_run_refuses_bad_limits_with_a_clear_message(manage):
    result = manage("sandbox", "run", "--memory", "lots", "--", "true")
    assert result.returncode != 0
    assert "cannot read size 'lots'" in result.stderr
    assert "Traceback" not in result.stderr


def test_reset_deletes_a_learners_files_and_refuses_while_in_use(make_sandbox, manage, config):
    sandbox = make_sandbox(learner="resetme")
    sandbox.run(["/bin/sh", "-c", "echo mine > /root/file"])
    busy = manage("sandbox", "reset", "--learner", "resetme")
    assert busy.returncode != 0 and "in use" in busy.stderr
    sandbox.destroy()
    assert (config.state_dir / "volumes" / "resetme.ext4").exists()
    done = manage("sandbox", "reset", "--learner", "resetme")
    assert done.returncode == 0, done.stderr
    assert not (config.state_dir / "volumes" / "resetme.ext4").exists()


def test_list_shows_each_sandbox_its_learner_and_how_long_it_has_been_up(
    make_sandbox, manage, config
):
    sandbox = make_sandbox(learner="lister")
    state = rundir_of(config, sandbox.name) / "state.json"
    # A field an older version wrote does not make the sandbox unknown.
    state.write_text(state.read_text().rstrip("}") + ', "startup_ms": 12.5}')
    listing = manage("sandbox", "list")
    assert listing.returncode == 0, listing.stderr
    (row,) = [line.split() for line in listing.stdout.splitlines() if sandbox.name in line]
    assert row[1:4] == ["lister", "running", "up"] and row[4].endswith("s"), row
    sandbox.destroy()
    assert sandbox.name not in manage("sandbox", "list").stdout

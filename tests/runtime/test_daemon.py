"""sandboxd as a real process: requests, admission, isolation between learners, restarts."""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from sandboxapp.runtime import network, volumes, wire
from sandboxapp.runtime.client import Refused, SandboxdError, call_sync
from sandboxapp.runtime.daemon import PROJECT, Daemon, DaemonConfig, daemon_argv, daemon_spawn
from sandboxapp.runtime.sandbox import cgroup_backend, state_read
from sandboxapp.runtime.spec import Limits
from sandboxapp.runtime.terminal import FlowLimits


def learner() -> str:
    return f"l{secrets.token_hex(4)}"


def raw_request(path: Path, payload: bytes) -> dict:
    """Send raw bytes as a request; return the daemon's JSON reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    length, kind = wire.HEADER.unpack_from(data)
    assert kind == wire.JSON
    return wire.Frame(kind, data[wire.HEADER.size : wire.HEADER.size + length]).json()


def test_ensure_creates_once_and_reports_the_sandbox(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    first = daemon.call("ensure", learner=name)
    again = daemon.call("ensure", learner=name)
    assert first["created"] and not again["created"]
    assert first["sandbox"]["init_pid"] == again["sandbox"]["init_pid"]
    assert first["sandbox"]["namespaces"]["pid"] != os.stat("/proc/self/ns/pid").st_ino
    listed = daemon.call("list")["sandboxes"]
    assert [s["learner"] for s in listed] == [name]


def test_a_state_directory_sandboxes_cannot_reach_stops_sandboxd_plainly(config, tmp_path):
    # pytest's tmp_path is 0700, as /root is: every sandbox would fail at its first mount.
    state = tmp_path / "state"
    runtime = replace(config, state_dir=state)
    settings = DaemonConfig(socket_path=tmp_path / "sock" / "sandboxd.sock", runtime=runtime)
    ended = subprocess.run(
        daemon_argv(settings), cwd=PROJECT, capture_output=True, text=True, timeout=60
    )
    assert ended.returncode != 0
    assert (
        f"sandboxd cannot start: sandboxes cannot reach their files under {state}" in ended.stderr
    )
    assert "Traceback" not in ended.stderr
    # Said before anything was made there: no image, no /usr copy, no id blocks.
    assert sorted(p.name for p in state.iterdir()) == ["sandboxd.lock"]


def test_exec_returns_status_and_exact_output(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    daemon.call("ensure", learner=name)
    reply = daemon.call("exec", learner=name, argv=["sh", "-c", "printf 'a\\0b'; exit 3"])
    assert reply["code"] == 3
    assert base64.b64decode(reply["output"]) == b"a\0b"
    as_learner = daemon.call("exec", learner=name, argv=["id", "-u"], user="learner")
    assert base64.b64decode(as_learner["output"]).strip() == b"1000"


def test_exec_output_is_bounded_and_a_hang_times_out(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    daemon.call("ensure", learner=name)
    flood = daemon.call("exec", learner=name, argv=["head", "-c", "3000000", "/dev/zero"])
    assert flood["truncated"] and flood["code"] == 0
    with pytest.raises(Refused) as refused:
        daemon.call("exec", learner=name, argv=["sleep", "30"], timeout=0.5)
    assert refused.value.code == "timeout"


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        ({"op": "ensure", "learner": "../../etc"}, "bad_request"),
        ({"op": "ensure", "learner": "a--b"}, "bad_request"),
        ({"op": "ensure", "learner": "x" * 41}, "bad_request"),
        ({"op": "ensure", "learner": ["a"]}, "bad_request"),
        ({"op": "ensure", "learner": "ok", "node": "Web/1"}, "bad_request"),
        ({"op": "ensure", "learner": "ok", "limits": {"memory": 64 * 1024**3}}, "bad_request"),
        ({"op": "ensure", "learner": "ok", "limits": {"swap": 1}}, "bad_request"),
        ({"op": "exec", "learner": "ok", "argv": "id"}, "bad_request"),
        ({"op": "exec", "learner": "nobody-here", "argv": ["id"]}, "not_running"),
        ({"op": "probe", "learner": "ok", "probe": "../../x"}, "bad_request"),
        ({"op": "attach", "learner": "ok", "role": "admin"}, "bad_request"),
        ({"op": "attach", "learner": "nobody-here", "role": "viewer"}, "not_running"),
        ({"op": "format-disk"}, "bad_request"),
    ],
)
def test_invalid_requests_are_refused_with_a_reason(start_sandboxd, request_, code):
    daemon = start_sandboxd()
    with pytest.raises(Refused) as refused:
        daemon.call(**request_)
    assert refused.value.code == code
    assert refused.value.message
    assert daemon.call("list")["sandboxes"] == []


@pytest.mark.parametrize(
    "payload",
    [
        wire.HEADER.pack(5, 99) + b"hello",  # unknown kind
        wire.HEADER.pack(10 * 1024 * 1024, wire.JSON),  # oversized
        wire.encode(wire.JSON, b"{not json"),
        wire.encode(wire.JSON, b"[1, 2]"),
        b"GET / HTTP/1.1\r\n\r\n",
    ],
)
def test_malformed_frames_get_an_error_and_the_daemon_serves_on(start_sandboxd, payload):
    daemon = start_sandboxd()
    reply = raw_request(daemon.config.socket_path, payload)
    assert reply["ok"] is False and reply["error"] == "bad_request"
    assert daemon.call("ping")["ok"]


def test_admission_per_learner_and_host(start_sandboxd, config):
    daemon = start_sandboxd(
        runtime=replace(config, max_sandboxes=2), max_nodes_per_learner=1, creates_per_minute=1
    )
    name = learner()
    daemon.call("ensure", learner=name)
    with pytest.raises(Refused) as per_learner:
        daemon.call("ensure", learner=name, node="web")
    assert per_learner.value.code == "learner_limit"
    daemon.call("ensure", learner=learner())
    with pytest.raises(Refused) as full:
        daemon.call("ensure", learner=learner())
    assert full.value.code == "host_full"
    assert "maximum of 2" in full.value.message
    # Starting, stopping and starting again is rate-limited per learner.
    daemon.call("destroy", learner=name)
    with pytest.raises(Refused) as rate:
        daemon.call("ensure", learner=name)
    assert rate.value.code == "rate_limited" and "try again in" in rate.value.message


def test_a_socket_beside_other_files_is_refused_and_their_directory_left_open(config, tmp_path):
    # SANDBOXD_SOCKET=/tmp/sandboxd.sock once closed /tmp to everyone but root.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "someone-else.sock").touch()
    daemon = DaemonConfig(socket_path=shared / "sandboxd.sock", runtime=config)
    log = tmp_path / "sandboxd.log"
    with log.open("w") as out, pytest.raises(SandboxdError):
        daemon_spawn(daemon, stdout=out, stderr=out, timeout=10)
    assert shared.stat().st_mode & 0o7777 == 0o1777
    assert "must be in a directory of its own" in log.read_text()
    assert not (shared / "sandboxd.sock").exists()


def test_an_unknown_peer_uid_is_refused(start_sandboxd):
    daemon = start_sandboxd()
    path = daemon.config.socket_path
    # By default neither the directory nor the socket lets anyone else in.
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # Open both up to reach the daemon's own check: SO_PEERCRED against the allowlist.
    os.chmod(path.parent, 0o755)
    os.chmod(path, 0o666)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                reply = call_sync(path, "list")
                message = f"answered {reply}"
            except Refused as refused:
                message = refused.code
            except Exception as exc:
                message = repr(exc)
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        assert f.read() == "forbidden"


def test_probe_reads_kernel_state_from_the_host(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    daemon.call("ensure", learner=name)
    assert daemon.call("probe", learner=name, probe="hostname")["result"] == name
    processes = daemon.call("probe", learner=name, probe="processes")["result"]
    assert processes and all(len(p["nspid"]) == 2 for p in processes)
    with pytest.raises(Refused) as foreign:
        daemon.call("probe", learner=name, probe="hostname", params={"pid": os.getpid()})
    assert foreign.value.code == "failed" and "not in this sandbox" in foreign.value.message


def _leftovers(config, names: list[str]) -> list[str]:
    """Anything on the host that still belongs to the sandboxes `names`."""
    found = []
    mounts = Path("/proc/self/mountinfo").read_text()
    for name in names:
        if f"/sandboxes/{name}/" in mounts:
            found.append(f"mount of {name}")
        for h in cgroup_backend().hierarchies:
            if (h.mountpoint / config.cgroup_parent / name).exists():
                found.append(f"cgroup {h.mountpoint}/{name}")
        if state_read(config, name) is not None:
            found.append(f"state of {name}")
    found += [f"veth {link}" for link in network.leftover_veths()]
    return found


def test_sigkill_then_restart_leaks_nothing_and_keeps_files(start_sandboxd, config):
    daemon = start_sandboxd()
    name = learner()
    first = daemon.call("ensure", learner=name)["sandbox"]
    daemon.call("exec", learner=name, argv=["sh", "-c", "echo kept > /root/notes"])
    daemon.stop(signal.SIGKILL)
    # Each init ends when the daemon's end of its control socket closes.
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{first['init_pid']}/ns") and time.monotonic() < deadline:
        time.sleep(0.05)
    daemon.start()
    assert _leftovers(config, [name]) == []
    again = daemon.call("ensure", learner=name)["sandbox"]
    assert again["init_pid"] != first["init_pid"]
    notes = daemon.call("exec", learner=name, argv=["cat", "/root/notes"])
    assert base64.b64decode(notes["output"]) == b"kept\n"


def test_sigterm_stops_every_sandbox(start_sandboxd, config):
    daemon = start_sandboxd()
    names = [learner(), learner()]
    for name in names:
        daemon.call("ensure", learner=name)
    daemon.stop(signal.SIGTERM)
    assert daemon.process.returncode == 0
    assert _leftovers(config, names) == []
    assert not daemon.config.socket_path.exists()


def test_sigterm_stops_sandboxd_whose_client_stopped_reading(start_sandboxd):
    # Output may run 2 MiB ahead of the client: more than the socket between them holds.
    daemon = start_sandboxd(flow=FlowLimits(ring=4 << 20, high=2 << 20, low=512 << 10))
    attach = {"op": "attach", "learner": learner(), "role": "writer", "rows": 24, "cols": 80}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stuck:
        stuck.connect(str(daemon.config.socket_path))
        stuck.sendall(wire.encode_json(attach) + wire.encode(wire.INPUT, b"yes\r"))
        time.sleep(3)  # never read: sandboxd's writes to it are stuck in its buffer
        daemon.stop(signal.SIGTERM)  # SIGKILL after 30 s
        assert daemon.process.returncode == 0


def test_reset_keeps_or_deletes_the_learners_files(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    daemon.call("ensure", learner=name)
    daemon.call("exec", learner=name, argv=["sh", "-c", "echo mine > /root/f"])
    kept = daemon.call("reset", learner=name, keep_files=True)
    assert kept["stopped"] == [name] and kept["deleted_volumes"] == []
    daemon.call("ensure", learner=name)
    out = daemon.call("exec", learner=name, argv=["cat", "/root/f"])["output"]
    assert base64.b64decode(out) == b"mine\n"
    wiped = daemon.call("reset", learner=name, keep_files=False)
    assert wiped["deleted_volumes"] == [name] and wiped["deleted_recordings"] == []
    daemon.call("ensure", learner=name)
    assert daemon.call("exec", learner=name, argv=["test", "-e", "/root/f"])["code"] == 1
    for flags in ({"keep_files": "no"}, {"recordings": "yes"}):
        with pytest.raises(Refused) as refused:
            daemon.call("reset", learner=name, **flags)
        assert refused.value.code == "bad_request"


def test_a_sandbox_whose_init_dies_is_cleaned_up(start_sandboxd, config):
    daemon = start_sandboxd()
    name = learner()
    init = daemon.call("ensure", learner=name)["sandbox"]["init_pid"]
    os.kill(init, signal.SIGKILL)
    deadline = time.monotonic() + 10
    # Off the list first, then destroyed (in a worker thread): wait for both.
    while (
        daemon.call("list")["sandboxes"] or _leftovers(config, [name])
    ) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert daemon.call("list")["sandboxes"] == []
    assert _leftovers(config, [name]) == []


def test_idle_sandboxes_are_stopped(start_sandboxd):
    daemon = start_sandboxd(idle_timeout=1.0)
    name = learner()
    daemon.call("ensure", learner=name)
    deadline = time.monotonic() + 10
    while daemon.call("list")["sandboxes"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert daemon.call("list")["sandboxes"] == []
    assert daemon.call("stats")["counters"]["reaped_idle"] == 1


def test_healthz_probe_reports_a_real_daemon(start_sandboxd):
    from sandboxapp import health

    daemon = start_sandboxd()
    daemon.call("ensure", learner=learner())
    assert health.probe_sandboxd(daemon.config.socket_path) == {
        "ok": True,
        "detail": f"1 of {daemon.config.runtime.max_sandboxes} sandboxes",
    }


def test_check_reads_the_outcome_from_the_host(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    daemon.call("ensure", learner=name)
    before = daemon.call("check", learner=name, check="nested_pid_namespace")
    assert before["passed"] is False and before["expected"]
    daemon.call("exec", learner=name, argv=["sh", "-c", "echo PASS"])
    assert daemon.call("check", learner=name, check="nested_pid_namespace")["passed"] is False
    with pytest.raises(Refused) as bad:
        daemon.call("check", learner=name, check="hostname_in_own_uts", params={})
    assert bad.value.code == "bad_request" and "hostname" in bad.value.message


def test_topology_starts_a_learners_nodes_and_links_them(start_sandboxd):
    daemon = start_sandboxd()
    name = learner()
    reply = daemon.call("topology", learner=name, nodes=["web", "db"], links=[["web", "db"]])
    assert set(reply["nodes"]) == {"web", "db"}
    assert reply["links"] == [{"a": "web", "b": "db", "subnet": "10.77.0.0/24"}]
    ping = ["ping", "-c1", "-W2", "10.77.0.2"]
    assert daemon.call("exec", learner=name, node="web", argv=ping)["code"] == 0
    # Again: nothing new is made, the link is kept.
    again = daemon.call("topology", learner=name, nodes=["web", "db"], links=[["web", "db"]])
    assert again["nodes"]["web"]["init_pid"] == reply["nodes"]["web"]["init_pid"]
    links = daemon.call("probe", learner=name, node="web", probe="links")["result"]
    assert [link["name"] for link in links if link["kind"] == "veth"] == ["to-db"]
    # A node that stops loses its link; the next topology call restores both.
    daemon.call("destroy", learner=name, node="db")
    daemon.call("topology", learner=name, nodes=["web", "db"], links=[["web", "db"]])
    assert daemon.call("exec", learner=name, node="web", argv=ping)["code"] == 0
    for bad in (
        {"nodes": ["web", "web"]},
        {"nodes": ["web"], "links": [["web", "db"]]},
        {"nodes": ["Web!"]},
        {"nodes": ["a", "b", "c", "d", "e"]},
    ):
        with pytest.raises(Refused):
            daemon.call("topology", learner=name, **bad)


def test_spare_layers_are_kept_ready_for_new_learners(start_sandboxd, config):
    spares = config.state_dir / "volumes" / volumes.SPARES
    size = Limits().disk_bytes

    def ahead() -> list[str]:
        return sorted(p.name for p in spares.glob(f"{volumes.MOUNTED}-*.ext4"))

    def counts() -> tuple[int, int]:
        """Plain spares and spares held mounted, from one listing of the directory."""
        names = [p.name for p in spares.iterdir()]
        plain = sum(n.startswith(f"{size}-") and n.endswith(".ext4") for n in names)
        return plain, sum(n.startswith(f"{volumes.MOUNTED}-") for n in names)

    def settled(want: tuple[int, int]) -> tuple[int, int]:
        # A refill takes a plain spare to mount it before it formats the next, so a count
        # passes through lower values while one runs: wait for both at once.
        deadline = time.monotonic() + 20
        while (now := counts()) != want and time.monotonic() < deadline:
            time.sleep(0.05)
        return now

    for spare in spares.glob("*"):
        spare.unlink()  # what other tests left: start from none

    daemon = start_sandboxd(spare_volumes=2)
    assert settled((2, 2)) == (2, 2)  # formatted at start-up, and two more held mounted
    held = ahead()
    assert all(f"-{daemon.process.pid}-" in name for name in held)
    daemon.call("ensure", learner=learner())
    assert len(set(held) - set(ahead())) == 1  # the new learner's layer is one of them
    daemon.call("ensure", learner=learner())  # and a second, perhaps while that refill runs
    assert settled((2, 2)) == (2, 2)  # both replaced in the background
    daemon.stop()  # the layers it held are plain spares again, their mounts gone
    assert counts() == (4, 0)
    assert not [spare for spare in spares.glob("*.ext4") if volumes.loop_devices_of(spare)]


def test_a_spare_taken_while_a_refill_runs_is_replaced_by_another_pass(
    config, tmp_path, monkeypatch
):
    # A learner who arrives after the refill's last count, and before it ends, was left
    # without a replacement (CI saw it once). A 6 ms mkfs is too short a window to hit on
    # purpose, so the refill here waits until the second learner has taken their spare.
    taken, passes = threading.Event(), []

    def fill(*args: object) -> int:
        passes.append(args)
        taken.wait(10)
        return 0

    monkeypatch.setattr(volumes, "volume_spares_fill", fill)
    daemon = Daemon(DaemonConfig(tmp_path / "sock", config, spare_volumes=2))

    async def two_learners() -> None:
        daemon._refill_spares()  # the first learner took a spare
        while not passes:
            await asyncio.sleep(0.001)
        daemon._refill_spares()  # the second, while the refill runs
        taken.set()
        await daemon.refill

    asyncio.run(two_learners())
    assert len(passes) == 2

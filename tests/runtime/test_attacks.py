"""One attack per defence. Each must fail, and each is harmless if its defence is missing:
it writes back current values, uses harmless requests, and cleans up what it makes."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from sandboxapp.runtime import rootfs
from sandboxapp.runtime.sandbox import SandboxError

PY = "/usr/bin/python3"


def py(sandbox, code: str, **kwargs) -> tuple[int, str]:
    status, out = sandbox.run([PY, "-c", code], **kwargs)
    return status, out.decode(errors="replace")


def test_chroot_breakout_stays_in_the_sandbox(sandbox):
    # The classic: chroot into a subdirectory without chdir, then climb out with "..".
    code = """
import os
os.makedirs("/tmp/jail", exist_ok=True)
fd = os.open("/", os.O_RDONLY)
os.chroot("/tmp/jail")
os.fchdir(fd)
for _ in range(64):
    os.chdir("..")
os.chroot(".")
print(sorted(os.listdir("/")))
print(os.path.exists("/proc/1/root/work"), os.path.exists("/var/lib/contained-tests"))
"""
    status, out = py(sandbox, code)
    assert status == 0, out
    listing, leaked = out.splitlines()
    assert "lower-image" not in listing and "sandboxes" not in listing
    assert leaked == "False False"
    # The root the process ended in is the sandbox's own root.
    assert os.path.samestat(
        os.stat(f"/proc/{sandbox.init_pid}/root"), os.stat(f"/proc/{sandbox.init_pid}/root/.")
    )


def test_host_files_outside_the_image_are_invisible(sandbox, sh):
    secret = Path("/var/tmp") / f"contained-secret-{secrets.token_hex(4)}"
    secret.write_text("host only")
    try:
        code, out = sh(sandbox, f"cat {secret}")
        assert code != 0 and "host only" not in out and "No such file" in out
        code, out = sh(sandbox, "ls -a /var/tmp /tmp")
        assert code == 0 and secret.name not in out
    finally:
        secret.unlink()


def test_host_process_cannot_be_seen_or_signalled(sandbox, sh):
    victim = subprocess.Popen(["sleep", "60"])
    try:
        code, out = sh(sandbox, f"ls /proc | grep -c '^[0-9]'; kill -9 {victim.pid}; echo sent=$?")
        assert int(out.split()[0]) < 10, "the sandbox sees only its own few processes"
        assert victim.poll() is None, "the host process survived"
    finally:
        victim.kill()
        victim.wait()


def test_host_loopback_server_is_unreachable(sandbox):
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    accepted: list[object] = []
    server.settimeout(5)
    thread = threading.Thread(target=lambda: accepted.append(_accept(server)), daemon=True)
    thread.start()
    try:
        code = f"""
import socket
for host in ("127.0.0.1", "10.0.2.2", "172.17.0.1"):
    try:
        socket.create_connection((host, {port}), timeout=1)
        print("connected", host)
    except OSError as e:
        print("refused", host, e.errno)
"""
        status, out = py(sandbox, code)
        assert "connected" not in out and out.count("refused") == 3, out
    finally:
        server.close()
        thread.join()
    assert accepted == [None]


def _accept(server: socket.socket) -> object:
    try:
        return server.accept()
    except OSError:
        return None


def test_sensitive_proc_files_are_masked(sandbox, sh):
    present = [p for p in rootfs.MASKED_FILES if os.path.exists(f"/{p}")]
    assert present, "the host has at least one of the files runc masks"
    code, out = sh(sandbox, "stat -c %t:%T " + " ".join(f"/{p}" for p in present))
    assert out.split() == ["1:3"] * len(present), "each is /dev/null in the sandbox"


def test_sysrq_trigger_write_goes_nowhere(sandbox, sh):
    # 'h' only prints the help text, should the write ever reach the kernel.
    code, out = sh(
        sandbox,
        "umount /proc/sysrq-trigger; echo h > /proc/sysrq-trigger;"
        " stat -c %t:%T /proc/sysrq-trigger",
    )
    if os.path.exists("/proc/sysrq-trigger"):
        assert out.split()[-1] == "1:3"
    else:
        assert "No such file" in out


def test_proc_sys_is_read_only(sandbox, sh):
    code, out = sh(
        sandbox,
        "v=$(cat /proc/sys/vm/swappiness); echo $v > /proc/sys/vm/swappiness; echo status=$?",
    )
    assert "status=1" in out or "Read-only" in out
    assert "status=0" not in out


def test_masks_cannot_be_unmounted(sandbox, sh):
    code, out = sh(
        sandbox,
        "umount /proc/timer_list; umount -l /proc/sys; umount /run/.contained; "
        "wc -c < /proc/timer_list; ls -A /run/.contained | wc -l",
    )
    assert out.split()[-2:] == ["0", "0"], "timer_list stays masked, the hidden mounts covered"


def test_host_disk_cannot_be_mknod_or_mounted(sandbox, sh):
    root_dev = os.stat("/").st_dev
    major, minor = os.major(root_dev), os.minor(root_dev)
    code, out = sh(
        sandbox,
        f"mknod /tmp/disk b {major} {minor} && echo made; "
        f"mount /tmp/disk /mnt && echo mounted; "
        f"mount -t ext4 /dev/vda /mnt && echo mounted2; rm -f /tmp/disk",
    )
    assert "mounted" not in out


def test_kernel_module_load_is_refused(sandbox):
    status, out = py(
        sandbox,
        "import ctypes, os; r = ctypes.CDLL(None, use_errno=True)"
        ".syscall(313, -1, b'', 0); print(r, ctypes.get_errno())",
    )
    assert out.split() == ["-1", "1"], out  # EPERM, not EBADF: refused before looking


def test_keyctl_is_refused(sandbox):
    # KEYCTL_GET_KEYRING_ID of the session keyring: allowed on the host, harmless.
    status, out = py(
        sandbox,
        "import ctypes; r = ctypes.CDLL(None, use_errno=True)"
        ".syscall(250, 0, -3, 0); print(r, ctypes.get_errno())",
    )
    assert out.split() == ["-1", "1"], out


def test_clock_cannot_be_changed(sandbox):
    # Sets the clock to the time it already has.
    code = (
        "import ctypes, time; lib = ctypes.CDLL(None, use_errno=True)\n"
        "class T(ctypes.Structure): _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]\n"
        "t = T(int(time.time()), 0); print(lib.clock_settime(0, ctypes.byref(t)),"
        " ctypes.get_errno())"
    )
    status, out = py(sandbox, code)
    assert out.split() == ["-1", "1"], out


def test_tiocsti_cannot_inject_input(sandbox):
    code = (
        "import fcntl, os, termios\n"
        "fd = os.open('/dev/tty', os.O_RDWR)\n"
        "try:\n fcntl.ioctl(fd, termios.TIOCSTI, b'x'); print('injected')\n"
        "except OSError as e: print('refused', e.errno)"
    )
    proc = sandbox.spawn([PY, "-c", code], terminal=(24, 80))
    master = proc.terminal
    proc.wait(timeout=10)
    output = os.read(master, 4096).decode()
    os.close(master)
    assert "refused 1" in output and "injected" not in output


def test_setuid_binary_gains_nothing(sandbox, sh):
    code, out = sh(
        sandbox,
        "cp /usr/bin/env /home/learner/suenv && chmod 4755 /home/learner/suenv"
        " && ls -l /home/learner/suenv",
    )
    assert code == 0 and out.startswith("-rwsr-xr-x"), out
    code, out = sh(sandbox, "/home/learner/suenv id -u", user="learner")
    assert out.strip() == "1000"


@pytest.mark.parametrize("user", ["root", "learner"])  # a spawn, and a fork then exec
def test_no_host_file_descriptor_leaks_in(sandbox, sh, tmp_path, user):
    leak = open(tmp_path / "leak", "w")  # noqa: SIM115 - must stay open across the check
    os.set_inheritable(leak.fileno(), True)
    try:
        code, out = sh(sandbox, "ls /proc/self/fd", user=user)
        assert sorted(int(fd) for fd in out.split()) == [0, 1, 2, 3]  # 3: ls's own dir fd
    finally:
        leak.close()


def test_capabilities_are_bounded_and_nnp_and_seccomp_set(sandbox, sh):
    code, out = sh(sandbox, "grep -E '^(CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status")
    fields = dict(line.split(":\t") for line in out.splitlines())
    bounding = int(fields["CapBnd"], 16)
    for dropped in (16, 17, 22, 25, 34):  # SYS_MODULE, SYS_RAWIO, SYS_BOOT, SYS_TIME, SYSLOG
        assert not bounding & (1 << dropped)
    assert bounding & (1 << 21), "SYS_ADMIN stays: nested namespaces need it"
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2"


def test_two_sandboxes_cannot_see_each_other(make_sandbox, sh):
    a, b = make_sandbox(), make_sandbox()
    token = secrets.token_hex(8)
    sh(a, f"echo {token} > /root/secret")
    runner = a.spawn(["/bin/sleep", "30"])
    try:
        code, out = sh(
            b,
            f"cat /root/secret; ps -eo args | grep -cx '/bin/sleep 30'; grep -rl {token}"
            " /root /tmp /home 2>/dev/null; echo end",
        )
        assert token not in out
        assert out.split()[-2] == "0", "b does not see a's sleeping process"
    finally:
        runner.kill()
        runner.wait()


def test_terminal_path_is_never_resolved_on_the_host(sandbox, sh):
    victim = Path("/var/tmp") / f"contained-victim-{secrets.token_hex(4)}"
    victim.write_text("host file")
    try:
        code, out = sh(sandbox, f"mount -t tmpfs t /dev/pts && ln -s {victim} /dev/pts/ptmx")
        assert code == 0, out
        with pytest.raises(SandboxError, match="could not start.*terminal: .*ptmx"):
            sandbox.spawn(["/bin/true"], terminal=(24, 80))
        assert victim.read_text() == "host file"
    finally:
        victim.unlink()
    sh(sandbox, "umount /dev/pts")
    process = sandbox.spawn(["/bin/true"], terminal=(24, 80))  # its own terminals work again
    assert process.wait(timeout=10) == 0
    os.close(process.terminal)


def test_signals_from_inside_do_not_end_the_sandbox(sandbox, sh):
    sh(sandbox, "kill -INT 1; kill -TERM 1; kill -HUP 1; kill -QUIT 1; kill -CHLD 1; kill -9 1")
    assert sandbox.alive()
    code, out = sh(sandbox, "echo still here")
    assert out.strip() == "still here"


def test_init_memory_cannot_be_read_from_inside(sandbox, sh):
    # pid 1 is a copy of the host-side parent's memory: it must stay unreadable.
    code, out = sh(sandbox, "head -c 16 /proc/1/mem; head -c 16 /proc/1/environ; echo end")
    assert "Permission denied" in out
    assert out.count("Permission denied") == 2


def test_learner_processes_start_with_default_signal_dispositions(sandbox, sh):
    code, out = sh(sandbox, "yes | head -n 1; grep SigIgn /proc/self/status")
    assert "Broken pipe" not in out
    assert out.split()[-1] == "0000000000000000"

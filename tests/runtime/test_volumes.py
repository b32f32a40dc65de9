"""A learner's layer: formatted spares, loop devices set up and freed by the runtime itself."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

from sandboxapp.runtime import volumes
from sandboxapp.runtime.reconcile import reconcile
from sandboxapp.runtime.spec import ID_BLOCK, Limits


def _spares(state_dir: Path, size: int) -> list[Path]:
    return sorted((state_dir / "volumes" / volumes.SPARES).glob(f"{size}-*.ext4"))


def test_a_new_learner_takes_a_formatted_spare(make_sandbox, sh, config):
    size = Limits().disk_bytes
    volumes.volume_spares_fill(config.state_dir, size, 2)
    before = _spares(config.state_dir, size)
    assert len(before) == 2
    sandbox = make_sandbox(learner="sparrow")
    after = _spares(config.state_dir, size)
    assert len(after) == 1 and after[0] in before
    # The spare became the learner's layer, owned by root as seen inside, and it works.
    mountpoint = config.state_dir / "volumes" / "sparrow"
    assert os.stat(mountpoint / "root" / "upper").st_uid == 0
    code, out = sh(sandbox, "echo mine > /root/file && cat /root/file")
    assert (code, out.strip()) == (0, "mine")
    # A second fill tops up to the count again, and only that.
    assert volumes.volume_spares_fill(config.state_dir, size, 2) == 1


OWNERS = "stat -c '%n %u %g %A' /root/mine /home/learner/theirs"


def _owners_on_disk(mountpoint: Path) -> dict[str, tuple[int, int]]:
    upper = mountpoint / "root" / "upper"
    return {
        name: (os.lstat(upper / name).st_uid, os.lstat(upper / name).st_gid)
        for name in ("root/mine", "home/learner/theirs")
    }


def test_a_layer_keeps_the_ids_seen_inside_whatever_block_runs_it(make_sandbox, sh, config):
    first = make_sandbox(learner="nomad")
    assert sh(first, "echo a > /root/mine && chmod 4755 /root/mine")[0] == 0
    assert sh(first, "echo b > /home/learner/theirs", user="learner")[0] == 0
    mountpoint = config.state_dir / "volumes" / "nomad"
    # On disk, the ids as the sandbox sees them, not its host ids.
    assert _owners_on_disk(mountpoint) == {"root/mine": (0, 0), "home/learner/theirs": (1000, 1000)}
    # Ids 0-65535 on disk are host root's and host users': none of them may reach in.
    host_user = subprocess.run(
        [
            "setpriv",
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            "cat",
            mountpoint / "root" / "upper" / "home" / "learner" / "theirs",
        ],
        capture_output=True,
        text=True,
    )
    assert host_user.returncode != 0 and "Permission denied" in host_user.stderr
    seen = sh(first, OWNERS)
    first.destroy()
    # The next sandbox runs as another block: it takes the spare made while the first one
    # held its own.
    again = make_sandbox(learner="nomad")
    assert again.uid_base != first.uid_base
    assert sh(again, OWNERS) == seen
    assert "/root/mine 0 0 -rwsr-xr-x" in seen[1]
    assert sh(
        again, "echo c >> /home/learner/theirs && cat /home/learner/theirs", user="learner"
    ) == (
        0,
        "b\nc\n",
    )


def test_a_layer_written_with_host_ids_gets_the_ids_seen_inside(make_sandbox, sh, config):
    sandbox = make_sandbox(learner="elder")
    assert (
        sh(sandbox, "echo a > /root/mine && chmod 4755 /root/mine && ln -s mine /root/link")[0] == 0
    )
    assert sh(sandbox, "echo b > /home/learner/theirs", user="learner")[0] == 0
    seen = sh(sandbox, OWNERS)
    sandbox.destroy()
    # As a layer was before sandboxes borrowed their blocks: every file owned by the host
    # ids of its learner's block.
    old_base = 1234 * ID_BLOCK
    path, lock = volumes.volume_acquire(config.state_dir, "elder", Limits().disk_bytes)
    try:
        for top, dirs, files in os.walk(path):
            for name in [*dirs, *files]:
                st = os.lstat(os.path.join(top, name))
                os.lchown(os.path.join(top, name), old_base + st.st_uid, old_base + st.st_gid)
                if not stat.S_ISLNK(st.st_mode):
                    os.chmod(os.path.join(top, name), stat.S_IMODE(st.st_mode))
        os.chown(path, old_base, old_base)
        assert _owners_on_disk(Path(path))["home/learner/theirs"] == (old_base + 1000,) * 2
    finally:
        volumes.volume_release(config.state_dir, "elder", lock)

    again = make_sandbox(learner="elder")

    assert sh(again, OWNERS) == seen
    assert sh(again, "stat -c %u /root/link")[1].strip() == "0"
    mountpoint = config.state_dir / "volumes" / "elder"
    assert _owners_on_disk(mountpoint) == {"root/mine": (0, 0), "home/learner/theirs": (1000, 1000)}
    assert os.stat(mountpoint).st_uid == 0


def test_a_layer_of_another_size_is_formatted_on_the_spot(make_sandbox, sh, config):
    volumes.volume_spares_fill(config.state_dir, Limits().disk_bytes, 1)
    spares = _spares(config.state_dir, Limits().disk_bytes)
    sandbox = make_sandbox(learner="odd", disk_bytes=64 * 1024 * 1024)
    assert _spares(config.state_dir, Limits().disk_bytes) == spares
    code, out = sh(sandbox, "df -k / | tail -1")
    assert code == 0 and 50_000 < int(out.split()[1]) <= 65_536


def test_a_layer_takes_little_host_disk_and_stays_consistent(make_sandbox, sh, config):
    volumes.volume_spares_fill(config.state_dir, Limits().disk_bytes, 1)
    spares = _spares(config.state_dir, Limits().disk_bytes)
    assert spares and all(s.stat().st_blocks * 512 < 2 * 1024 * 1024 for s in spares), (
        "inode tables and journal not zeroed"
    )
    sandbox = make_sandbox(learner="thrifty")
    code, out = sh(sandbox, "for i in $(seq 200); do echo $i > /root/f$i; done; ls /root | wc -l")
    assert (code, out.strip()) == (0, "200")
    sandbox.destroy()
    image = config.state_dir / "volumes" / "thrifty.ext4"
    deadline = time.monotonic() + 5
    while volumes.loop_devices_of(image) and time.monotonic() < deadline:
        time.sleep(0.05)  # unmounted once the last file closes
    # Nothing zeroed the holes after the mount either, and fsck finds the files sound.
    assert image.stat().st_blocks * 512 < 4 * 1024 * 1024
    check = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_loop_device_is_freed_with_the_layer(make_sandbox, config):
    sandbox = make_sandbox(learner="looper")
    image = config.state_dir / "volumes" / "looper.ext4"
    assert len(volumes.loop_devices_of(image)) == 1
    sandbox.destroy()
    deadline = time.monotonic() + 5
    while volumes.loop_devices_of(image) and time.monotonic() < deadline:
        time.sleep(0.05)  # the lazy unmount lets go once the last file closes
    assert volumes.loop_devices_of(image) == []


def test_reconcile_removes_half_made_spares_but_not_ready_ones(config):
    size = Limits().disk_bytes
    volumes.volume_spares_fill(config.state_dir, size, 1)
    ready = _spares(config.state_dir, size)
    spares = config.state_dir / "volumes" / volumes.SPARES
    old, young = spares / "new-crashed", spares / "claimed-young.ext4"
    old.write_bytes(b"half an mkfs")
    young.write_bytes(b"being claimed right now")
    an_hour_ago = time.time() - 3600
    os.utime(old, (an_hour_ago, an_hour_ago))
    report = reconcile(config)
    assert report.removed_spares == ["new-crashed"]
    assert young.exists() and _spares(config.state_dir, size) == ready
    young.unlink()


def _held_ahead(state_dir: Path) -> list[Path]:
    return sorted((state_dir / "volumes" / volumes.SPARES).glob(f"{volumes.MOUNTED}-*.ext4"))


def _mounted_anywhere(path: Path) -> bool:
    return str(path) in Path("/proc/self/mountinfo").read_text()


def test_a_spare_mounted_ahead_becomes_a_new_learners_layer(make_sandbox, sh, config):
    size = Limits().disk_bytes
    try:
        volumes.volume_spares_fill(config.state_dir, size, 1, ahead=1)
        (held,) = _held_ahead(config.state_dir)
        waiting = _spares(config.state_dir, size)
        # Mounted, but nowhere anyone can see: a detached mount only this process holds.
        assert len(volumes.loop_devices_of(held)) == 1 and not _mounted_anywhere(held.parent)
        # A reconcile meanwhile (`manage.py sandbox reconcile`) leaves a live holder's alone:
        # handed out again, it would be mounted twice.
        reconcile(config)
        assert _held_ahead(config.state_dir) == [held]
        assert _spares(config.state_dir, size) == waiting
        sandbox = make_sandbox(learner="early")
        image = config.state_dir / "volumes" / "early.ext4"
        assert not held.exists() and volumes.loop_devices_of(image)
        assert _spares(config.state_dir, size) == waiting  # the one mounted ahead was taken
        mountpoint = config.state_dir / "volumes" / "early"
        assert os.path.ismount(mountpoint)
        assert os.stat(mountpoint / "root" / "upper").st_uid == 0
        code, out = sh(sandbox, "echo mine > /root/file && cat /root/file")
        assert (code, out.strip()) == (0, "mine")
        sandbox.destroy()
        again = make_sandbox(learner="early")  # their files, from the same layer
        assert sh(again, "cat /root/file") == (0, "mine\n")
    finally:
        volumes.volume_spares_release(config.state_dir)


def test_spares_mounted_ahead_are_spares_again_when_their_holder_ends(config):
    size = Limits().disk_bytes
    volumes.volume_spares_fill(config.state_dir, size, 0, ahead=1)
    (mine,) = _held_ahead(config.state_dir)
    volumes.volume_spares_release(config.state_dir)  # stopping cleanly
    assert _held_ahead(config.state_dir) == [] and not volumes.loop_devices_of(mine)
    assert len(_spares(config.state_dir, size)) == 1
    # Killed instead: the kernel unmounts what it held, and reconcile gives it back.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from sandboxapp.runtime import volumes;"
            f"volumes.volume_spares_fill(Path({str(config.state_dir)!r}), {size}, 0, ahead=1);"
            "print('held', flush=True); time.sleep(60)",
        ],
        cwd=Path(__file__).resolve().parents[2],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout.readline() == b"held\n"
    (theirs,) = _held_ahead(config.state_dir)
    assert volumes.loop_devices_of(theirs)
    holder.kill()
    holder.wait()
    deadline = time.monotonic() + 5
    while volumes.loop_devices_of(theirs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not volumes.loop_devices_of(theirs)
    reconcile(config)
    assert _held_ahead(config.state_dir) == []
    (spare,) = _spares(config.state_dir, size)
    check = subprocess.run(["e2fsck", "-fn", str(spare)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_dead_holders_spare_is_not_given_back_while_the_kernel_still_holds_it(config):
    size = Limits().disk_bytes
    volumes.volume_spares_fill(config.state_dir, size, 1)
    (spare,) = _spares(config.state_dir, size)
    dead = subprocess.Popen(["true"])
    dead.wait()
    token = spare.name.removesuffix(".ext4").split("-")[1]
    held = spare.with_name(f"{volumes.MOUNTED}-{dead.pid}-{size}-{token}.ext4")
    spare.rename(held)
    # As just after its holder died: its loop device not yet freed.
    backing = os.open(held, os.O_RDWR | os.O_CLOEXEC)
    number, device = volumes._loop_attach(backing, str(held))
    os.close(backing)
    try:
        reconcile(config)
        assert held.exists() and _spares(config.state_dir, size) == []
    finally:
        os.close(device)  # autoclear: the device goes with its last user
    deadline = time.monotonic() + 5
    while volumes.loop_devices_of(held) and time.monotonic() < deadline:
        time.sleep(0.05)
    reconcile(config)
    assert not held.exists() and _spares(config.state_dir, size) == [spare]


def test_deleting_a_layer_leaves_nothing_of_it(make_sandbox, config):
    # Guests pruned by the thousand would otherwise leave a lock file each.
    make_sandbox(learner="goner").destroy()
    volumes.volume_delete(config.state_dir, "goner")
    assert [p.name for p in (config.state_dir / "volumes").iterdir() if "goner" in p.name] == []
    make_sandbox(learner="goner").destroy()  # a layer of that name can come again


def test_a_lock_on_a_lock_file_deleted_meanwhile_is_taken_again(config, monkeypatch):
    # A deleter removes the lock file between our open and our flock, and someone else
    # makes it anew: our lock, on the old file, would guard nothing.
    lockfile = config.state_dir / "volumes" / "raced.lock"
    lockfile.parent.mkdir(parents=True, exist_ok=True)
    real_flock = volumes.fcntl.flock
    calls = []

    def flock_after_a_delete(fd: int, operation: int) -> None:
        calls.append(fd)
        if len(calls) == 1:
            lockfile.unlink()
            lockfile.touch()
        real_flock(fd, operation)

    monkeypatch.setattr(volumes.fcntl, "flock", flock_after_a_delete)
    lock = volumes._lock(lockfile)
    try:
        assert len(calls) == 2
        assert os.fstat(lock).st_ino == lockfile.stat().st_ino
    finally:
        os.close(lock)
        lockfile.unlink()

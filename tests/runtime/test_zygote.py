"""The zygote that forks every sandbox: what a sandbox's init carries, and its lifecycle."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandboxapp.runtime import ids, zygote
from sandboxapp.runtime.cgroups import INNER, SPARE_PREFIX
from sandboxapp.runtime.security import KEPT_MASK
from tests.sandboxes import spare_cgroup_dirs

REPO = Path(__file__).resolve().parents[2]


def _memory_holds(pid: int, needle: bytes) -> bool:
    """Whether any writable mapping of `pid` contains `needle` (read as host root)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            addresses, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(a, 16) for a in addresses.split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue  # a guard page or an unreadable special mapping
    return False


def test_a_sandbox_init_carries_none_of_its_creators_memory(make_sandbox):
    # The secret lives only in this process: a forked copy of it would hold it too.
    secret = ("contained-secret-" + secrets.token_hex(16)).encode()
    assert _memory_holds(os.getpid(), secret), "the scan must find what is there"
    sandbox = make_sandbox()
    assert not _memory_holds(sandbox.init_pid, secret)
    assert Path(f"/proc/{sandbox.init_pid}/cmdline").read_bytes().startswith(b"init [contained]")


def test_the_init_itself_is_held_to_the_sandbox_hardening(make_sandbox):
    sandbox = make_sandbox()
    status = dict(
        line.split(":\t", 1)
        for line in Path(f"/proc/{sandbox.init_pid}/status").read_text().splitlines()
    )
    assert int(status["CapBnd"], 16) == KEPT_MASK
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2"


def test_a_killed_zygote_is_replaced_at_the_next_sandbox(make_sandbox, sh):
    make_sandbox()
    process = zygote._ZYGOTE._process
    assert process is not None and process.poll() is None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    code, out = sh(make_sandbox(), "echo alive")
    assert (code, out.strip()) == (0, "alive")
    assert zygote._ZYGOTE._process is not process


def _children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def _ended(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # dead, waiting for the init of this machine to reap it


def test_the_next_spare_is_forked_once_a_sandbox_is_up(make_sandbox):
    make_sandbox()
    zygote_pid = zygote._ZYGOTE._process.pid
    make_sandbox()  # takes the spare; its creator exits before the sandbox is up
    # The next is asked for at "ready", not left to the zygote's idle tick a second later:
    # a creator with its init waiting under it.
    deadline = time.monotonic() + 0.5
    while not [c for c in _children(zygote_pid) if _children(c)]:
        assert time.monotonic() < deadline, "no spare within half a second of the sandbox"
        time.sleep(0.01)


def test_a_spare_init_is_held_to_the_seccomp_filter_while_it_waits(make_sandbox):
    # Loaded while nobody waits rather than at the take: the init never runs unfiltered
    # once it has made the learner's namespaces.
    make_sandbox()
    zygote_pid = zygote._ZYGOTE._process.pid
    deadline = time.monotonic() + 5
    while not (inits := [i for c in _children(zygote_pid) for i in _children(c)]):
        assert time.monotonic() < deadline, "no spare init"
        time.sleep(0.01)
    status = Path(f"/proc/{inits[0]}/status").read_text()
    deadline = time.monotonic() + 5
    while "Seccomp:\t2" not in status:  # it may still be making the learner's namespaces
        assert time.monotonic() < deadline, status
        time.sleep(0.01)
        status = Path(f"/proc/{inits[0]}/status").read_text()


def test_a_sandbox_is_returned_before_the_next_spare_is_asked_for(make_sandbox, monkeypatch):
    # Asking borrows an id block and names the spare's cgroups, 1.5 ms here: a thread of
    # the zygote's handle does it, off the path of the learner's first command.
    make_sandbox()
    zygote._ZYGOTE._refiller.submit(lambda: None).result(10)  # its refill is done
    asking = threading.Event()
    let_go = threading.Event()
    borrow = ids.ids_borrow

    def held_borrow(*args: object) -> int:
        asking.set()
        let_go.wait(10)
        return borrow(*args)

    monkeypatch.setattr(ids, "ids_borrow", held_borrow)
    made = []
    creating = threading.Thread(target=lambda: made.append(make_sandbox()))
    creating.start()
    try:
        creating.join(10)
        assert made, "sandbox_create waited for the next spare's id block"
        assert asking.wait(10), "the next spare was never asked for"
    finally:
        let_go.set()
        creating.join(10)


def test_a_spare_killed_while_it_waits_is_replaced(make_sandbox, sh):
    make_sandbox()  # the zygote is up, and has its spare again soon after
    zygote_pid = zygote._ZYGOTE._process.pid
    deadline = time.monotonic() + 10
    while not _children(zygote_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    for creator in _children(zygote_pid):
        os.kill(creator, signal.SIGKILL)
    time.sleep(1.5)  # the zygote notices within a second
    code, out = sh(make_sandbox(), "echo alive")
    assert (code, out.strip()) == (0, "alive")
    assert zygote._ZYGOTE._process.pid == zygote_pid, "the same zygote, not a restart"


def test_a_zygote_that_answers_late_is_restarted_not_misread(make_sandbox, config):
    # Its late answer would be read as the next ask's: a spare mapped to one id block
    # recorded with another, which two sandboxes could then share.
    make_sandbox()
    z = zygote._ZYGOTE
    z._refiller.submit(lambda: None).result(10)
    with z._lock:
        z._spare_drop(wait=2)  # the next take must ask
        z._channel.settimeout(0.2)
        late = z._process
        os.kill(late.pid, signal.SIGSTOP)
        threading.Timer(0.5, os.kill, (late.pid, signal.SIGCONT)).start()
        with pytest.raises(OSError):
            z._ask(None)
    assert late.poll() is not None and z._process is None
    sandbox = make_sandbox()
    uids = Path(f"/proc/{sandbox.init_pid}/status").read_text().split("Uid:")[1].split()[:4]
    assert set(uids) == {str(sandbox.uid_base)}
    assert ids.borrowed_blocks(config.state_dir)[sandbox.name] == sandbox.uid_base


def test_the_zygote_and_its_spare_end_with_the_process_that_started_it(config):
    script = (
        f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
        "from sandboxapp.runtime import zygote\n"
        f"from pathlib import Path; zygote.zygote_start(Path({str(config.state_dir)!r}))\n"
        "print(zygote._ZYGOTE._process.pid, flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        child_pid = int(parent.stdout.readline())
        assert Path(f"/proc/{child_pid}/cmdline").read_bytes().startswith(b"zygote [contained]")
        # The spare: a creator, and the init it forked, waiting in their own namespaces.
        deadline = time.monotonic() + 10
        while not _children(child_pid) and time.monotonic() < deadline:
            time.sleep(0.01)  # asked for once the zygote is up
        (creator,) = _children(child_pid)
        while not _children(creator) and time.monotonic() < deadline:
            time.sleep(0.01)  # the creator forks the init on its own time
        (init,) = _children(creator)
        assert os.stat(f"/proc/{init}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino
        assert os.stat(f"/proc/{init}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not all(map(_ended, (child_pid, creator, init))):
        time.sleep(0.05)
    for pid in (child_pid, creator, init):
        if not _ended(pid):
            os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"{pid} outlived the zygote's parent")


def test_sandboxes_are_forked_from_a_process_without_the_sites_secrets(make_sandbox, monkeypatch):
    # The daemon's environment holds SECRET_KEY and DATABASE_URL under compose.
    monkeypatch.setenv("SECRET_KEY", "zygote-must-never-hold-this")
    zygote.zygote_stop()
    sandbox = make_sandbox()  # starts a fresh zygote, from this environment
    assert not _memory_holds(zygote._ZYGOTE._process.pid, b"zygote-must-never-hold-this")
    assert not _memory_holds(sandbox.init_pid, b"zygote-must-never-hold-this")


def _procs(spare: Path) -> set[str]:
    try:
        return set((spare / INNER / "cgroup.procs").read_text().split())
    except FileNotFoundError:
        return set()


def _v1_only() -> None:
    from sandboxapp.runtime.sandbox import cgroup_backend

    if cgroup_backend().version != 1:
        pytest.skip("cgroup2 refuses renames: its spares are moved into their sandbox's cgroup")


def test_on_cgroup_v1_a_spare_is_born_in_cgroups_its_sandbox_takes_over(make_sandbox, config):
    # Moving a process into a cgroup waits for an RCU grace period with the cgroup mutex
    # held (5-11 ms): the next spare's creator joins cgroups of its own while nobody waits,
    # and the sandbox that takes the spare renames them to its own.
    _v1_only()
    make_sandbox()
    deadline = time.monotonic() + 5
    # C joins first, then forks the init: wait for both, C and the init, in each hierarchy
    # (the init's helper, which makes the learner's namespaces, comes and goes meanwhile).
    while not (spares := [p for p in spare_cgroup_dirs(config) if len(_procs(p)) == 2]) or len(
        spares
    ) != len({p.parent for p in spares}):
        assert time.monotonic() < deadline, f"no spare in cgroups of its own: {spares}"
        time.sleep(0.01)
    (name,) = {path.name for path in spares}
    spare_pids = _procs(spares[0])
    sandbox = make_sandbox(memory_bytes=96 * 1024 * 1024)
    assert str(sandbox.init_pid) in spare_pids  # the same init, not a new one
    assert sandbox.cgroup.holds(sandbox.init_pid)
    assert all(not (path.parent / name).exists() for path in spares)  # renamed, not copied
    assert sandbox.cgroup.limits()["memory_bytes"] == 96 * 1024 * 1024
    # The learner's root may still make cgroups of their own below it.
    assert all(os.stat(d).st_uid == sandbox.uid_base for d in sandbox.cgroup.inner)


def _held_spare() -> zygote.Creator:
    deadline = time.monotonic() + 5
    while (spare := zygote._ZYGOTE._spare) is None:
        assert time.monotonic() < deadline, "no spare was made"
        time.sleep(0.01)
    return spare


def _memory_limits(outer: Path) -> set[int]:
    """memory and memory+swap limits of a v1 cgroup (one value if they agree)."""
    names = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
    return {int((outer / n).read_text()) for n in names if (outer / n).exists()}


def test_on_cgroup_v1_a_spare_waits_delegated_and_limited_as_the_last_sandbox(make_sandbox, config):
    # The cgroups' limits and delegation are set while the spare waits, off the take's path.
    _v1_only()
    small, big = 96 * 1024 * 1024, 160 * 1024 * 1024
    make_sandbox(memory_bytes=small)
    spare = _held_spare()
    assert spare.prepared is not None and spare.prepared.memory_bytes == small
    assert all(os.stat(inner).st_uid == spare.uid_base for inner in spare.cgroups)
    (memory,) = [p.parent for p in spare.cgroups if (p.parent / "memory.limit_in_bytes").exists()]
    assert _memory_limits(memory) == {small}

    # A bigger sandbox takes it: memory+swap is raised before memory, or the kernel refuses.
    bigger = make_sandbox(memory_bytes=big)
    assert bigger.cgroup.limits()["memory_bytes"] == big
    assert _memory_limits(memory.parent / bigger.spec.name) == {big}  # renamed: same hierarchy
    assert bigger.cgroup.holds(bigger.init_pid)
    # The next spare waits under the bigger limits; a smaller sandbox lowers them again.
    assert _held_spare().prepared.memory_bytes == big
    smaller = make_sandbox(memory_bytes=small)
    assert smaller.cgroup.limits()["memory_bytes"] == small
    assert all(os.stat(d).st_uid == smaller.uid_base for d in smaller.cgroup.inner)


def test_a_spare_whose_cgroups_were_not_made_ready_is_moved_into_new_ones(
    make_sandbox, config, monkeypatch
):
    # C not in its cgroups, or their limits refused: the take does it all, as before spares.
    _v1_only()
    from sandboxapp.runtime import sandbox as sandbox_module

    monkeypatch.setattr(sandbox_module._SpareCgroups, "prepare", lambda *args: None)
    zygote.zygote_stop()
    make_sandbox()
    spare = _held_spare()
    assert spare.cgroups and spare.prepared is None

    taker = make_sandbox(memory_bytes=112 * 1024 * 1024)

    assert taker.init_pid in {int(p) for p in _procs(taker.cgroup.outer[0])}
    assert taker.cgroup.holds(taker.init_pid)
    assert taker.cgroup.limits()["memory_bytes"] == 112 * 1024 * 1024
    assert all(os.stat(d).st_uid == taker.uid_base for d in taker.cgroup.inner)
    assert not any(p.exists() for p in spare.cgroups), "the spare's own cgroups are removed"


def test_a_stopped_zygote_leaves_no_spare_cgroup(make_sandbox, config):
    _v1_only()
    make_sandbox()
    spare = _held_spare()  # asked for once the sandbox was up, in cgroups of its own
    assert spare.cgroups and all(p.exists() for p in spare.cgroups)
    zygote.zygote_stop()
    left = [p for inner in spare.cgroups for p in (inner, inner.parent) if p.exists()]
    assert left == [], {p: (p / "cgroup.procs").read_text() for p in left}


def test_a_spare_cgroup_still_in_use_is_left_and_logged_with_who_holds_it(guard, caplog):
    _v1_only()
    spare = Path("/sys/fs/cgroup/pids") / guard / f"{SPARE_PREFIX}held"
    inner = spare / INNER
    inner.mkdir(parents=True)
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (inner / "cgroup.procs").write_text(str(holder.pid))
        zygote.spare_cgroups_remove([inner], wait=0)
        assert inner.exists() and spare.exists(), "a cgroup in use cannot be removed"
        assert f"{inner} is still in use" in caplog.text
        # Its pid, its state (R or S: `sleep` may not be asleep yet) and its wait channel.
        assert re.search(rf"\({holder.pid} [RS] in \S+\)", caplog.text), caplog.text
    finally:
        holder.kill()
        holder.wait()
    zygote.spare_cgroups_remove([inner], wait=1)  # once it has gone, it goes
    assert not spare.exists()


def test_reconcile_removes_the_spares_of_a_process_that_is_gone(config):
    from sandboxapp.runtime.reconcile import reconcile
    from sandboxapp.runtime.sandbox import cgroup_backend

    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that no process has now
    made, blocks = [], {}
    for owner in (dead.pid, os.getpid()):
        spare = f"_spare-{owner}-{secrets.randbelow(99)}"
        blocks[owner] = ids.ids_borrow(config.state_dir, ids.spare_owner(spare))
        for h in cgroup_backend().hierarchies:
            path = h.mountpoint / config.cgroup_parent / spare
            path.mkdir(parents=True)
            made.append(path)
    # And a block a learner kept for good in an earlier version.
    kept = ids.ids_borrow(config.state_dir, "learner:ada")
    try:
        report = reconcile(config)
        assert kept in report.freed_id_blocks
        gone, alive = made[: len(made) // 2], made[len(made) // 2 :]
        assert [path for path in gone if path.exists()] == []
        assert all(path.exists() for path in alive)  # ours: a spare's, soon someone's sandbox
        spares = ids.borrowed_blocks(config.state_dir, kind="spare").values()
        assert blocks[dead.pid] in report.freed_id_blocks and blocks[dead.pid] not in spares
        assert blocks[os.getpid()] in spares
    finally:
        for path in made:
            if path.exists():
                path.rmdir()
        ids.release_ids(config.state_dir, blocks[os.getpid()])


def _spare_init(config) -> int:
    """The init of this process's spare, once the zygote has forked it."""
    zygote.zygote_start(config.state_dir)
    zygote_pid = zygote._ZYGOTE._process.pid
    deadline = time.monotonic() + 10
    while not (inits := [i for c in _children(zygote_pid) for i in _children(c)]):
        assert time.monotonic() < deadline, "no spare"
        time.sleep(0.01)
    return inits[0]


def test_a_spare_is_mapped_to_an_id_block_of_its_own_before_anyone_takes_it(config, make_sandbox):
    running = make_sandbox()
    init = _spare_init(config)
    uid_map = Path(f"/proc/{init}/uid_map").read_text().split()
    assert Path(f"/proc/{init}/gid_map").read_text().split() == uid_map
    base = int(uid_map[1])
    assert uid_map[0] == "0" and uid_map[2] == "65536"
    # Claimed for the spare, and nobody else's: not the running sandbox's.
    assert base in ids.borrowed_blocks(config.state_dir, kind="spare").values()
    assert base != running.uid_base
    # The sandbox that takes it runs as that block, which is then the sandbox's.
    taken = make_sandbox()
    assert taken.init_pid == init and taken.uid_base == base
    assert ids.borrowed_blocks(config.state_dir)[taken.name] == base
    taken.destroy()
    assert base not in ids.borrowed_blocks(config.state_dir).values()


def _namespaces(pid: int, kinds: tuple[str, ...]) -> dict[str, int]:
    return {kind: os.stat(f"/proc/{pid}/ns/{kind}").st_ino for kind in kinds}


def _held_namespaces(pid: int) -> dict[str, int]:
    """The namespaces `pid` holds open as file descriptors, by kind."""
    held = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            kind, _, inode = os.readlink(f"/proc/{pid}/fd/{fd}").partition(":[")
            if kind in ("user", "net", "uts", "ipc", "mnt", "pid", "cgroup", "time"):
                held[kind] = int(inode.rstrip("]"))
    return held


def test_a_spare_makes_the_learners_namespaces_before_anyone_takes_it(config, make_sandbox, sh):
    # A network namespace is most of a set-up's cost: the spare's init has the learner's
    # user, net, uts and ipc namespaces made while nobody waits, and holds them.
    learner_kinds = ("user", "net", "uts", "ipc")
    init = _spare_init(config)
    own = _namespaces(init, learner_kinds)
    deadline = time.monotonic() + 5
    # Held, and the helper that made them gone.
    while set(held := _held_namespaces(init)) != set(learner_kinds) or _children(init):
        assert time.monotonic() < deadline, f"the spare holds no learner namespaces: {held}"
        time.sleep(0.01)
    assert set(held.values()).isdisjoint(own.values())

    sandbox = make_sandbox()

    # The init joined them, holds them no more, and the learner's shell is in them.
    assert sandbox.init_pid == init
    assert _namespaces(init, learner_kinds) == held
    assert _held_namespaces(init) == {}
    code, out = sh(sandbox, "readlink /proc/self/ns/net; ip -br link show lo; ps -e -o comm=")
    assert code == 0, out
    net, lo, *processes = out.split("\n")
    assert net == f"net:[{held['net']}]"
    assert "UP" in lo
    assert [p for p in processes if p] == ["init [contained", "sh", "ps"]


def _mounts(pid: int) -> dict[str, str]:
    """Mount point -> filesystem type, as `pid` sees them."""
    found = {}
    for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
        fields = line.split()
        found[fields[4]] = fields[fields.index("-") + 1]
    return found


def test_a_spare_stages_the_mounts_every_sandbox_has_before_anyone_takes_it(config, make_sandbox):
    init = _spare_init(config)
    deadline = time.monotonic() + 5
    while (staged := _mounts(init)).get("/") != "tmpfs":  # the host's root until it pivots
        assert time.monotonic() < deadline, f"nothing staged: {sorted(staged)}"
        time.sleep(0.01)
    # The spare's root is its stage: the mounts every sandbox has, already made, and
    # nothing of the host's (a learner's layer mounted meanwhile would live on in it).
    assert staged["/"] == "tmpfs"
    assert staged["/proc"] == "proc" and staged["/run/.contained/proc"] == "proc"
    assert staged["/proc/kallsyms"] != "proc"  # masked already
    assert staged["/tmp"] == "tmpfs" and staged["/dev/pts"] == "devpts"
    assert str(config.state_dir) not in " ".join(staged)
    assert not [m for m in staged if m.startswith("/sys/fs/cgroup")]

    sandbox = make_sandbox()

    assert sandbox.init_pid == init
    mounts = _mounts(init)
    assert mounts["/"] == "overlay" and mounts["/proc"] == "proc"
    assert mounts["/dev/pts"] == "devpts" and mounts["/proc/kallsyms"] != "proc"


def test_a_stopped_zygote_gives_back_its_spares_id_block(config):
    _spare_init(config)
    assert ids.borrowed_blocks(config.state_dir, kind="spare")
    zygote.zygote_stop()
    assert ids.borrowed_blocks(config.state_dir, kind="spare") == {}

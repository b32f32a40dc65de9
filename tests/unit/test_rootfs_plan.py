"""The mount plans as data: what a sandbox will mount, and in which order, without mounting."""

from pathlib import Path

import pytest

from sandboxapp.runtime import rootfs
from sandboxapp.runtime import syscalls as sc
from sandboxapp.runtime.cgroups import Hierarchy, V1Backend, V2Backend
from sandboxapp.runtime.rootfs import (
    BindDevice,
    Layout,
    MaskDir,
    MaskFile,
    Mkdir,
    Mount,
    Move,
    MoveFd,
    PivotRoot,
    ReadOnly,
    Symlink,
    WriteFile,
    plan_inner,
    plan_root,
    plan_stage,
)
from sandboxapp.runtime.sandbox import _cgroup_mounts

# The take runs on the stage, the spare's own root: its mount points are at the top.
ROOT = "/root"
STAGE = rootfs.STAGE
DISK = 512 * 1024**2

THROWAWAY = Layout(False, DISK)
PERSISTENT = Layout(True, DISK)
ETC = {"hostname": "web\n", "hosts": "127.0.1.1\tweb\n"}
BOTH = pytest.mark.parametrize("layout", [THROWAWAY, PERSISTENT], ids=["throwaway", "persistent"])


def path_of(op) -> str:
    if isinstance(op, Mount | MoveFd | Move):
        return op.target
    if isinstance(op, BindDevice):
        return f"{op.root}/dev/{op.name}"
    return op.path


def index(ops, predicate) -> int:
    (found,) = [i for i, op in enumerate(ops) if predicate(op)]
    return found


def mount_at(ops, target: str, fstype: str | None = "tmpfs") -> int:
    return index(
        ops, lambda op: isinstance(op, Mount) and op.target == target and op.fstype == fstype
    )


def under(path: str, top: str) -> bool:
    return path.startswith(f"{top}/")


# --- plan_root ---------------------------------------------------------------------------


def test_throwaway_starts_with_a_tmpfs_for_the_writable_layer():
    ops = plan_root(THROWAWAY, ETC)

    first = ops[0]
    assert first == Mount(
        "tmpfs", "/scratch", "tmpfs", rootfs.NOSUID_NODEV, f"size={DISK},mode=755"
    )
    made = [op.path for op in ops if isinstance(op, Mkdir) and under(op.path, "/scratch")]
    for layer in ("root", "usr"):
        assert f"/scratch/{layer}/upper" in made
        assert f"/scratch/{layer}/work" in made


def test_throwaway_makes_its_layer_dirs_after_mounting_the_tmpfs():
    ops = plan_root(THROWAWAY, ETC)

    scratch = mount_at(ops, "/scratch")
    for i, op in enumerate(ops):
        if isinstance(op, Mkdir) and under(op.path, "/scratch"):
            assert i > scratch, op


def test_throwaway_gets_the_sandboxs_etc_files_on_its_layer_before_the_overlay():
    ops = plan_root(THROWAWAY, ETC)

    etc = ops.index(Mkdir("/scratch/root/upper/etc"))
    written = [i for i, op in enumerate(ops) if isinstance(op, WriteFile)]
    assert [ops[i] for i in written] == [
        WriteFile("/scratch/root/upper/etc/hostname", "web\n"),
        WriteFile("/scratch/root/upper/etc/hosts", "127.0.1.1\tweb\n"),
    ]
    assert mount_at(ops, "/scratch") < etc < min(written)
    assert max(written) < mount_at(ops, ROOT, "overlay")


def test_persistent_layout_writes_its_etc_files_through_the_overlay_after_the_pivot():
    # On the learner's layer they are written once, and then theirs to edit: WriteFile
    # leaves a file that exists alone.
    ops = plan_root(PERSISTENT, ETC)

    pivot = ops.index(PivotRoot(ROOT))
    assert ops[pivot + 1 :] == [
        WriteFile("/etc/hostname", "web\n"),
        WriteFile("/etc/hosts", "127.0.1.1\tweb\n"),
    ]
    assert not [op for op in ops[:pivot] if isinstance(op, WriteFile)]


def test_write_file_leaves_a_file_that_exists_alone(tmp_path):
    path = tmp_path / "hosts"

    rootfs.apply([WriteFile(str(path), "first\n")], {})
    rootfs.apply([WriteFile(str(path), "second\n")], {})

    assert path.read_text() == "first\n"
    assert path.stat().st_mode & 0o777 == 0o644


def test_persistent_layout_has_no_scratch_tmpfs():
    ops = plan_root(PERSISTENT, ETC)

    assert not [op for op in ops if "scratch" in path_of(op)]
    assert ops[0] == MoveFd("volume", "/volume")  # the learner's, idmapped


@BOTH
def test_plan_pivots_once_and_only_writes_files_after_it(layout):
    ops = plan_root(layout, ETC)

    (pivot,) = [i for i, op in enumerate(ops) if isinstance(op, PivotRoot)]
    assert ops[pivot] == PivotRoot(ROOT)
    assert all(isinstance(op, WriteFile) for op in ops[pivot + 1 :])


@BOTH
def test_overlays_use_userxattr_and_nosuid_nodev(layout):
    ops = plan_root(layout, ETC)
    overlays = [op for op in ops if isinstance(op, Mount) and op.fstype == "overlay"]

    assert [op.target for op in overlays] == [ROOT, f"{ROOT}/usr"]
    for op in overlays:
        assert op.flags & sc.MS_NOSUID and op.flags & sc.MS_NODEV, op
        assert "userxattr" in op.data.split(","), op


@BOTH
def test_overlays_stack_the_image_under_the_writable_layer(layout):
    ops = plan_root(layout, ETC)
    w = layout.writable

    root_overlay = ops[mount_at(ops, ROOT, "overlay")]
    usr_overlay = ops[mount_at(ops, f"{ROOT}/usr", "overlay")]
    assert dict(o.partition("=")[::2] for o in root_overlay.data.split(",") if "=" in o) == {
        "lowerdir": "/lower-image",
        "upperdir": f"{w}/root/upper",
        "workdir": f"{w}/root/work",
    }
    assert dict(o.partition("=")[::2] for o in usr_overlay.data.split(",") if "=" in o) == {
        "lowerdir": "/lower-usr",
        "upperdir": f"{w}/usr/upper",
        "workdir": f"{w}/usr/work",
    }
    # The layers are attached before the overlays that use them.
    attached = {op.target: i for i, op in enumerate(ops) if isinstance(op, MoveFd)}
    assert attached["/lower-image"] < mount_at(ops, ROOT, "overlay")
    assert attached["/lower-usr"] < mount_at(ops, f"{ROOT}/usr", "overlay")


@BOTH
def test_every_mount_in_the_root_comes_after_the_root_overlay(layout):
    ops = plan_root(layout, ETC)

    overlay = mount_at(ops, ROOT, "overlay")
    for i, op in enumerate(ops[:-1]):
        if under(path_of(op), ROOT):
            assert i > overlay, op


def test_everything_under_proc_comes_after_the_proc_mount():
    ops = plan_stage()

    proc = mount_at(ops, f"{STAGE}/proc", "proc")
    assert ops[proc].flags == rootfs.NOSUID_NODEV_NOEXEC
    below = [i for i, op in enumerate(ops) if under(path_of(op), f"{STAGE}/proc")]
    assert len(below) >= 10
    assert min(below) > proc


def test_proc_masks_and_read_only_paths():
    ops = plan_stage()

    masked = {op.path for op in ops if isinstance(op, MaskFile)}
    masked_dirs = {op.path for op in ops if isinstance(op, MaskDir)}
    read_only = {op.path for op in ops if isinstance(op, ReadOnly)}
    for name in ("kcore", "keys", "kallsyms", "sysrq-trigger", "kmsg", "timer_list"):
        assert f"{STAGE}/proc/{name}" in masked, name
    assert {f"{STAGE}/proc/acpi", f"{STAGE}/proc/scsi"} <= masked_dirs
    assert f"{STAGE}/proc/sys" in read_only
    assert f"{STAGE}/proc/sysrq-trigger" not in read_only


def test_hidden_proc_and_sys_are_mounted_before_their_cover():
    ops = plan_stage()
    hidden = f"{STAGE}/{rootfs.HIDDEN}"

    run = mount_at(ops, f"{STAGE}/run")
    proc = mount_at(ops, f"{hidden}/proc", "proc")
    sys = mount_at(ops, f"{hidden}/sys", None)
    cover = mount_at(ops, hidden)
    assert run < proc < cover
    assert run < sys < cover
    assert ops[sys].source == "/sys"
    assert ops[sys].flags & sc.MS_BIND and ops[sys].flags & sc.MS_REC
    # The cover is read-only and empty: nobody can reach under it.
    assert ops[cover].flags & sc.MS_RDONLY
    assert "mode=0" in ops[cover].data.split(",")
    # The hidden proc is complete: no mask or read-only path is under it.
    restricted = [op for op in ops if isinstance(op, MaskFile | MaskDir | ReadOnly)]
    assert not [op for op in restricted if under(op.path, hidden)]


def test_dev_is_built_on_its_own_tmpfs():
    ops = plan_stage()

    dev = mount_at(ops, f"{STAGE}/dev")
    assert not ops[dev].flags & sc.MS_NODEV
    assert ops[dev].flags & sc.MS_NOSUID and ops[dev].flags & sc.MS_NOEXEC
    inside = [i for i, op in enumerate(ops[:-1]) if under(path_of(op), f"{STAGE}/dev")]
    assert min(inside) > dev
    devices = {op.name for op in ops if isinstance(op, BindDevice)}
    assert devices == {"null", "zero", "full", "random", "urandom", "tty"}
    assert Symlink("pts/ptmx", f"{STAGE}/dev/ptmx") in ops
    devpts = ops[mount_at(ops, f"{STAGE}/dev/pts", "devpts")]
    assert "newinstance" in devpts.data.split(",")


def test_writable_tmpfs_mounts_are_nosuid_and_nodev():
    ops = plan_stage()

    for target in (f"{STAGE}/run", f"{STAGE}/tmp", f"{STAGE}/dev/shm"):
        op = ops[mount_at(ops, target)]
        assert op.flags & sc.MS_NOSUID and op.flags & sc.MS_NODEV, target


def test_the_stage_is_a_tmpfs_of_its_own_that_the_spare_pivots_into():
    ops = plan_stage()

    assert ops[0] == Mount("tmpfs", STAGE, "tmpfs", rootfs.NOSUID_NODEV_NOEXEC, "size=4k,mode=755")
    for name in rootfs.STAGED:
        made = ops.index(Mkdir(f"{STAGE}/{name}"))
        on_it = [i for i, op in enumerate(ops) if path_of(op).startswith(f"{STAGE}/{name}")]
        assert made == min(on_it)
    # The take's mount points are on it, and nothing of the host stays in the spare's view.
    for name in rootfs.TAKE_POINTS:
        assert Mkdir(f"{STAGE}/{name}") in ops
    assert ops[-1] == PivotRoot(STAGE)
    assert not [op for op in ops if isinstance(op, MoveFd)]


@BOTH
def test_the_staged_mounts_move_under_the_root_overlay_before_the_pivot(layout):
    ops = plan_root(layout, ETC)

    moves = [op for op in ops if isinstance(op, Move)]
    assert moves == [Move(f"/{name}", f"{ROOT}/{name}") for name in rootfs.STAGED]
    first, last = ops.index(moves[0]), ops.index(moves[-1])
    assert mount_at(ops, ROOT, "overlay") < first and last < ops.index(PivotRoot(ROOT))
    # Nothing else is mounted under the root at the take: it was all staged.
    assert not [op for op in ops if isinstance(op, MaskFile | MaskDir | ReadOnly | BindDevice)]


# --- plan_inner --------------------------------------------------------------------------


def test_plan_inner_v2_mounts_cgroup2_at_sys_fs_cgroup():
    backend = V2Backend((Hierarchy(Path("/sys/fs/cgroup"), ("memory", "pids", "cpu")),))

    ops = plan_inner(_cgroup_mounts(backend))

    assert ops[0] == Mount("sysfs", "/sys", "sysfs", sc.MS_RDONLY | rootfs.NOSUID_NODEV_NOEXEC)
    cgroup_mounts = [op for op in ops if isinstance(op, Mount) and op.source == "cgroup"]
    assert cgroup_mounts == [
        Mount("cgroup", "/sys/fs/cgroup", "cgroup2", rootfs.NOSUID_NODEV_NOEXEC, None)
    ]
    assert mount_at(ops, "/sys/fs/cgroup") < ops.index(cgroup_mounts[0])
    assert not [op for op in ops if isinstance(op, Mkdir)]


@pytest.mark.parametrize(
    ("hierarchies", "subdirs"),
    [
        ([("memory",), ("pids",), ("cpu",)], ["memory", "pids", "cpu"]),
        ([("memory",), ("pids",), ("cpu", "cpuacct")], ["memory", "pids", "cpu,cpuacct"]),
    ],
    ids=["cpu-apart", "cpu-with-cpuacct"],
)
def test_plan_inner_v1_mounts_each_hierarchy_under_its_controllers(hierarchies, subdirs):
    backend = V1Backend(
        tuple(Hierarchy(Path("/sys/fs/cgroup", ",".join(c)), c) for c in hierarchies)
    )

    ops = plan_inner(_cgroup_mounts(backend))

    tmpfs = mount_at(ops, "/sys/fs/cgroup")
    cgroup_mounts = [op for op in ops if isinstance(op, Mount) and op.source == "cgroup"]
    assert cgroup_mounts == [
        Mount("cgroup", f"/sys/fs/cgroup/{d}", "cgroup", rootfs.NOSUID_NODEV_NOEXEC, d)
        for d in subdirs
    ]
    for d in subdirs:
        made = ops.index(Mkdir(f"/sys/fs/cgroup/{d}"))
        assert tmpfs < made < mount_at(ops, f"/sys/fs/cgroup/{d}", "cgroup")


def test_plan_inner_takes_the_mounts_it_is_given():
    ops = plan_inner([("memory", "cgroup", "memory"), ("", "cgroup2", None)])

    assert ops[2:] == [
        Mkdir("/sys/fs/cgroup/memory"),
        Mount("cgroup", "/sys/fs/cgroup/memory", "cgroup", rootfs.NOSUID_NODEV_NOEXEC, "memory"),
        Mount("cgroup", "/sys/fs/cgroup", "cgroup2", rootfs.NOSUID_NODEV_NOEXEC, None),
    ]
